#!/usr/bin/env node
// Load generator for the chat example: Socket.IO clients, each from its own loopback source
// address, sending direct messages (with a typing indicator before each) and activity posts
// (room broadcasts), both acked. Reports what a user would notice: clients fully OK, HTTP 400
// "Session ID unknown", connect errors, acks, broadcasts, latency, and each client's worker(s).
//
// https:// URLs (e.g. through nginx terminating TLS) need --insecure for a self-signed certificate.
//
// Human summary on stderr, ONE JSON object on the last stdout line. Exit 0 unless load.js itself
// crashes (1) or gets bad flags (2): observed 400s, timeouts etc. are results, not failures.
// Run with --help for the flags.
'use strict';
const http = require('node:http');
const https = require('node:https');
const { parseArgs } = require('node:util');
const { performance } = require('node:perf_hooks');
const { io } = require('socket.io-client');

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:5001' },
    polling: { type: 'string', default: '200' },       // polling-only clients
    upgrade: { type: 'string', default: '200' },       // default clients (polling -> websocket)
    messages: { type: 'string', default: '5' },        // per client: each = typing + dm + activity
    'src-base': { type: 'string', default: '127.1.0.0' }, // client i binds base + i * stride; "none": no bind
    'src-stride': { type: 'string', default: '1' },    // 256: every client in its own /24 (nginx ip_hash keys on the /24)
    insecure: { type: 'boolean', default: false },     // https: accept a self-signed certificate
    'time-limit': { type: 'string', default: '60' },   // seconds, whole run
    'room-size': { type: 'string', default: '20' },    // activity broadcast group; 0 = everyone
    interval: { type: 'string', default: '100' },      // ms between a client's messages
    'ack-timeout': { type: 'string', default: '10' },  // seconds
    'reconnect-attempts': { type: 'string', default: '5' },
    keepalive: { type: 'boolean', default: false },    // HTTP keep-alive in each client's agent
    duration: { type: 'string', default: '0' },        // s: messaging phase length (no --messages cap); 0 = off
    'wait-ack': { type: 'boolean', default: false },   // closed loop: next message once both acks are back
    'name-prefix': { type: 'string', default: '' },   // before user and room names: load.js processes side by side
    'samples-out': { type: 'string' },                 // PREFIX: raw latencies (ms, float32 LE) to PREFIX.{delivery,ack}.f32
    'no-clients': { type: 'boolean', default: false }, // leave the per-client array out of the JSON
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.error('usage: load.js [--url U] [--polling N] [--upgrade N] [--messages M] [--src-base A|none]\n' +
    '  [--src-stride K] [--insecure] [--time-limit S] [--room-size G] [--interval MS] [--ack-timeout S]\n' +
    '  [--reconnect-attempts N] [--keepalive] [--duration S] [--wait-ack] [--name-prefix P]\n' +
    '  [--samples-out PREFIX] [--no-clients]');
  process.exit(0);
}
const usage = (msg) => { console.error(`load: ${msg} (see --help)`); process.exit(2); };
const num = (k, min, max) => {
  const v = Number(opt[k]);
  if (!Number.isFinite(v) || v < min || v > max) usage(`--${k} must be in [${min}, ${max}]`);
  return Math.floor(v);
};
const NPOLL = num('polling', 0, 20000), NUP = num('upgrade', 0, 20000), N = NPOLL + NUP;
const MSGS = num('messages', 0, 10000), LIMIT_MS = num('time-limit', 1, 3600) * 1000;
const ROOM = num('room-size', 0, 20000) || N || 1, INTERVAL = num('interval', 0, 60000);
const ACK_MS = num('ack-timeout', 1, 600) * 1000, RECONNECTS = num('reconnect-attempts', 0, 1000);
const DURATION_MS = num('duration', 0, 3600) * 1000; // > 0: clients send until the phase ends
const NP = opt['name-prefix'];
const STRIDE = num('src-stride', 1, 1 << 16);
const TLS = opt.url.startsWith('https:');
const t0 = performance.now();
const deadline = t0 + LIMIT_MS;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function srcAddr(i) {
  if (opt['src-base'] === 'none') return undefined;
  const b = opt['src-base'].split('.').map(Number);
  if (b.length !== 4 || b[0] !== 127 || b.some((x) => !(x >= 0 && x <= 255))) usage('--src-base must be an address in 127.0.0.0/8 or "none"');
  const v = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) + i * STRIDE;
  if (v >>> 24 !== 127) usage('--src-base + clients leaves 127.0.0.0/8');
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

