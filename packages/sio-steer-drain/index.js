// Graceful stop of a Socket.IO worker behind sio-steer (pm2 reload, pm2 stop), in three steps:
//
// 1. Drain: keep listening and serving. sio-steer keeps sending the clients that have a session
//    here to this worker as long as it listens, and sends new clients to the instance's replacement
//    (the newest listener), so sessions end on their own, without an error.
// 2. Goodbye, when drainMs is up, to each remaining session once no ack is owed to its client and
//    no upgrade is under way: a WebSocket close frame, or Engine.IO's close packet as the answer to
//    the session's long-polling GET (after whatever was buffered for it, and a ping; the GET before
//    measures the client's round trip). The client reconnects after its reconnection delay
//    (Socket.IO's default: 0.5-1.5 s). Once the client has read the goodbye (it answers the ping,
//    or its round trip has passed), the worker releases it over sio-steer's control socket: its
//    reconnect goes to the successor, while the clients not told yet still come here. A long-polling session stays open for POSTs graceMs longer: one the client sent
//    before it read the goodbye is served here, not refused with "400 Session ID unknown".
// 3. Stop listening once every session is closed.
//
// Without a controller to release clients to, the listener closes as soon as the goodbyes are out
// and the reconnects find it gone (sio-steer sends a closed socket's clients to its successor); a
// request of a session not told yet that comes on a new connection then gets a 400 there.
//
// Engine.IO's own io.close() discards instead: it resets POSTs in flight and drops at once the
// sessions whose poll is not pending, whose next request then gets "400 Session ID unknown".
// Steps 2 and 3 use Engine.IO internals (writeBuffer, packetsFn, sentCallbackFn, transport.send,
// writable, dataReq, upgrading), tested on the engine.io lines in KNOWN_ENGINES (socket.io 4.7 and
// 4.8: test/). On an engine.io it does not know, it warns once and stops plainly instead: the drain
// (step 1, public API), then httpServer.close() and io.close().
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

// engine.io minor versions whose internals this module was tested on (test/matrix/), with the event
// a polling transport emits when the client's GET arrives (a write may go out): 6.6 renamed it.
const GET_EVENT = { '6.5': 'drain', '6.6': 'ready' };
const KNOWN_ENGINES = Object.keys(GET_EVENT);

// The version of the engine.io that made io.engine: the engine.io module whose Server it is an
// instance of, among those loaded (an app may have several copies), and that module's package.json.
function engineVersion(engine) {
  for (const [file, mod] of Object.entries(require.cache)) {
    if (!/[\\/]engine\.io[\\/]build[\\/]engine\.io\.js$/.test(file)) continue;
    const Server = mod.exports?.Server;
    if (typeof Server !== 'function' || !(engine instanceof Server)) continue;
    try {
      return JSON.parse(fs.readFileSync(path.join(path.dirname(file), '..', 'package.json'), 'utf8')).version;
    } catch {
      return null;
    }
  }
  return null;
}

