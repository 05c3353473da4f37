// sio-steer-drain against one socket.io release (test/matrix.sh runs it for each, as root in a
// network namespace of its own, where a closing listener's queued connections move to the others
// of its port as sio-steer's program moves them: net.ipv4.tcp_migrate_req=1).
//
// Real servers, real clients, a real Redis with the Redis Streams adapter and Socket.IO's connection
// state recovery; each client sends an acked message every 100 ms that the server broadcasts to the
// client's room, and counts every broadcast it gets by message id.
// env: SIO_MATRIX_DIR (test/matrix/socket.io-X.Y, npm ci'd), SIO_MATRIX_KNOWN (1 or 0).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { gracefulStop, engineSupport } = require('..');

const dir = process.env.SIO_MATRIX_DIR;
const known = process.env.SIO_MATRIX_KNOWN === '1';
const mod = (name) => require(path.join(dir, 'node_modules', name));
const { Server } = mod('socket.io');
const { io: connect } = mod('socket.io-client');
const sioVersion = mod('socket.io/package.json').version;
const engineVersion = mod('engine.io/package.json').version;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => r(port)); }); });

const handled = new Set(); // every message a server's handler took, whichever server
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sio-steer-drain-test-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  process.on('exit', () => proc.kill()); // a test that throws never reaches its stop()
  const { createClient } = mod('redis');
  for (let i = 0; i < 100; i++) {
    const c = createClient({ url: `redis://127.0.0.1:${port}` });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.quit();
      return { url: `redis://127.0.0.1:${port}`, stop: () => proc.kill() };
    } catch { await sleep(50); }
  }
  proc.kill();
  throw new Error('redis-server did not start');
}

// A worker: a Socket.IO server on `port` (SO_REUSEPORT, as under PM2 with sio-steer), gracefulStop
// unless plain, the Redis Streams adapter with recovery.
async function startWorker({ port, redisUrl, instance, plain = false }) {
  const { createClient } = mod('redis');
  const { createAdapter } = mod('@socket.io/redis-streams-adapter');
  const redis = createClient({ url: redisUrl });
  redis.on('error', () => {});
  await redis.connect();
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(redis), connectionStateRecovery: {} });
  const w = { io, httpServer, redis, refused: 0, lines: [] };
  const log = (l) => w.lines.push(l);
  w.stop = plain ? null : gracefulStop(io, httpServer, { peerDir: path.join(tmp, 'peers'), instance, redis, log });
  io.engine.on('connection_error', () => { w.refused++; });
  io.on('connection', (socket) => {
    if (!socket.recovered) socket.join(socket.handshake.auth.room);
    socket.on('msg', async (m, ack) => {
      handled.add(m);
      await sleep(1); // an ack owed for a moment, as a handler that waits on Redis
      io.to(socket.handshake.auth.room).emit('bc', m);
      ack();
    });
  });
  await new Promise((r) => httpServer.listen({ port, host: '127.0.0.1', reusePort: true }, r));
  await w.stop?.ready;
  w.close = async () => { io.close(); await redis.quit().catch(() => {}); };
  return w;
}