// An http.Agent (https.Agent for https://) that binds the client's source address and sniffs every
// response on its connections (polling requests and the WebSocket upgrade alike; with TLS, the
// decrypted stream) for error statuses, among them the 400 "Session ID unknown"; it counts the
// connections that end in an error (reset) too.
class CountingAgent extends (TLS ? https.Agent : http.Agent) {
  constructor(c, options) { super(options); this.c = c; }
  addRequest(req, options) { this.c.requests++; return super.addRequest(req, options); }
  createConnection(options, cb) {
    const sock = super.createConnection(options, cb);
    const c = this.c;
    c.conns++;
    sock.on('error', () => { c.resets++; }); // ECONNRESET, EPIPE: the server dropped a connection
    let tail = '';
    sock.on('data', (buf) => {
      if (buf.length > 4096 && tail === '') return; // big WebSocket frames: not an error response
      const s = tail + buf.toString('latin1');
      c.http400 += (s.match(/HTTP\/1\.1 400/g) || []).length - (tail.match(/HTTP\/1\.1 400/g) || []).length;
      c.unknown += (s.match(/Session ID unknown/g) || []).length - (tail.match(/Session ID unknown/g) || []).length;
      for (const m of s.matchAll(/HTTP\/1\.1 ([45]\d\d) /g)) // statuses split across chunks: once, in s
        if (m.index + m[0].length > tail.length) c.httpErrors[m[1]] = (c.httpErrors[m[1]] || 0) + 1;
      tail = s.slice(-24);
    });
    return sock;
  }
}

const clients = [];
for (let i = 0; i < N; i++) {
  const room = Math.floor(i / ROOM);
  const roomEnd = Math.min(N, (room + 1) * ROOM);
  const peer = i + 1 < roomEnd ? i + 1 : room * ROOM; // next in the room (itself when alone)
  clients.push({
    i, addr: srcAddr(i), kind: i < NPOLL ? 'polling' : 'upgrade', room, peer,
    conns: 0, requests: 0, http400: 0, unknown: 0, resets: 0, connectErrors: 0, transportErrors: 0, disconnects: 0,
    httpErrors: {}, reconnects: 0, lastProgress: 0, maxGap: 0, // status -> count; ms without an ack, at most
    hellos: 0, workers: new Map(), // "pid/instance" -> count of hellos + acks from it
    recovered: 0, // reconnects that got the session back (Socket.IO's connection state recovery)
    disconnectLog: [], // when and why (the first few)
    handovers: 0, // hellos of a session handed to another worker without a disconnect
    sent: 0, acks: 0, ackErrors: 0, dms: 0, typing: 0, unread: 0, activity: 0, finalTransport: null,
    got: new Map(), // "bc:<text>" | "dm:<text>" -> times received
    acked: new Set(), // the same keys for this client's messages the server acked
  });
}
const latency = [], ackLatency = [];
const nodeOf = new Map(); // worker pid -> its Node version (from hello)

function seen(c, r) {
  if (r && r.pid) { const k = `${r.pid}/${r.instance}`; c.workers.set(k, (c.workers.get(k) || 0) + 1); }
}