// { version, known }: whether this module knows the engine.io of `io`.
function engineSupport(io) {
  const version = engineVersion(io.engine);
  const line = version?.split('.').slice(0, 2).join('.');
  return { version, known: Boolean(version && KNOWN_ENGINES.includes(line)), getEvent: GET_EVENT[line] };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Acks this worker still owes, per Engine.IO socket: a handler that awaits something (Redis) acks
// later, and a goodbye before would lose the ack.
const owed = new WeakMap();

function countAcks(socket) {
  const conn = socket.conn;
  socket.use((packet, next) => {
    const last = packet.length - 1;
    const ack = packet[last];
    if (typeof ack === 'function') {
      owed.set(conn, (owed.get(conn) || 0) + 1);
      packet[last] = (...args) => {
        owed.set(conn, owed.get(conn) - 1);
        ack(...args);
      };
    }
    next();
  });
}

// sio-steer's control socket: one line per request, one per reply, in order. Null if no
// controller listens there. The controller closes a connection idle for 5 s: the next request opens
// another. A request not answered within timeoutMs (a controller stopped or overwhelmed), or a
// controller gone, makes it give up, with one line to log: every request from then on answers
// "error ..." at once, and onGiveUp() lets the drain carry on as without a controller.
async function connectControl(path, { timeoutMs = 2000, log = () => {}, onGiveUp = () => {} } = {}) {
  let sock = null, opening = null, failed = null;
  const waiting = [];
  const giveUp = (why) => {
    if (failed) return;
    failed = why;
    log(`sio-steer control socket ${path}: ${why}; not releasing clients any more, the reconnects follow the closed listener`);
    for (const reply of waiting.splice(0)) reply(`error ${why}`);
    sock?.destroy();
    onGiveUp();
  };
  const open = () => new Promise((resolve) => {
    const s = net.createConnection({ path });
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); resolve(null); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      for (let eol; (eol = buf.indexOf('\n')) >= 0; buf = buf.slice(eol + 1)) waiting.shift()?.(buf.slice(0, eol));
    });
    s.on('error', () => { clearTimeout(timer); resolve(null); });
    s.on('close', () => {
      if (sock === s) sock = null;
      if (!failed) for (const reply of waiting.splice(0)) reply('error the control socket closed');
    });
    s.on('connect', () => { clearTimeout(timer); resolve(s); });
  });
  const connected = async () => {
    if (!sock && !opening) opening = open().then((s) => { sock = s; opening = null; return s; });
    return sock ?? opening;
  };
  if (!(await connected())) return null;
  return {
    request: async (line) => {
      if (failed) return `error ${failed}`;
      const s = await connected();
      if (failed) return `error ${failed}`;
      if (!s) return giveUp(`cannot connect within ${timeoutMs} ms`), `error ${failed}`;
      return new Promise((reply) => {
        const timer = setTimeout(() => giveUp(`no answer within ${timeoutMs} ms`), timeoutMs);
        waiting.push((r) => { clearTimeout(timer); reply(r); });
        s.write(`${line}\n`);
      });
    },
    failed: () => failed !== null,
    close: () => sock?.end(),
  };
}

// Says goodbye to one session as soon as it may. Resolves once its client has read the goodbye:
// from then on it sends nothing more for this session, so releasing it cannot send one of its
// requests to the successor. Resolves with how long the pong took (ms), 'late' when the client did
// not say so (then: its round trip + readMs), or undefined (no pong to wait for: WebSocket, or
// closed meanwhile).
function sayGoodbye(socket, readMs, getEvent) {
  return new Promise((done) => {
    const ready = () => !socket.upgrading && !(owed.get(socket) > 0);
    if (socket.transport.name !== 'polling') {
      const tryClose = () => {
        if (socket.readyState !== 'open') return done();
        if (!ready()) return setTimeout(tryClose, 2);
        socket.close(); // buffered packets, then the close frame
        done(); // a WebSocket client sends nothing on a new connection before it reconnects
      };
      return tryClose();
    }
    // Long-polling, in two answers to the client's GETs:
    // 1. the buffered packets and a noop: the client polls again as soon as it has read them, so
    //    the next GET measures its round trip now (through whatever proxies, on however busy a host);
    // 2. once no POST of it is being read here: the buffered packets, a ping and the close packet.
    //    The client answers the ping (a POST) as it reads the payload, before the close: the pong
    //    says it has read the goodbye. No pong if it had a POST in flight then: that POST, sent
    //    before it read the goodbye, arrives within about one round trip, and its reconnect, 0.5 s
    //    or more after it read the goodbye (Socket.IO's shortest default delay), a round trip
    //    later: so it counts as read after the round trip + readMs.
    // The session stays open for the POSTs that crossed the goodbye (graceMs).
    const transport = socket.transport;
    const send = (extra) => { // as socket.flush() hands the buffered packets over
      const buffered = socket.writeBuffer.splice(0);
      socket.sentCallbackFn.push(socket.packetsFn.length ? socket.packetsFn.splice(0) : null);
      transport.send([...buffered, ...extra]);
    };
    let polledAt = null, roundTrip = null;
    const stop = () => { transport.removeListener(getEvent, onGet); clearInterval(retry); };
    const onGet = () => {
      if (socket.readyState !== 'open') return stop(), done();
      if (!transport.writable) return;
      if (polledAt !== null && roundTrip === null) roundTrip = Date.now() - polledAt;
      if (!ready()) return;
      if (polledAt === null) {
        polledAt = Date.now();
        return send([{ type: 'noop' }]);
      }
      if (transport.dataReq) return; // a POST being read: the client could not answer the ping
      stop();
      const sentAt = Date.now();
      const pong = new Promise((r) => {
        const onPacket = (p) => { if (p.type === 'pong') { socket.off('packet', onPacket); r(Date.now() - sentAt); } };
        socket.on('packet', onPacket);
      });
      send([{ type: 'ping' }, { type: 'close' }]);
      Promise.race([pong, sleep(roundTrip + readMs).then(() => 'late')]).then(done);
    };
    transport.prependListener(getEvent, onGet); // before Engine.IO flushes the GET
    const retry = setInterval(onGet, 2); // a GET already pending, or an ack owed a moment ago
    onGet();
  });
}

