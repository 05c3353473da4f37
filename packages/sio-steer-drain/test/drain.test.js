// sio-steer-drain against one socket.io release (test/matrix.sh runs it for each): a server with
// long-polling and WebSocket clients busy with acked events, then stop(). On the engine.io lines it
// knows: no warning, every client told goodbye, no request refused (no "400 Session ID unknown"),
// no ack owed when a goodbye went out. On one it does not know: one warning, and a plain close.
// env: SIO_MATRIX_DIR (test/matrix/socket.io-X.Y, npm ci'd), SIO_MATRIX_KNOWN (1 or 0).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const path = require('node:path');
const { gracefulStop, engineSupport } = require('..');

const dir = process.env.SIO_MATRIX_DIR;
const known = process.env.SIO_MATRIX_KNOWN === '1';
const { Server } = require(path.join(dir, 'node_modules/socket.io'));
const { io: connect } = require(path.join(dir, 'node_modules/socket.io-client'));
const engineVersion = require(path.join(dir, 'node_modules/engine.io/package.json')).version;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test(`socket.io ${require(path.join(dir, 'node_modules/socket.io/package.json')).version} (engine.io ${engineVersion})`, async () => {
  const httpServer = http.createServer();
  const io = new Server(httpServer);
  const warnings = [];
  const stop = gracefulStop(io, httpServer, { warn: (line) => warnings.push(line) });
  let refused = 0;
  io.engine.on('connection_error', () => refused++);
  io.on('connection', (socket) => {
    socket.on('work', async (n, ack) => { await sleep(3); ack(n); }); // an ack owed for a moment
  });
  await new Promise((r) => httpServer.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${httpServer.address().port}`;

  const support = engineSupport(io);
  assert.deepStrictEqual([support.version, support.known], [engineVersion, known]);
  assert.strictEqual(warnings.length, known ? 0 : 1, warnings.join('\n'));
  if (!known) assert.match(warnings[0], new RegExp(`engine\\.io ${engineVersion.replace(/\./g, '\\.')} is not one this version knows`));

  const clients = [];
  for (let i = 0; i < 20; i++) {
    const c = { socket: connect(url, { transports: i % 2 ? ['polling'] : ['polling', 'websocket'], reconnection: false, forceNew: true }),
      sent: 0, acked: 0, reason: null };
    c.socket.on('disconnect', (reason) => { c.reason = reason; });
    clients.push(c);
  }
  await Promise.all(clients.map((c) => new Promise((r) => c.socket.on('connect', r))));
  await sleep(300); // the upgrades
  // every client busy: an acked event every 10 ms, until it is disconnected
  const busy = clients.map(async (c) => {
    while (c.socket.connected) {
      c.sent++;
      c.socket.emit('work', c.sent, () => { c.acked++; });
      await sleep(10);
    }
  });
  await sleep(200);
  const lines = [];
  await stop({ drainMs: 100, log: (l) => lines.push(l) });
  await Promise.all(busy);
  await sleep(100);

  assert.ok(clients.every((c) => c.reason !== null), 'every client disconnected');
  assert.ok(!httpServer.listening, 'the listener is closed');
  if (known) {
    assert.strictEqual(refused, 0, 'no request refused (400) during the stop');
    assert.match(lines.join('\n'), /drained: goodbye to 20 of 20 session\(s\)/);
    assert.ok(clients.every((c) => c.reason === 'transport close'), `goodbyes: ${clients.map((c) => c.reason)}`);
  } else {
    assert.match(lines.join('\n'), /closed plainly: 20 session\(s\) left to io\.close\(\)/);
  }
  for (const c of clients) c.socket.close();
  io.close();
});