function connect(c) {
  const agent = new CountingAgent(c, { localAddress: c.addr, keepAlive: opt.keepalive, rejectUnauthorized: !opt.insecure });
  const s = io(opt.url, {
    forceNew: true, agent, auth: { user: `${NP}u${c.i}`, room: `${NP}r${c.room}` }, rejectUnauthorized: !opt.insecure,
    transports: c.kind === 'polling' ? ['polling'] : ['polling', 'websocket'],
    reconnectionAttempts: RECONNECTS, timeout: 10000, // reconnection delay: Socket.IO's default, 0.5-1.5 s
  });
  c.socket = s;
  let disconnected = false;
  s.on('hello', (h) => {
    if (h.recovered && !disconnected) c.handovers++; // the same session, now on another worker
    else c.hellos++;
    disconnected = false;
    seen(c, h);
    nodeOf.set(h.pid, h.node);
  });
  s.on('connect', () => { if (s.recovered) c.recovered++; });
  s.on('connect_error', () => { c.connectErrors++; });
  s.on('disconnect', (reason, details) => {
    if (reason === 'io client disconnect') return;
    c.disconnects++;
    disconnected = true;
    const why = details?.description?.message ?? details?.description ?? details?.context?.statusText ?? '';
    c.disconnectLog.push(`${Math.round(performance.now() - t0)} ms: ${reason}${why ? ` (${why})` : ''}`);
  });
  s.io.on('error', () => { c.transportErrors++; });
  s.io.on('reconnect', () => { c.reconnects++; });
  s.on('typing', () => { c.typing++; });
  s.on('unread', () => { c.unread++; });
  const got = (k) => c.got.set(k, (c.got.get(k) || 0) + 1);
  s.on('dm', (m) => { c.dms++; got(`dm:${m.text}`); latency.push(performance.now() - m.ts); });
  s.on('activity', (m) => { c.activity++; got(`bc:${m.text}`); latency.push(performance.now() - m.ts); });
}

async function send(c) {
  await sleep(Math.random() * Math.max(INTERVAL, 50)); // spread the start
  const more = (k) => (DURATION_MS ? performance.now() < phaseEnd : k < MSGS) && performance.now() < deadline;
  for (let k = 0; more(k); k++) {
    const s = c.socket, ts = performance.now();
    c.sent++;
    let pending = 2, acked;
    const both = opt['wait-ack'] ? new Promise((r) => { acked = r; }) : null;
    const onAck = (key) => (err, r) => {
      if (err) c.ackErrors++;
      else { c.acks++; c.acked.add(key); seen(c, r); ackLatency.push(performance.now() - ts); progress(c); }
      if (--pending === 0 && acked) acked();
    };
    const dm = `dm ${k} from u${c.i}`, post = `post ${k} from u${c.i}`;
    s.emit('typing', { to: `${NP}u${c.peer}` });
    s.timeout(ACK_MS).emit('dm', { to: `${NP}u${c.peer}`, text: dm, ts }, onAck(`dm:${dm}`));
    s.timeout(ACK_MS).emit('activity', { text: post, ts }, onAck(`bc:${post}`));
    if (both) await both;
    await sleep(INTERVAL);
  }
}

// Throughput over the messaging phase: counters at its start and at its end (--duration) or when
// every client got everything. events = Socket.IO events delivered to clients (acks, dm, unread,
// typing, activity); requests = HTTP requests issued (each long-polling GET and POST, the upgrade).
let phaseStart = 0, phaseEnd = Infinity, atStart = null, atEnd = null;
// The longest time a client could not get a message through (from one ack to the next), within the
// messaging phase: a deploy shows up here even when nothing fails.
function progress(c) {
  const now = Math.min(performance.now(), phaseEnd);
  if (!phaseStart || now <= phaseStart) return;
  c.maxGap = Math.max(c.maxGap, now - (c.lastProgress || phaseStart));
  c.lastProgress = now;
}
const counters = () => ({
  t: performance.now(),
  requests: clients.reduce((a, c) => a + c.requests, 0),
  events: clients.reduce((a, c) => a + c.acks + c.dms + c.unread + c.typing + c.activity, 0),
  sent: clients.reduce((a, c) => a + c.sent, 0),
});