// How the long-polling goodbyes were read: by a pong (the slowest one), or late (no pong).
function countReads(stats, reads) {
  for (const read of reads) {
    if (read === 'late') stats.late++;
    else if (typeof read === 'number') {
      stats.pongs++;
      stats.pongMaxMs = Math.max(stats.pongMaxMs, read);
    }
  }
}

// Closes a session that got its goodbye, once no POST of it is being read.
async function closeWhenIdle(socket, until) {
  while (socket.readyState === 'open' && socket.transport.dataReq && Date.now() < until) await sleep(2);
  socket.close(true);
}

// Says goodbye to every session, releases each client address once it has read the goodbye of all
// its sessions here, and closes the sessions after graceMs. onAllTold: once every goodbye is out.
async function goodbye(engine, control, opts, stats, onAllTold) {
  const until = Date.now() + opts.goodbyeMs;
  const byAddress = new Map(); // client address -> its sessions here
  for (const socket of Object.values(engine.clients)) {
    const sessions = byAddress.get(socket.remoteAddress) ?? [];
    byAddress.set(socket.remoteAddress, [...sessions, socket]);
  }
  const tolds = [];
  const done = Promise.all([...byAddress].map(async ([address, sessions]) => {
    const told = Promise.race([
      Promise.all(sessions.map((s) => sayGoodbye(s, opts.readMs, opts.getEvent))).then((reads) => {
        countReads(stats, reads);
        return true;
      }),
      sleep(Math.max(0, until - Date.now())).then(() => false),
    ]);
    tolds.push(told);
    if (!(await told)) return; // left to io.close()
    const toldAt = Date.now();
    stats.told += sessions.length;
    if (control) {
      const reply = await control.request(`release ${address}`);
      stats[reply.split(' ')[0]]++;
      if (!reply.startsWith('ok')) opts.log(`release ${address}: ${reply}`); // why a client stays
    }
    await sleep(Math.max(0, toldAt + opts.graceMs - Date.now())); // POSTs that crossed the goodbye
    await Promise.all(sessions.map((s) => closeWhenIdle(s, until + opts.graceMs)));
  }));
  Promise.all(tolds).then(onAllTold);
  await done;
}

