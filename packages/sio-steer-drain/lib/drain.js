// A worker's graceful stop (pm2 reload, pm2 stop, pm2 scale down):
//
// 1. (drainMs, 0 by default) keep serving: sessions may end on their own.
// 2. With a successor (the newest worker of this PM2 instance, the one sio-steer sends this
//    worker's clients to): from now on handshakes go to it, and every long-polling session is handed
//    to it (handover.js): the client is not disconnected and loses nothing. A WebSocket cannot move
//    between processes: it is closed, once no ack is owed on it, and Socket.IO's connection state
//    recovery gives the client its id, rooms and missed events back on the successor. Each client
//    (or destination) is released to the successor over sio-steer's control socket once all of its
//    sessions are settled, so that its next connection goes straight there.
//    Without a successor (stopping for good): the same with a worker of another instance that is
//    not stopping, or, with none, every session closed for Socket.IO to recover elsewhere.
// 3. Stop listening, wait for the requests still passed on, and leave a link to the successor.
// Nothing here waits on a guess of how long a client takes: a request that reaches this worker
// late is passed on to where its session is.
'use strict';
const net = require('node:net');
const { connectControl } = require('./control');
const { sendStep } = require('./peer-server');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Stops accepting connections and leaves the open ones be (http.Server.close() would also cut the
// idle ones, which a client may be sending on that very moment).
function stopListening(httpServer) {
  if (httpServer.listening) net.Server.prototype.close.call(httpServer);
}

const connections = (server) => new Promise((r) => server.getConnections((e, n) => r(e ? 0 : n)));

const DEFAULTS = { drainMs: 0, successorWaitMs: 5000, controlTimeoutMs: 2000, parallel: 32, log: () => {} };

// PM2's kill_timeout for this worker (ms), if it runs under PM2: the one bound on a stop that is
// not a guess; everything the stop waits for fits in it.
function pm2KillTimeout() {
  let t = Number(process.env.kill_timeout);
  if (!(t > 0)) {
    try { t = Number(JSON.parse(process.env.pm2_env ?? '{}').kill_timeout); } catch { t = NaN; }
  }
  return t > 0 ? t : null;
}

// How long the sessions may take to settle, from the stop's start: PM2's kill_timeout less what
// comes after (the kept-alive connections' timeout, a second to exit), else 10 s.
function goodbyeBudget(httpServer) {
  const kill = pm2KillTimeout();
  return kill ? Math.max(1000, kill - (httpServer.keepAliveTimeout || 5000) - 2000) : 10000;
}

// When PM2 sends SIGKILL less a second to exit, from the stop's start; Infinity outside PM2.
function killDeadline(start) {
  const kill = pm2KillTimeout();
  return kill ? start + kill - 1000 : Infinity;
}

// Until every session has settled or `until`; what is left is closed by io.close().
async function settleAll(ctx, opts, successor, control, stats, until) {
  const { io, owed, router } = ctx;
  const engine = io.engine;
  const started = new Set(), tracked = new Set();
  const byKey = new Map(); // key -> its sessions here not settled yet
  const track = (conn) => {
    tracked.add(conn);
    if (!byKey.has(conn.sioSteerKey)) byKey.set(conn.sioSteerKey, new Set());
    byKey.get(conn.sioSteerKey).add(conn);
  };
  const released = new Set(), releases = [];
  const release = (key) => {
    if (!control || !key || released.has(key)) return undefined;
    released.add(key);
    const done = control.request(`release ${key}`).then((r) => { stats[r.split(' ')[0]] = (stats[r.split(' ')[0]] ?? 0) + 1; });
    releases.push(done);
    return done;
  };
  const settled = (conn) => {
    const left = byKey.get(conn.sioSteerKey);
    left?.delete(conn);
    if (left?.size === 0) release(conn.sioSteerKey);
  };
  // ready: nothing owed to the client, no POST of it under way, no transport change under way
  const ready = (conn) => !conn.upgrading && !conn.transport.dataReq && !(owed.get(conn) > 0) && !router.posting(conn.id);
  const settle = async (conn) => {
    while (conn.readyState === 'open' && !ready(conn) && Date.now() < until) await sleep(2);
    if (conn.readyState !== 'open') return;
    if (successor && conn.transport.name === 'polling' && Date.now() < until) {
      const outcome = await giveAway(ctx, conn, successor, until);
      if (outcome === 'handed') return void stats.handed++;
      stats.failed++;
      opts.log(`handover of session ${conn.id} to ${successor}: ${outcome}; closing it instead`);
    }
    // The client reconnects on new connections: released first, they go straight to the successor
    // (its WebSocket, established, is not moved). Otherwise its upgrade could reach this worker and
    // be passed on as bytes through it, a connection that dies with it (a second reconnect).
    // A request of another session of the same client going there meanwhile is passed back here.
    if (router.passOn && byKey.get(conn.sioSteerKey)?.size === 1) await release(conn.sioSteerKey);
    await closeWhenQuiet(conn, owed, until, ctx.handover);
    stats.closed++;
  };
  let running = 0;
  const settling = [];
  while (engine.clientsCount > 0 && Date.now() < until) {
    const all = Object.values(engine.clients);
    for (const conn of all) if (!tracked.has(conn)) track(conn);
    for (const conn of all) {
      if (started.has(conn) || running >= opts.parallel) continue;
      started.add(conn);
      running++;
      settling.push(settle(conn).catch((e) => opts.log(`session ${conn.id}: ${e.message}`)).finally(() => { running--; settled(conn); }));
    }
    await sleep(5);
  }
  await Promise.all(settling);
  await Promise.all(releases);
  while (router.held.size > 0 && Date.now() < until) await sleep(5);
}

// Closes a session (its buffered packets, then the close; Socket.IO keeps its state for the
// client's reconnect) at the moment its client is least likely to have a message on the way, which
// would be lost with the session: right after this worker acked one (a client that just had its
// answer is between messages), or when the client answers a ping with nothing owed to it.
function closeWhenQuiet(conn, owed, until, handover) {
  return new Promise((resolve) => {
    // a packet read with the ack's turn of the event loop reaches Socket.IO a tick later: look once more then
    const quiet = () => setImmediate(() => { if (!(owed.get(conn) > 0)) close(); });
    const close = () => {
      clearTimeout(timer);
      conn.off('heartbeat', onPong);
      conn.off('close', close);
      conn.sioSteerOnIdle = null;
      if (conn.readyState === 'open') {
        // what this worker has sent it ends here, exactly: its recovery elsewhere starts there (recovery.js)
        for (const s of handover.socketsOf(conn)) s.sioSteerCut = handover.cutOf(s);
        conn.close();
      }
      resolve();
    };
    const onPong = () => { if (!(owed.get(conn) > 0)) quiet(); };
    const timer = setTimeout(close, Math.max(0, until - Date.now()));
    conn.sioSteerOnIdle = quiet;
    conn.on('heartbeat', onPong);
    conn.once('close', close); // the client went first
    conn.sendPacket('ping');
  });
}

// Hands one long-polling session over: 'handed', or why not (the session is still here).
async function giveAway(ctx, conn, successor, until) {
  const { router, handover } = ctx;
  const peers = router.peers;
  const sid = conn.id;
  router.hold(sid);
  try {
    // the client's pending GET, if any, is answered now: its next request waits for the successor
    if (conn.transport.writable) {
      conn.sentCallbackFn.push(null); // as Engine.IO's flush() does, to keep its drain callbacks in step
      conn.transport.send([{ type: 'noop' }]);
    }
    const to = peers.pathOf(successor);
    const left = () => Math.max(1, until - Date.now()); // a step may take what is left of the budget, no more
    let snapshot;
    try {
      snapshot = handover.snapshot(conn, conn.sioSteerKey ?? null);
    } catch (e) {
      return `cannot send its state (${e.message})`;
    }
    try {
      await sendStep(to, 'prepare', snapshot, left());
    } catch (e) {
      return `not prepared (${e.message})`;
    }
    if (conn.readyState !== 'open') {
      sendStep(to, 'abort', JSON.stringify({ sid }), 5000).catch(() => {});
      return 'closed meanwhile';
    }
    const frozen = handover.freeze(conn);
    try {
      await sendStep(to, 'commit', frozen.body, left());
    } catch (e) {
      handover.thaw(conn, frozen);
      sendStep(to, 'abort', JSON.stringify({ sid }), 5000).catch(() => {});
      return `not committed (${e.message})`;
    }
    handover.detach(conn);
    router.release(sid, successor);
    return 'handed';
  } finally {
    router.release(sid); // no-op once handed; else its requests are served here again
  }
}

async function findSuccessor(peers, waitMs) {
  const until = Date.now() + waitMs;
  for (;;) {
    const token = await peers.successor();
    if (token || Date.now() >= until) return token;
    await sleep(50);
  }
}

/** The stop, for a gracefulStop() context: { io, httpServer, router, peers, handover, owed, ready }. */
async function drainAndClose(ctx, options = {}) {
  // every deadline counts from here: the looking around below takes time too, more on a busy host
  const start = Date.now();
  const opts = { ...DEFAULTS, goodbyeMs: goodbyeBudget(ctx.httpServer), ...options };
  const until = start + opts.goodbyeMs; // every session settled by then; io.close() takes the rest
  const { io, httpServer, router } = ctx;
  const engine = io.engine;
  const peers = await Promise.race([ctx.ready, sleep(opts.successorWaitMs).then(() => null)]).catch(() => null);
  if (opts.drainMs > 0) {
    opts.log(`draining ${engine.clientsCount} session(s) for up to ${opts.drainMs} ms`);
    const drainUntil = Math.min(start + opts.drainMs, until);
    while (engine.clientsCount > 0 && Date.now() < drainUntil) await sleep(50);
  }
  const left = engine.clientsCount;
  await peers?.stopping();
  const successor = peers ? await findSuccessor(peers, opts.successorWaitMs) : null;
  // stopping for good (pm2 scale down, pm2 stop of one instance): another instance's worker takes
  // the sessions; sio-steer sends their clients wherever its ring says, which passes them on there
  const target = successor ?? (peers ? await peers.sibling() : null);
  const stats = { handed: 0, closed: 0, failed: 0, ok: 0, none: 0, error: 0 };
  const control = successor && opts.controlSocket
    ? await connectControl(opts.controlSocket, { timeoutMs: opts.controlTimeoutMs, log: opts.log })
    : null;
  if (successor && opts.controlSocket && !control) opts.log(`no sio-steer control socket at ${opts.controlSocket}: clients follow the closed listener`);
  opts.log(`stopping with ${left} session(s): ${successor ? `handing them to the successor, worker ${successor}`
    : target ? `no successor: handing them to worker ${target} of another instance` : `no other worker${peers ? '' : ' (no peer folder)'}: closing them`}`);

  // It keeps listening until its sessions are settled: a request of a session not settled yet may
  // come on a new connection (behind nginx, each one does), and with no other listener on the port
  // (the whole app stops) it would be refused. Handshakes go to the target meanwhile.
  router.stopping = true;
  router.successor = target;
  if (left > 0 || engine.clientsCount > 0) await settleAll(ctx, opts, target, control, stats, until);
  control?.close();

  stopListening(httpServer); // its queue goes to the successor (sio-steer migrates it)
  // Each connection still open closes after its next response ("Connection: close"), or when idle
  // past the keep-alive timeout the server announced: a client that honours it (Node's agent does)
  // never sends on a connection the server is closing, as it could if idle ones were cut now.
  const connectionsBy = Math.min(Math.max(until, Date.now()) + (httpServer.keepAliveTimeout || 5000) + 1000, killDeadline(start));
  while ((router.inFlight > 0 || (await connections(httpServer)) > 0) && Date.now() < connectionsBy) await sleep(20);
  const leftover = engine.clientsCount;
  io.close(); // what did not settle in goodbyeMs (its callback waits for every connection: not awaited)
  await peers?.retire(target);
  opts.log(`stopped: ${stats.handed} session(s) handed over, ${stats.closed} closed (the client reconnects${io.opts.connectionStateRecovery ? ' and recovers' : ''}), ` +
    `${stats.failed} handover(s) failed, ${leftover} left to io.close(); ${ctx.key === 'destination' ? 'destinations' : 'clients'} released: ${stats.ok}, not released: ${stats.none + stats.error}; ` +
    `requests passed on: ${router.stats.forwarded} (handshakes ${router.stats.handshakes})` +
    (ctx.handover.stats.incomplete ? `; ${ctx.handover.stats.incomplete} cut(s) past the delivery log: events may come twice` : ''));
  await sleep(100); // close frames on their way out
  return stats;
}

module.exports = { drainAndClose };
