#!/usr/bin/env node
// Socket.IO clients for the multi-host test (tests/e2e/multihost_test.sh): one process per front
// balancer, every client from its own address in 198.18.0.0/15 (the benchmarking range, local to
// the clients' network namespace), kept connected for the whole run while the test injects faults.
// Each client posts a room message (an acked 'activity' broadcast) every --interval ms and records,
// per phase of the run (baseline, then one per fault):
//   - every hello (host, worker, sid, recovered): which host and worker holds its session, and
//     whether a reconnect moved it to another host or worker;
//   - HTTP 400s (and "Session ID unknown"), resets, refused connections, disconnects, reconnects
//     and how long each took, and how many reconnects recovered their state (socket.recovered);
//   - acks: lost (timed out), and from which worker (the session's own worker, or not);
//   - room messages: each one's receivers, to count deliveries missed and duplicated.
// The test drives it over a Unix socket (HTTP; curl --unix-socket):
//   GET /status          {clients, running, connected, by_host, by_worker, down_now, ...}
//   POST /phase?name=N   closes the current phase, opens N
//   POST /late           starts the --late clients (new visitors arriving during a fault)
//   POST /probe[?url=U][&every=K]  from every (K-th) connected client's address, a GET /health without a session,
//                        as a reconnect's handshake would go: the host the balancer picks now,
//                        against the host and worker of the client's session ({clients, elsewhere,
//                        other_worker, by_host,
//                        hosts: client -> host picked, workers: host/instance -> requests});
//                        ?url=U: through another front (U) instead
//   GET /report          per-phase numbers (JSON); POST /stop disconnects everyone and exits.
// Every loop is bounded by --time-limit (s): past it the process reports and exits by itself.
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { createRequire } = require('node:module');

const chatRequire = createRequire(`${process.env.CHAT_DIR || `${__dirname}/../../../examples/chat`}/package.json`);
const { io } = chatRequire('socket.io-client');

const { values: opt } = parseArgs({
  options: {
    ctl: { type: 'string' },                         // the control socket's path
    name: { type: 'string', default: 'clients' },    // the balancer's name, in user and room names
    url: { type: 'string' },
    polling: { type: 'string', default: '100' },     // polling only
    upgrade: { type: 'string', default: '100' },     // polling, then WebSocket (Socket.IO's default)
    websocket: { type: 'string', default: '100' },   // WebSocket only
    late: { type: 'string', default: '0' },          // started on POST /late (upgrade clients)
    base: { type: 'string', default: '0' },          // index of the first client's address
    'room-size': { type: 'string', default: '8' },
    interval: { type: 'string', default: '6000' },   // ms between one client's room messages
    'ack-timeout': { type: 'string', default: '10' },
    'time-limit': { type: 'string', default: '900' },
  },
});
const int = (k) => { const v = Number(opt[k]); if (!Number.isInteger(v) || v < 0) throw new Error(`--${k}`); return v; };
const NPOLL = int('polling'), NUP = int('upgrade'), NWS = int('websocket'), NLATE = int('late');
const N = NPOLL + NUP + NWS, BASE = int('base'), ROOM = Math.max(2, int('room-size'));
const INTERVAL = int('interval'), ACK_MS = int('ack-timeout') * 1000, LIMIT_MS = int('time-limit') * 1000;
const NAME = opt.name;
const now = () => Date.now();
const T0 = now();

// Client g's address: in 198.18.0.0/16, without .0 and .255 (250 a /24; 64,000 at most).
const addrOf = (g) => `198.18.${Math.floor(g / 250)}.${1 + (g % 250)}`;
if (BASE + N + NLATE > 64000) throw new Error('more than 64,000 client addresses');
// Rooms mix the kinds: client i < N is in room i % R; the late clients fill rooms of their own.
const R = Math.ceil(N / ROOM);