// Clients, half long-polling only, half upgrading to WebSocket (all polling: pollingOnly), in 4
// rooms, sending until stopped.
function startClients(port, n, { pollingOnly = false } = {}) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    const polling = pollingOnly || i % 2 === 0;
    const socket = connect(`http://127.0.0.1:${port}`, {
      transports: polling ? ['polling'] : ['polling', 'websocket'], forceNew: true, auth: { room: `r${i % 4}` },
    });
    const c = { i, socket, polling, room: i % 4, sent: 0, acked: new Set(), unacked: [], ackErrors: 0, disconnects: 0, recovered: 0, got: new Map() };
    socket.on('disconnect', () => { c.disconnects++; });
    socket.on('connect', () => { if (socket.recovered) c.recovered++; });
    socket.on('bc', (m) => c.got.set(m, (c.got.get(m) || 0) + 1));
    clients.push(c);
  }
  let sending = true;
  // everyone in its room before the first message: a broadcast reaches those connected then. Not
  // past stop(): without the module, clients refused with 400s keep reconnecting and may never be
  // all connected at once.
  const allIn = (async () => { while (sending && !clients.every((c) => c.socket.connected)) await sleep(10); })();
  const loops = clients.map(async (c) => {
    await allIn;
    while (sending) {
      const m = `${c.i}-${c.sent++}`;
      c.socket.timeout(20000).emit('msg', m, (err) => {
        if (!err) return void c.acked.add(m);
        c.ackErrors++;
        c.unacked.push(m);
      });
      await sleep(100);
    }
  });
  // every client connected (again), then every acked message's broadcast delivered, within a
  // patience that only a broken stop exhausts; what is missing then is missing for good
  const settled = async (patienceMs) => {
    const until = Date.now() + patienceMs;
    const done = () => losses(clients).every((c) => c.missed === 0);
    while (Date.now() < until && !(clients.every((c) => c.socket.connected) && done())) await sleep(100);
  };
  return {
    clients,
    upgraded: async (patienceMs) => {
      const until = Date.now() + patienceMs;
      while (Date.now() < until && !clients.every((c) => c.polling || c.socket.io.engine?.transport?.name === 'websocket')) await sleep(50);
    },
    connected: async (patienceMs) => {
      const until = Date.now() + patienceMs;
      while (Date.now() < until && !clients.every((c) => c.socket.connected)) await sleep(50);
    },
    stop: async () => { sending = false; await Promise.all(loops); await settled(20000); },
    close: () => { for (const c of clients) c.socket.close(); },
  };
}

// Per client: broadcasts of acked messages of its room it never got, and broadcasts it got twice.
function losses(clients) {
  return clients.map((c) => {
    const missing = [];
    let duplicated = 0;
    for (const o of clients) {
      if (o.room !== c.room) continue;
      for (const m of o.acked) if (!c.got.has(m)) missing.push(m);
    }
    for (const n of c.got.values()) duplicated += n - 1;
    return { ...c, missed: missing.length, missing, duplicated };
  });
}

const describe = `socket.io ${sioVersion} (engine.io ${engineVersion})`;

test(`${describe}: the versions this module knows`, async () => {
  const httpServer = http.createServer();
  const io = new Server(httpServer);
  const warnings = [];
  gracefulStop(io, httpServer, { warn: (l) => warnings.push(l) });
  assert.deepStrictEqual([engineSupport(io).version, engineSupport(io).known], [engineVersion, known]);
  assert.strictEqual(warnings.length, known ? 0 : 1, warnings.join('\n'));
  if (!known) assert.match(warnings[0], new RegExp(`engine\\.io ${engineVersion.replace(/\./g, '\\.')} is not one this version knows`));
  io.close();
});