// Destination mode (`sio-steer attach --key destination` behind `sio-steer nginx-conf --key
// destination`): sio-steer keys on the address nginx connected to, which several clients share, and
// nginx keeps connections to it alive and reuses them for any of those clients. So a destination
// moves to the successor as a whole, and only when nginx has no kept-alive connection to this
// worker left that a later request through it could take. Per destination:
//   1. every response through it says `Connection: close` (nginx keeps none of them);
//   2. goodbye to each of its sessions here, and to any that a reconnect opens here meanwhile;
//   3. hold: a request through it for no session here (a handshake, a session elsewhere) waits;
//   4. release it to the successor; close its idle connections, and each busy one after its
//      response; the held requests' connections are closed unanswered, and nginx sends them once
//      more on a new connection (the generated upstream has the destination as backup of itself),
//      which now reaches the successor.
// Sessions told goodbye keep their POSTs served here for graceMs, on the connections left.
function destinationTracker(httpServer, engine) {
  const conns = new Map(); // destination -> its HTTP connections here
  const closing = new Set(), holding = new Map(); // destination -> sockets of held requests
  httpServer.on('connection', (sock) => {
    const d = sock.localAddress;
    sock.sioDest = d;
    sock.sioBusy = 0;
    if (!conns.has(d)) conns.set(d, new Set());
    conns.get(d).add(sock);
    sock.on('close', () => conns.get(d)?.delete(sock));
  });
  const sessionHere = (req) => {
    const sid = /[?&]sid=([^&]+)/.exec(req.url)?.[1];
    return Boolean(sid && engine.clients[sid]);
  };
  // in front of Engine.IO's own listeners, which it installed when it attached
  const wrap = (event, upgrade) => {
    const listeners = httpServer.listeners(event).slice(0);
    httpServer.removeAllListeners(event);
    httpServer.on(event, (req, resOrSock, head) => {
      const sock = req.socket, d = sock.sioDest;
      if (closing.has(d)) {
        if (holding.has(d) && req.url.startsWith('/socket.io/') && !sessionHere(req)) {
          holding.get(d).add(sock); // answered by nginx's second attempt, after the release
          return;
        }
        if (!upgrade) resOrSock.shouldKeepAlive = false; // "Connection: close"
      }
      if (upgrade) sock.sioUpgraded = true;
      else {
        sock.sioBusy++;
        resOrSock.once('close', () => {
          if (--sock.sioBusy === 0 && holding.get(d)?.released) sock.destroy();
        });
      }
      for (const l of listeners) l.call(httpServer, req, resOrSock, head);
    });
  };
  wrap('request', false);
  wrap('upgrade', true);
  return {
    keyOf: (socket) => socket.request?.socket?.sioDest ?? socket.remoteAddress,
    close: (d) => closing.add(d),
    hold: (d) => { if (!holding.has(d)) holding.set(d, new Set()); },
    released: (d) => {
      const held = holding.get(d);
      held.released = true;
      for (const sock of held) sock.destroy();
      for (const sock of conns.get(d) ?? []) if (!sock.sioBusy && !sock.sioUpgraded) sock.destroy();
    },
  };
}

// Destination mode's goodbye: per destination, steps 1-4 above; otherwise as goodbye().
async function goodbyeByDestination(engine, dests, control, opts, stats, onAllTold) {
  const until = Date.now() + opts.goodbyeMs;
  const destinations = new Set(Object.values(engine.clients).map(dests.keyOf));
  for (const d of destinations) dests.close(d);
  const of = (d) => Object.values(engine.clients).filter((s) => dests.keyOf(s) === d);
  const tolds = [];
  const done = Promise.all([...destinations].map(async (d) => {
    const sessions = new Set();
    // tell every session here, and those that open meanwhile, until none is left untold
    const tellAll = async () => {
      for (let fresh; (fresh = of(d).filter((s) => !sessions.has(s))).length && Date.now() < until;) {
        for (const s of fresh) sessions.add(s);
        await Promise.race([Promise.all(fresh.map((s) => sayGoodbye(s, opts.readMs, opts.getEvent))).then((reads) => countReads(stats, reads)),
          sleep(Math.max(0, until - Date.now()))]);
      }
      return Date.now() < until;
    };
    const told = tellAll().then(async (ok) => {
      if (!ok) return false;
      dests.hold(d);
      return tellAll(); // a handshake served just before the hold
    });
    tolds.push(told);
    if (!(await told)) return; // left to io.close()
    const toldAt = Date.now();
    stats.told += sessions.size;
    if (control) stats[(await control.request(`release ${d}`)).split(' ')[0]]++;
    dests.released(d);
    await sleep(Math.max(0, toldAt + opts.graceMs - Date.now())); // POSTs that crossed the goodbye
    await Promise.all([...sessions].map((s) => closeWhenIdle(s, until + opts.graceMs)));
  }));
  Promise.all(tolds).then(onAllTold);
  await done;
}