// The phases: counters of everything that happened while each was open.
const phases = [];
let ph = null;
function openPhase(name) {
  if (ph) ph.end = now();
  ph = {
    name, start: now(), end: null, i: phases.length,
    host_at_start: new Map(), // client -> the host of its session when the phase opened
    by_host: {},              // counters by the client's host at the phase's start
    moved_hosts: new Set(), moved_workers: new Set(), disconnected: new Set(),
    reconnect_ms: [], reconnects: 0, recovered: 0, affinity_violations: 0, acks_other_worker: 0,
  };
  for (const c of clients) if (c.cur) ph.host_at_start.set(c.i, c.cur.host);
  phases.push(ph);
}
function count(c, field, n = 1) {
  const h = ph.host_at_start.get(c.i) ?? c.cur?.host ?? 'none';
  const b = ph.by_host[h] ??= {};
  b[field] = (b[field] || 0) + n;
}

// Room messages: id -> { sender, phase, t, acked, recv (one counter per room member) }.
const msgs = new Map();
const rooms = []; // room -> its clients
const clients = [];

function makeClient(i, kind) {
  const room = i < N ? i % R : R + Math.floor((i - N) / ROOM);
  const c = {
    i, g: BASE + i, addr: addrOf(BASE + i), kind, room, member: (rooms[room] ?? []).length, seq: 0,
    cur: null, firstHello: null, lastHost: null, lastWorker: null, downSince: null, down: [], // [from, to]
    running: false, socket: null,
  };
  (rooms[room] ??= []).push(c);
  clients.push(c);
  return c;
}

// An agent that binds the client's address and reads every response on its connections for 400s
// ("Session ID unknown" among them), and counts connections that end in an error.
class CountingAgent extends http.Agent {
  constructor(c, options) { super(options); this.c = c; }
  createConnection(options, cb) {
    const sock = super.createConnection(options, cb);
    const c = this.c;
    sock.on('error', (e) => count(c, e.code === 'ECONNREFUSED' ? 'refused' : 'resets'));
    let tail = '';
    sock.on('data', (buf) => {
      if (buf.length > 4096 && tail === '') return;
      const s = tail + buf.toString('latin1');
      const n400 = (s.match(/HTTP\/1\.1 400/g) || []).length - (tail.match(/HTTP\/1\.1 400/g) || []).length;
      const nUnknown = (s.match(/Session ID unknown/g) || []).length - (tail.match(/Session ID unknown/g) || []).length;
      if (n400 > 0) count(c, 'http_400', n400);
      if (nUnknown > 0) count(c, 'session_unknown', nUnknown);
      for (const m of s.matchAll(/HTTP\/1\.1 (5\d\d) /g)) if (m.index + m[0].length > tail.length) count(c, `http_${m[1]}`);
      tail = s.slice(-24);
    });
    return sock;
  }
}

function start(c) {
  c.running = true;
  const s = io(opt.url, {
    forceNew: true, agent: new CountingAgent(c, { localAddress: c.addr, keepAlive: false }),
    auth: { user: `${NAME}-u${c.i}`, room: `${NAME}-r${c.room}` },
    transports: c.kind === 'polling' ? ['polling'] : c.kind === 'websocket' ? ['websocket'] : ['polling', 'websocket'],
    timeout: 10000, // reconnection: Socket.IO's defaults (1 s, doubling up to 5 s, +-50 %, for ever)
  });
  c.socket = s;
  s.on('hello', (h) => {
    const host = h.host ?? 'unknown', worker = `${host}/${h.instance}/${h.pid}`;
    if (c.lastHost && host !== c.lastHost) ph.moved_hosts.add(c.i);
    if (c.lastWorker && worker !== c.lastWorker) ph.moved_workers.add(c.i);
    c.cur = { host, worker, pid: h.pid, instance: h.instance, sid: h.sid, at: now() };
    c.lastHost = host;
    c.lastWorker = worker;
    c.firstHello ??= now();
  });
  s.on('connect', () => {
    if (c.downSince !== null) {
      ph.reconnects++;
      if (s.recovered) ph.recovered++;
      ph.reconnect_ms.push(now() - c.downSince);
      c.down.push([c.downSince, now()]);
      c.downSince = null;
    }
  });
  s.on('disconnect', (reason) => {
    if (reason === 'io client disconnect') return;
    c.downSince = now();
    c.cur = null;
    ph.disconnected.add(c.i);
    count(c, 'disconnects');
  });
  s.on('connect_error', () => count(c, 'connect_errors'));
  s.on('activity', (m) => {
    const msg = msgs.get(m?.text);
    if (msg) msg.recv[c.member] = Math.min(255, msg.recv[c.member] + 1);
  });
  const tick = () => {
    if (!c.running) return;
    if (s.connected && c.cur) send(c);
    c.timer = setTimeout(tick, INTERVAL * (0.75 + Math.random() / 2));
  };
  c.timer = setTimeout(tick, Math.random() * INTERVAL);
}