// A busy host: the worker answers the client's WebSocket probe, then cannot run for longer than
// upgradeTimeout. Engine.IO's timer then fires before the client's "upgrade" packet is read, and
// closes the probe; socket.io-client has paused its polling to switch and never resumes it: the
// session is silent until its ping timeout, then reconnects.
test(`${describe}: an upgrade that outlasts upgradeTimeout after its probe completes; the client is not stranded`, { skip: !known && 'engine.io unknown' }, async () => {
  const run = async (withModule) => {
    const httpServer = http.createServer();
    const io = new Server(httpServer, { upgradeTimeout: 200, pingInterval: 1000, pingTimeout: 1000 });
    if (withModule) gracefulStop(io, httpServer, { peerDir: path.join(tmp, 'upgrade'), instance: null, warn: () => {} });
    let stalls = 0;
    io.engine.on('connection', (conn) => conn.on('upgrading', () => {
      if (stalls++ > 0) return; // the first upgrade only
      const until = Date.now() + 400;
      while (Date.now() < until) { /* the stall */ }
    }));
    const port = await freePort();
    await new Promise((r) => httpServer.listen({ port, host: '127.0.0.1' }, r));
    const socket = connect(`http://127.0.0.1:${port}`, { forceNew: true, transports: ['polling', 'websocket'] });
    const disconnects = [];
    socket.on('disconnect', (reason) => disconnects.push(reason));
    await sleep(3500); // > pingInterval + pingTimeout: a stranded client has timed out by then
    const result = { stalls, disconnects: [...disconnects], transport: socket.io.engine?.transport?.name };
    socket.close();
    io.close();
    return result;
  };
  const without = await run(false);
  console.log(`# without sio-steer-drain: ${JSON.stringify(without)}`);
  // the client times out (its polling left paused), or, had it switched already, loses the WebSocket
  assert.ok(without.stalls >= 1 && without.disconnects.length >= 1, 'without it, the client is disconnected (the failure fixed)');
  const withIt = await run(true);
  console.log(`# with sio-steer-drain: ${JSON.stringify(withIt)}`);
  assert.strictEqual(withIt.stalls, 1, 'the upgrade was stalled');
  assert.deepStrictEqual(withIt.disconnects, [], 'not disconnected');
  assert.strictEqual(withIt.transport, 'websocket', 'upgraded');
});

test(`${describe}: a stop hands every long-polling session to the successor; WebSockets come back recovered`, { skip: !known && 'engine.io unknown: a plain close' }, async () => {
  const redis = await startRedis();
  const port = await freePort();
  const w = await startWorker({ port, redisUrl: redis.url, instance: 0 });
  const load = startClients(port, 20);
  await load.connected(20000);
  await load.upgraded(20000);
  await sleep(500); // messages flowing
  const s = await startWorker({ port, redisUrl: redis.url, instance: 0 }); // the successor: the newest of instance 0
  await sleep(300);
  for (const c of load.clients) c.transportAtStop = c.socket.io.engine?.transport?.name;
  await w.stop({ log: (l) => w.lines.push(l) });
  await load.connected(20000); // the WebSocket clients back
  await sleep(1000); // messages keep flowing, now all through the successor
  await load.stop();
  const per = losses(load.clients);
  // where in the stream each message's broadcast is (for a failure's message)
  const offsetOf = new Map();
  for (const e of await s.redis.xRange('socket.io', '-', '+')) {
    const m = /"bc","([0-9]+-[0-9]+)"/.exec(e.message.data ?? '');
    if (m) offsetOf.set(m[1], e.id);
  }
  // a default client that had not upgraded yet is a long-polling session like the others
  const polling = per.filter((c) => c.transportAtStop === 'polling'), ws = per.filter((c) => c.transportAtStop === 'websocket');
  const show = (cs) => cs.map((c) => `#${c.i} disc ${c.disconnects} rec ${c.recovered} ackErr ${c.ackErrors} missed ${c.missed} dup ${c.duplicated}`).join('; ');
  console.log(`# ${w.lines.join('\n# ')}\n# successor: ${s.lines.filter((l) => !l.startsWith('recovered session')).join('\n# ')}\n# polling: ${show(polling)}\n# websocket: ${show(ws)}`);
  assert.ok(polling.length >= 10, 'the long-polling-only clients are long-polling');
  assert.match(w.lines.join('\n'), new RegExp(`stopped: ${polling.length} session\\(s\\) handed over, ${ws.length} closed`));
  assert.strictEqual(w.refused + s.refused, 0, 'no request refused ("400 Session ID unknown")');
  for (const c of polling) {
    assert.deepStrictEqual([c.disconnects, c.ackErrors, c.missed, c.duplicated], [0, 0, 0, 0],
      `polling client ${c.i}: not disconnected, nothing lost or doubled (unacked: ${c.unacked.map((m) => `${m}${handled.has(m) ? ' (handled)' : ''}`).join(', ')})`);
  }
  for (const c of ws) {
    assert.strictEqual(c.disconnects, 1, `websocket client ${c.i}: one reconnect`);
    assert.strictEqual(c.recovered, 1, `websocket client ${c.i}: recovered`);
    assert.deepStrictEqual([c.missed, c.duplicated], [0, 0], `websocket client ${c.i}: every broadcast once (missing ${c.missing.map((m) => `${m}@${offsetOf.get(m)}`).join(' ')}; successor: ${s.lines.filter((l) => l.includes(c.socket.id)).join(' | ')})`);
    // The close goes out once the worker owes no ack: a message lost with its ack is one the client
    // sent while the close was on its way (Socket.IO's client drops the acks of a closed session),
    // never one a server took.
    assert.deepStrictEqual(c.unacked.filter((m) => handled.has(m)), [], `websocket client ${c.i}: a message a server took went unacked`);
  }
  assert.ok(!w.httpServer.listening, 'the stopped worker no longer listens');
  load.close();
  await Promise.all([w.close(), s.close()]);
  redis.stop();
});