// Call before the app's io.on('connection', ...) handlers. Returns stop(options), which resolves
// when the worker may exit. options: drainMs (10000), goodbyeMs (5000: then io.close() closes what
// is left), readMs (250: a long-polling client that does not say it read its goodbye counts as
// having read it after its round trip + readMs; below Socket.IO's shortest default reconnection
// delay, 500 ms), graceMs (1000: how long a session
// that got its goodbye takes POSTs), controlSocket (sio-steer's `<lock dir>/<port>.sock`), log (one
// line per step), controlTimeoutMs (2000: how long a release may wait for its answer; then the
// drain carries on without the controller, as if there were none). key: 'destination' for `sio-steer attach --key destination` (call after io is
// attached to httpServer), else clients are released by their address. warn: where the one warning
// about an unknown engine.io goes (console.warn).
function gracefulStop(io, httpServer, { key = 'address', warn = console.warn } = {}) {
  const engine = engineSupport(io);
  if (!engine.known) {
    warn(`sio-steer-drain: engine.io ${engine.version ?? '(version not found)'} is not one this version knows ` +
      `(${KNOWN_ENGINES.map((v) => `${v}.x`).join(', ')}): a stop only drains, then closes plainly ` +
      '(httpServer.close(), io.close()); during a reload, requests in flight may fail with "400 Session ID unknown". ' +
      'Pin socket.io 4.7 or 4.8, or upgrade sio-steer-drain.');
    return (options) => plainClose(io, httpServer, options);
  }
  io.on('connection', countAcks);
  const dests = key === 'destination' ? destinationTracker(httpServer, io.engine) : null;
  return (options) => drainAndClose(io, httpServer, { ...options, dests, getEvent: engine.getEvent });
}

// Unknown engine.io: step 1 (public API only), then Engine.IO's own close.
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

async function drainAndClose(io, httpServer, options = {}) {
  const opts = { drainMs: 10000, goodbyeMs: 5000, readMs: 250, graceMs: 1000, controlTimeoutMs: 2000, log: () => {}, ...options };
  const engine = io.engine;
  const until = Date.now() + opts.drainMs;
  opts.log(`draining ${engine.clientsCount} session(s) for up to ${opts.drainMs} ms`);
  while (engine.clientsCount > 0 && Date.now() < until) await sleep(50);

  const stats = { told: 0, ok: 0, none: 0, error: 0, pongs: 0, pongMaxMs: 0, late: 0 };
  const left = engine.clientsCount;
  if (left > 0) {
    // Without a controller (or once it stops answering), the listener closes as soon as the
    // goodbyes are out, for the reconnects to find it gone (a POST of a session not told yet would
    // then be refused).
    let allTold = false;
    const plainClose = () => { if (httpServer.listening) httpServer.close(); };
    const control = opts.controlSocket
      ? await connectControl(opts.controlSocket, { timeoutMs: opts.controlTimeoutMs, log: opts.log, onGiveUp: () => { if (allTold) plainClose(); } })
      : null;
    if (!control) opts.log(`no sio-steer control socket at ${opts.controlSocket}: the reconnects follow the closed listener`);
    const onAllTold = () => { allTold = true; if (!control || control.failed()) plainClose(); };
    if (opts.dests) await goodbyeByDestination(engine, opts.dests, control, opts, stats, onAllTold);
    else await goodbye(engine, control, opts, stats, onAllTold);
    control?.close();
  }
  if (httpServer.listening) httpServer.close(); // whatever reconnects now goes to the successor
  opts.log(`drained: goodbye to ${stats.told} of ${left} session(s); ${opts.dests ? 'destinations' : 'clients'} released to the successor: ${stats.ok}, ` +
    `not released: ${stats.none + stats.error}; long-polling goodbyes read: ${stats.pongs} by a pong (slowest ${stats.pongMaxMs} ms), ` +
    `${stats.late} late (no pong within a round trip + readMs ${opts.readMs} ms)`);
  // What is left (no goodbye within goodbyeMs, or opened meanwhile): Engine.IO closes it.
  // (io.close()'s callback waits for every HTTP connection to end: do not wait for it.)
  io.close();
  await sleep(200); // close frames and close packets on their way out
}

module.exports = { gracefulStop, connectControl, engineSupport, KNOWN_ENGINES };