function send(c) {
  const id = `${NAME}:${c.i}:${c.seq++}`, session = c.cur;
  const msg = { sender: c.i, room: c.room, phase: ph.i, t: now(), acked: null, recv: new Uint8Array(rooms[c.room].length) };
  msgs.set(id, msg);
  count(c, 'acks_sent');
  c.socket.timeout(ACK_MS).emit('activity', { text: id, ts: msg.t }, (err, r) => {
    msg.acked = !err;
    if (err) { phases[msg.phase].by_host[session.host] ??= {}; const b = phases[msg.phase].by_host[session.host]; b.acks_lost = (b.acks_lost || 0) + 1; return; }
    // another host: the session's requests reached the wrong host; another worker of the same host:
    // steered wrong, or (during a reload) the session was handed over to the successor
    if (r?.host !== session.host) phases[msg.phase].affinity_violations++;
    else if (r?.pid !== session.pid) phases[msg.phase].acks_other_worker++;
  });
}

// Was the client down (or not yet there) around time t (from 1 s before to 3 s after)?
function downAround(c, t) {
  if (c.firstHello === null || c.firstHello > t - 1000) return true;
  if (c.downSince !== null && c.downSince < t + 3000) return true;
  return c.down.some(([a, b]) => a < t + 3000 && b > t - 1000);
}

const sum = (o, k) => Object.values(o).reduce((a, b) => a + (b[k] || 0), 0);
function report() {
  if (ph && !ph.end) ph.end = now();
  const out = phases.map((p) => ({
    name: p.name, seconds: +(((p.end ?? now()) - p.start) / 1000).toFixed(1),
    by_host: p.by_host, moved_hosts: [...p.moved_hosts], moved_workers: p.moved_workers.size,
    disconnected: [...p.disconnected], reconnects: p.reconnects, recovered: p.recovered,
    reconnect_ms_max: p.reconnect_ms.length ? Math.max(...p.reconnect_ms) : null,
    affinity_violations: p.affinity_violations, acks_other_worker: p.acks_other_worker,
    host_at_start: Object.fromEntries([...p.host_at_start].map(([i, h]) => [i, h])),
    events_expected: 0, events_missed: 0, events_missed_connected: 0, missed_connected_by_host: {}, duplicates: 0, emitted: 0, missed_connected_sample: [],
    acks_sent: sum(p.by_host, 'acks_sent'), acks_lost: sum(p.by_host, 'acks_lost'),
  }));
  for (const msg of msgs.values()) {
    const emitted = msg.acked === true || msg.recv.some((n) => n > 0);
    if (!emitted || msg.t > now() - ACK_MS) continue; // not broadcast, or too recent to judge
    const o = out[msg.phase];
    o.emitted++;
    for (const m of rooms[msg.room]) {
      if (m.i === msg.sender) continue;
      const n = msg.recv[m.member];
      if (n === 0 && m.firstHello !== null && m.firstHello > msg.t) continue; // joined after
      o.events_expected++;
      if (n > 1) o.duplicates += n - 1;
      if (n === 0) {
        o.events_missed++;
        if (!downAround(m, msg.t)) {
          o.events_missed_connected++;
          const h = phases[msg.phase].host_at_start.get(m.i) ?? 'none';
          o.missed_connected_by_host[h] = (o.missed_connected_by_host[h] || 0) + 1;
          if (o.missed_connected_sample.length < 8) { // who, and how far from their nearest outage
            const gaps = m.down.map(([a, b]) => Math.round((a - msg.t) / 100) / 10);
            o.missed_connected_sample.push({ receiver: m.i, kind: m.kind, sender: msg.sender, at_s: +((msg.t - phases[msg.phase].start) / 1000).toFixed(1), acked: msg.acked, outages_s_after: gaps });
          }
        }
      }
    }
  }
  const byWorker = {};
  for (const c of clients) if (c.cur) byWorker[c.cur.worker] = (byWorker[c.cur.worker] || 0) + 1;
  return { name: NAME, clients: clients.length, by_worker: byWorker, phases: out };
}