test(`${describe}: two workers on one port without steering: requests reach their session's worker, no 400`, { skip: !known && 'engine.io unknown' }, async () => {
  const redis = await startRedis();
  const run = async (plain) => {
    const port = await freePort();
    const a = await startWorker({ port, redisUrl: redis.url, instance: 0, plain });
    const b = await startWorker({ port, redisUrl: redis.url, instance: 1, plain });
    // polling only: every request is a connection of its own, spread by the kernel's hash
    const load = startClients(port, 20, { pollingOnly: true });
    await sleep(2500);
    await load.stop();
    const refused = a.refused + b.refused;
    const ackErrors = load.clients.reduce((n, c) => n + c.ackErrors, 0);
    load.close();
    await Promise.all([a.close(), b.close()]);
    return { refused, ackErrors, passed: [a, b].map((w) => w.stop?.stats().router.forwarded ?? 0) };
  };
  const without = await run(true);
  console.log(`# without sio-steer-drain: ${JSON.stringify(without)}`);
  assert.ok(without.refused > 0, 'without it, requests that reach the other worker get "400 Session ID unknown" (the failure fixed)');
  const withIt = await run(false);
  console.log(`# with sio-steer-drain: ${JSON.stringify(withIt)}`);
  assert.strictEqual(withIt.refused, 0, 'no request refused');
  assert.strictEqual(withIt.ackErrors, 0, 'every message acked');
  assert.ok(withIt.passed[0] + withIt.passed[1] > 0, 'requests were passed to the worker holding their session');
  redis.stop();
});

test(`${describe}: a stop with no other worker closes every session`, async () => {
  const httpServer = http.createServer();
  const io = new Server(httpServer);
  const stop = gracefulStop(io, httpServer, { peerDir: path.join(tmp, 'alone'), instance: 7, warn: () => {} });
  let refused = 0;
  io.engine.on('connection_error', () => refused++);
  await new Promise((r) => httpServer.listen(0, '127.0.0.1', r));
  const port = httpServer.address().port;
  const clients = [...Array(10).keys()].map((i) => {
    const socket = connect(`http://127.0.0.1:${port}`, { transports: i % 2 ? ['polling'] : ['polling', 'websocket'], reconnection: false, forceNew: true });
    const c = { socket, reason: null };
    socket.on('disconnect', (reason) => { c.reason = reason; });
    return c;
  });
  await Promise.all(clients.map((c) => new Promise((r) => c.socket.on('connect', r))));
  await sleep(300);
  const lines = [];
  await stop({ drainMs: 0, log: (l) => lines.push(l) });
  await sleep(300);
  assert.match(lines.join('\n'), known ? /0 session\(s\) handed over, 10 closed/ : /closed plainly/);
  assert.ok(clients.every((c) => c.reason !== null), 'every client disconnected');
  assert.strictEqual(refused, 0);
  assert.ok(!httpServer.listening);
  for (const c of clients) c.socket.close();
  io.close();
});
