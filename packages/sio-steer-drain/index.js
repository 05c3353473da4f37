// sio-steer-drain: a Socket.IO worker behind sio-steer that stops (pm2 reload, scale, stop) without
// its clients noticing, and requests that always reach the worker holding their session.
//
// gracefulStop(io, httpServer) sets a worker up:
//  - its session ids name it (lib/session-id.js), and it serves a private socket in a folder only
//    its user can enter (lib/peers.js), where the app's other workers find it;
//  - in front of Engine.IO, a request for a session another worker holds is passed on to that
//    worker instead of being refused with "400 Session ID unknown" (lib/router.js): the kernel path
//    stays as it is for every request sio-steer steered right; this is for the rare one it could not
//    (a client whose address changed, a request that crossed a handover);
// and returns stop(), which hands every long-polling session to the successor and closes each
// WebSocket for Socket.IO to recover (lib/drain.js, lib/handover.js).
//
// The handover uses Engine.IO and Socket.IO internals, tested on the lines in KNOWN_ENGINES
// (socket.io 4.7 and 4.8: test/). On any other it warns once and stop() closes plainly.
'use strict';
const { engineSupport, classesOf, KNOWN_ENGINES } = require('./lib/internals');
const { newToken, newSessionId } = require('./lib/session-id');
const { Peers } = require('./lib/peers');
const { Router } = require('./lib/router');
const { Handover } = require('./lib/handover');
const { DeliveryLog } = require('./lib/offsets');
const { Stream } = require('./lib/stream');
const { installRecovery } = require('./lib/recovery');
const { createPeerServer } = require('./lib/peer-server');
const { drainAndClose } = require('./lib/drain');
const { connectControl } = require('./lib/control');
const { keepProbedUpgrades } = require('./lib/upgrade');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Acks this worker still owes, per Engine.IO session: a handler that awaits something (Redis) acks
// later, and a session handed over or closed before would lose the ack.
function countAcks(socket, owed) {
  const conn = socket.conn;
  socket.use((packet, next) => {
    const last = packet.length - 1;
    const ack = packet[last];
    if (typeof ack === 'function') {
      owed.set(conn, (owed.get(conn) || 0) + 1);
      packet[last] = (...args) => {
        owed.set(conn, owed.get(conn) - 1);
        ack(...args);
        if (owed.get(conn) === 0) conn.sioSteerOnIdle?.(); // a stop waiting for this moment (drain.js)
      };
    }
    next();
  });
}

const listening = (server) => (server.listening ? Promise.resolve() : new Promise((r) => server.once('listening', r)));

/**
 * Call before the app's io.on('connection', ...) handlers, after `io` is attached to `httpServer`.
 * Returns stop(options), which resolves when the worker may exit; stop.ready resolves once the
 * worker can be found by the others (await it before telling PM2 it is ready).
 */
function gracefulStop(io, httpServer, setup = {}) {
  const { key = 'address', warn = console.warn, peerDir, log = () => {} } = setup; // also: redis, streamName, sessionKeyPrefix, instance, passOn
  const instance = setup.instance ?? (process.env.NODE_APP_INSTANCE !== undefined ? Number(process.env.NODE_APP_INSTANCE) : null);
  const engine = engineSupport(io);
  const classes = engine.known ? classesOf(io) : null;
  if (!classes) {
    warn(`sio-steer-drain: engine.io ${engine.version ?? '(version not found)'} is not one this version knows ` +
      `(${KNOWN_ENGINES.map((v) => `${v}.x`).join(', ')}): a stop only drains, then closes plainly ` +
      '(httpServer.close(), io.close()): during a reload, clients reconnect and requests in flight may fail with "400 Session ID unknown". ' +
      'Pin socket.io 4.7 or 4.8, or upgrade sio-steer-drain.');
    const stop = (options) => plainClose(io, httpServer, options);
    stop.ready = Promise.resolve(null);
    return stop;
  }

  const owed = new WeakMap();
  io.on('connection', (socket) => countAcks(socket, owed));
  const token = newToken();
  io.engine.generateId = () => newSessionId(token);
  // the key sio-steer knows the session's client by, for the release
  const keepUpgrades = (conn) => keepProbedUpgrades(conn, engine.upgradeMethod);
  io.engine.on('connection', (conn) => {
    keepUpgrades(conn);
    conn.sioSteerKey = key === 'destination' ? conn.request?.sioSteerLocal ?? conn.request?.socket?.localAddress : conn.remoteAddress;
  });
  // with the Redis Streams adapter: its Redis client, to read what a moved session missed
  const stream = setup.redis ? new Stream(setup.redis, { streamName: setup.streamName }) : null;
  const logs = new Map();
  const handover = new Handover(io, { classes, logs, stream, log, onSession: keepUpgrades });
  const track = (nsp) => {
    logs.set(nsp.name, new DeliveryLog(nsp.adapter));
    if (stream && io.opts.connectionStateRecovery) installRecovery(nsp, { stream, logs, sessionKeyPrefix: setup.sessionKeyPrefix, stats: handover.stats, log });
  };
  for (const nsp of io._nsps.values()) track(nsp);
  io.on('new_namespace', track);
  const router = new Router({ io, httpServer, passOn: setup.passOn !== false });
  const server = createPeerServer(httpServer, {
    prepare: async (body) => { (await handover.prepare(body)); },
    commit: async (body) => { (await handover.commit(body)); },
    abort: (sid) => handover.abort(sid),
  });
  const ready = listening(httpServer)
    .then(() => Peers.open({ base: peerDir, port: httpServer.address().port, token, instance, server }))
    .then((peers) => { router.peers = peers; return peers; });
  router.opening = ready;
  ready.catch((e) => warn(`sio-steer-drain: ${e.message}: requests are not passed between workers, and a stop closes sessions instead of handing them over`));

  const stop = (options) => drainAndClose({ io, httpServer, router, handover, owed, ready, key }, options);
  stop.ready = ready.catch(() => null);
  stop.stats = () => ({ router: { ...router.stats }, handover: { ...handover.stats } });
  return stop;
}

// Unknown engine.io: drain (public API only), then Engine.IO's own close.
async function plainClose(io, httpServer, options = {}) {
  const opts = { drainMs: 10000, log: () => {}, ...options };
  const until = Date.now() + opts.drainMs;
  opts.log(`draining ${io.engine.clientsCount} session(s) for up to ${opts.drainMs} ms (plain close: unknown engine.io)`);
  while (io.engine.clientsCount > 0 && Date.now() < until) await sleep(50);
  const left = io.engine.clientsCount;
  httpServer.close();
  io.close();
  opts.log(`closed plainly: ${left} session(s) left to io.close()`);
  await sleep(200);
}

module.exports = { gracefulStop, connectControl, engineSupport, KNOWN_ENGINES };