function status() {
  const byHost = {}, byWorker = {};
  let connected = 0, running = 0;
  for (const c of clients) {
    if (!c.running) continue;
    running++;
    if (c.socket?.connected && c.cur) {
      connected++;
      byHost[c.cur.host] = (byHost[c.cur.host] || 0) + 1;
      byWorker[c.cur.worker] = (byWorker[c.cur.worker] || 0) + 1;
    }
  }
  const websocket = clients.filter((c) => c.socket?.io.engine?.transport?.name === 'websocket').length;
  return { name: NAME, clients: clients.length, running, connected, websocket, by_host: byHost, by_worker: byWorker, phase: ph?.name };
}

// Where would each connected client's next handshake go? (/health names the host; 64 at a time.)
async function probe(url = opt.url, every = 1) {
  const todo = clients.filter((c) => c.running && c.cur && c.i % every === 0);
  const out = { clients: todo.length, elsewhere: 0, other_worker: 0, failed: 0, by_host: {}, hosts: {}, workers: {} };
  const one = (c) => new Promise((resolve) => {
    const req = http.get(`${url}/health`, { localAddress: c.addr, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; }).on('end', () => {
        try {
          const { host, instance } = JSON.parse(body);
          out.by_host[host] = (out.by_host[host] || 0) + 1;
          out.workers[`${host}/${instance}`] = (out.workers[`${host}/${instance}`] || 0) + 1;
          out.hosts[c.i] = host;
          if (host !== c.cur?.host) out.elsewhere++;
          // sio-steer's steering alone (no session, so nothing for a worker to pass on): a client's
          // request reaches the worker that holds its session
          else if (instance !== c.cur?.instance) out.other_worker++;
        } catch { out.failed++; }
        resolve();
      });
    });
    req.on('error', () => { out.failed++; resolve(); });
    req.on('timeout', () => req.destroy());
  });
  for (let k = 0; k < todo.length; k += 64) await Promise.all(todo.slice(k, k + 64).map(one));
  return out;
}

function stop(code) {
  for (const c of clients) { c.running = false; clearTimeout(c.timer); c.socket?.disconnect(); }
  setTimeout(() => process.exit(code), 200).unref();
}

for (let i = 0; i < N; i++) makeClient(i, i < NPOLL ? 'polling' : i < NPOLL + NUP ? 'upgrade' : 'websocket');
const late = [];
for (let i = 0; i < NLATE; i++) late.push(makeClient(N + i, 'upgrade'));
openPhase('connect');

const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const reply = (o, code = 200) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(o)); };
  if (u.pathname === '/status') return reply(status());
  if (u.pathname === '/phase' && req.method === 'POST') { openPhase(u.searchParams.get('name') || `phase${phases.length}`); return reply({ ok: true, phase: ph.name }); }
  if (u.pathname === '/late' && req.method === 'POST') { late.forEach((c, k) => setTimeout(() => start(c), k * 10)); return reply({ ok: true, started: late.length }); }
  if (u.pathname === '/report') return reply(report());
  if (u.pathname === '/probe' && req.method === 'POST') { probe(u.searchParams.get('url') || undefined, Number(u.searchParams.get('every')) || 1).then(reply); return undefined; }
  if (u.pathname === '/stop' && req.method === 'POST') { reply({ ok: true }); return stop(0); }
  reply({ error: 'unknown request' }, 404);
});
try { fs.unlinkSync(opt.ctl); } catch { /* not there */ }
server.listen(opt.ctl, () => {
  // a few clients at a time, not all in the same millisecond
  clients.slice(0, N).forEach((c, k) => setTimeout(() => start(c), Math.floor(k / 20) * 50));
});
setTimeout(() => { console.error(`${NAME}: time limit (${LIMIT_MS / 1000} s) reached`); stop(3); }, LIMIT_MS).unref();
console.error(`${NAME}: ${N} clients (${NPOLL} polling, ${NUP} upgrade, ${NWS} websocket, ${NLATE} late) to ${opt.url}, from ${addrOf(BASE)}; started at ${new Date(T0).toISOString()}`);