// what each client should get once every message was sent
function expected(c) {
  let bc = 0, dm = 0, typing = 0;
  const end = Math.min(N, (c.room + 1) * ROOM);
  for (let j = c.room * ROOM; j < end; j++) {
    if (j !== c.i) bc += clients[j].sent;
    if (clients[j].peer === c.i) dm += clients[j].sent;
    if (clients[j].peer === c.i && j !== c.i) typing += clients[j].sent; // never echoed to the typist
  }
  return { acks: 2 * c.sent, bc, dm, typing };
}
// Events the server took (acked) that a recipient never got, and events a recipient got twice.
function eventLoss(c) {
  let missed = 0, duplicated = 0;
  const sample = [];
  const end = Math.min(N, (c.room + 1) * ROOM);
  for (let j = c.room * ROOM; j < end; j++) {
    const from = clients[j];
    for (const key of from.acked) {
      const forMe = key.startsWith('bc:') ? j !== c.i : from.peer === c.i;
      if (forMe && !c.got.has(key) && missed++ < 5) sample.push(key);
    }
  }
  for (const n of c.got.values()) if (n > 1) duplicated += n - 1;
  return { missed, duplicated, sample };
}

const complete = (c) => {
  const e = expected(c);
  return c.acks + c.ackErrors >= e.acks && c.activity >= e.bc && c.dms >= e.dm && c.typing >= e.typing && c.unread >= e.dm;
};

const pct = (a, p) => {
  if (!a.length) return null;
  const s = Float64Array.from(a).sort();
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(1);
};

let reported = false;
function report(timedOut) {
  if (reported) return;
  reported = true;
  if (DURATION_MS && phaseStart) { // a client stuck at the end of the phase: the gap up to its end
    const end = Math.min(performance.now(), phaseEnd);
    for (const c of clients) c.maxGap = Math.max(c.maxGap, end - (c.lastProgress || phaseStart));
  }
  const per = clients.map((c) => {
    const e = expected(c);
    const loss = eventLoss(c);
    const ws = [...c.workers.keys()];
    const ok = c.hellos === 1 && ws.length === 1 && c.unknown === 0 && c.http400 === 0 && c.resets === 0 &&
      c.connectErrors === 0 && c.disconnects === 0 && c.ackErrors === 0 && c.acks === e.acks &&
      c.activity === e.bc && c.dms === e.dm && c.typing >= e.typing && c.unread >= e.dm &&
      (c.kind === 'polling' || c.finalTransport === 'websocket');
    return {
      i: c.i, addr: c.addr ?? null, kind: c.kind, transport: c.finalTransport, ok,
      pids: ws.map((w) => Number(w.split('/')[0])), instances: ws.map((w) => Number(w.split('/')[1])),
      sessions: c.hellos, conns: c.conns, http_400: c.http400, session_unknown: c.unknown, resets: c.resets,
      connect_errors: c.connectErrors, disconnects: c.disconnects, reconnects: c.reconnects,
      http_errors: Object.values(c.httpErrors).reduce((a, n) => a + n, 0), max_gap_ms: Math.round(c.maxGap),
      acks: c.acks, acks_expected: e.acks, broadcasts: c.activity, broadcasts_expected: e.bc,
      dms: c.dms, dms_expected: e.dm,
      recovered: c.recovered, handovers: c.handovers, events_missed: loss.missed, events_duplicated: loss.duplicated,
      ...(loss.missed ? { events_missed_sample: loss.sample } : {}),
      ...(c.disconnects ? { disconnect_log: c.disconnectLog.slice(0, 4) } : {}),
      // noticed nothing: no disconnect, no failed request, no ack lost, no event missed or doubled
      // (it may have moved to another worker, with its session)
      unaffected: c.hellos === 1 && c.unknown === 0 && c.http400 === 0 && c.resets === 0 && c.connectErrors === 0 &&
        c.disconnects === 0 && c.ackErrors === 0 && c.acks === e.acks && loss.missed === 0 && loss.duplicated === 0 &&
        Object.keys(c.httpErrors).length === 0,
    };
  });
  const sum = (f) => per.reduce((a, p) => a + f(p), 0);
  const workers = new Map(); // by the worker of each client's first session
  for (const p of per) {
    if (!p.pids.length) continue;
    const k = `${p.pids[0]}/${p.instances[0]}`;
    const w = workers.get(k) || { pid: p.pids[0], instance: p.instances[0], node: nodeOf.get(p.pids[0]) ?? null, clients: 0 };
    w.clients++;
    workers.set(k, w);
  }
  const out = {
    url: opt.url, polling: NPOLL, upgrade: NUP, messages: MSGS, room_size: ROOM, keepalive: opt.keepalive,
    duration_ms: Math.round(performance.now() - t0), timed_out: timedOut,
    clients: N,
    clients_ok: sum((p) => p.ok),
    clients_ok_polling: sum((p) => p.ok && p.kind === 'polling'),
    clients_ok_upgrade: sum((p) => p.ok && p.kind === 'upgrade'),
    session_unknown_400: sum((p) => p.session_unknown),
    http_400: sum((p) => p.http_400),
    resets: sum((p) => p.resets),
    connect_errors: sum((p) => p.connect_errors),
    transport_errors: clients.reduce((a, c) => a + c.transportErrors, 0),
    disconnects: sum((p) => p.disconnects),
    disconnects_polling: sum((p) => (p.kind === 'polling' ? p.disconnects : 0)),
    disconnects_upgrade: sum((p) => (p.kind === 'upgrade' ? p.disconnects : 0)),
    reconnects: sum((p) => p.reconnects),
    recovered: sum((p) => p.recovered),
    handovers: sum((p) => p.handovers),
    clients_unaffected: sum((p) => p.unaffected),
    clients_unaffected_polling: sum((p) => p.unaffected && p.kind === 'polling'),
    clients_unaffected_upgrade: sum((p) => p.unaffected && p.kind === 'upgrade'),
    events_missed: sum((p) => p.events_missed),
    events_duplicated: sum((p) => p.events_duplicated),
    // every HTTP response with a 4xx or 5xx status, by status (nginx's 502s and 504s, Engine.IO's 400s)
    http_errors: clients.reduce((m, c) => { for (const [k, n] of Object.entries(c.httpErrors)) m[k] = (m[k] || 0) + n; return m; }, {}),
    // requests that failed: error statuses, and connections that ended in an error (reset, refused)
    failed_requests: sum((p) => p.http_errors + p.resets),
    acks_lost: sum((p) => p.acks_expected - p.acks),
    acks_lost_polling: sum((p) => (p.kind === 'polling' ? p.acks_expected - p.acks : 0)),
    acks_lost_upgrade: sum((p) => (p.kind === 'upgrade' ? p.acks_expected - p.acks : 0)),
    max_gap_ms: per.reduce((a, p) => Math.max(a, p.max_gap_ms), 0),
    clients_connected: sum((p) => p.sessions > 0),
    clients_single_worker: sum((p) => p.pids.length === 1),
    clients_websocket: sum((p) => p.transport === 'websocket'),
    tcp_connections: sum((p) => p.conns),
    acks: { received: sum((p) => p.acks), expected: sum((p) => p.acks_expected) },
    broadcasts: { received: sum((p) => p.broadcasts), expected: sum((p) => p.broadcasts_expected) },
    dms: { received: sum((p) => p.dms), expected: sum((p) => p.dms_expected) },
    latency_ms: { p50: pct(latency, 50), p99: pct(latency, 99), samples: latency.length },
    ack_latency_ms: { p50: pct(ackLatency, 50), p99: pct(ackLatency, 99) },
    workers: [...workers.values()].sort((a, b) => a.instance - b.instance),
  };
  if (!opt['no-clients']) out.per_client = per;
  if (opt['samples-out']) { // for merging the latencies of several load.js processes exactly
    const fs = require('node:fs');
    fs.writeFileSync(`${opt['samples-out']}.delivery.f32`, Buffer.from(Float32Array.from(latency).buffer));
    fs.writeFileSync(`${opt['samples-out']}.ack.f32`, Buffer.from(Float32Array.from(ackLatency).buffer));
  }
  const end = atEnd ?? counters(), start = atStart ?? end, secs = Math.max(1e-3, (end.t - start.t) / 1000);
  const cpu = process.cpuUsage();
  out.rate = {
    window_ms: Math.round(end.t - start.t), requests: end.requests - start.requests,
    requests_per_s: Math.round((end.requests - start.requests) / secs),
    events: end.events - start.events, events_per_s: Math.round((end.events - start.events) / secs),
    messages_sent: end.sent - start.sent, messages_per_s: Math.round((end.sent - start.sent) / secs),
    events_total: counters().events, requests_total: counters().requests, // the whole run
  };
  out.cpu_ms = { user: Math.round(cpu.user / 1000), system: Math.round(cpu.system / 1000) };
  const w = out.workers.map((x) => `#${x.instance} pid ${x.pid}: ${x.clients}`).join(', ');
  console.error(
    `load: ${out.clients_ok}/${N} clients fully OK (polling ${out.clients_ok_polling}/${NPOLL}, upgrade ${out.clients_ok_upgrade}/${NUP})` +
    `${timedOut ? ' [time limit hit]' : ''} in ${(out.duration_ms / 1000).toFixed(1)} s\n` +
    `  400 "Session ID unknown": ${out.session_unknown_400} (all 400s: ${out.http_400}), resets: ${out.resets}, connect errors: ${out.connect_errors}, ` +
    `disconnects: ${out.disconnects}, TCP connections: ${out.tcp_connections}\n` +
    `  failed requests: ${out.failed_requests} (statuses ${JSON.stringify(out.http_errors)}), reconnects: ${out.reconnects} (recovered ${out.recovered}), ` +
    `acks lost: ${out.acks_lost} (polling ${out.acks_lost_polling}, upgrade ${out.acks_lost_upgrade}), longest time without an ack: ${out.max_gap_ms} ms\n` +
    `  unaffected ${out.clients_unaffected}/${N} (polling ${out.clients_unaffected_polling}, upgrade ${out.clients_unaffected_upgrade}); disconnects polling ${out.disconnects_polling}, ` +
    `upgrade ${out.disconnects_upgrade}; sessions handed over ${out.handovers}; events missed ${out.events_missed}, duplicated ${out.events_duplicated}\n` +
    `  acks ${out.acks.received}/${out.acks.expected}, broadcasts ${out.broadcasts.received}/${out.broadcasts.expected}, ` +
    `dms ${out.dms.received}/${out.dms.expected}, latency p50 ${out.latency_ms.p50} ms p99 ${out.latency_ms.p99} ms\n` +
    `  connected ${out.clients_connected}, on one worker ${out.clients_single_worker}, websocket ${out.clients_websocket}; workers: ${w || 'none'}\n` +
    `  over ${(out.rate.window_ms / 1000).toFixed(1)} s of messaging: ${out.rate.events_per_s} events/s delivered, ` +
    `${out.rate.requests_per_s} HTTP requests/s, ${out.rate.messages_per_s} messages/s sent; load.js CPU ${out.cpu_ms.user + out.cpu_ms.system} ms`);
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
}

async function main() {
  // connect everyone (a few at a time), then wait for their first session, bounded
  for (const c of clients) { connect(c); if (c.i % 20 === 19) await sleep(5); }
  const connectBy = Math.min(deadline, performance.now() + Math.max(5000, LIMIT_MS / 3));
  while (performance.now() < connectBy && clients.some((c) => c.hellos === 0)) await sleep(50);
  // let the default clients finish their upgrade before the messages start
  const upBy = Math.min(deadline, performance.now() + 2000);
  while (performance.now() < upBy &&
    clients.some((c) => c.kind === 'upgrade' && c.hellos > 0 && c.socket.io.engine?.transport?.name !== 'websocket')) await sleep(50);
  phaseStart = performance.now();
  atStart = counters();
  if (DURATION_MS) {
    phaseEnd = phaseStart + DURATION_MS;
    setTimeout(() => { atEnd = counters(); }, DURATION_MS).unref();
  }
  await Promise.all(clients.map(send));
  while (performance.now() < deadline && !clients.every(complete)) await sleep(50);
  atEnd ??= counters();
  await sleep(200); // late duplicates or errors
  const timedOut = performance.now() >= deadline;
  for (const c of clients) { c.finalTransport = c.socket.io.engine?.transport?.name ?? null; c.socket.disconnect(); }
  report(timedOut);
}

setTimeout(() => {
  for (const c of clients) { c.finalTransport ??= c.socket?.io.engine?.transport?.name ?? null; c.socket?.disconnect(); }
  report(true);
}, LIMIT_MS + 5000).unref();
main();
