// Small Socket.IO chat for sio-steer: direct messages, typing indicator, unread counters and a
// room activity stream, shared between PM2 workers through the Redis adapter.
//
// env: PORT (5001), HOST (all addresses), REDIS_URL (redis://127.0.0.1:6379),
//      SIO_REUSEPORT=0 to listen without reusePort (PM2's primary then owns the one listener),
//      SIO_STICKY=1 in a worker of sticky.js: no listen, @socket.io/sticky's primary hands it connections,
//      SIO_DRAIN_MS (0): how long a stopping worker keeps serving its sessions before handing them over (sio-steer-drain, packages/sio-steer-drain),
//      SIO_STOP=close: stop the way most apps do instead (httpServer.close(); io.close()), to compare,
//      SIO_STEER_LOCK_DIR (/run/sio-steer): `sio-steer attach --lock-dir`, where its control socket is,
//      SIO_STEER_KEY=destination: attached with `--key destination` (behind `nginx-conf --key destination`):
//        a stopping worker hands its destinations over instead of its client addresses (sio-steer-drain, packages/sio-steer-drain),
//      SIO_STICKY_MODULE: the @socket.io/sticky whose setupWorker to use (its primary's version, e.g.
//        the one @socket.io/pm2's God daemon runs), SIO_CLUSTER_ADAPTER: the path of
//        @socket.io/cluster-adapter, to relay broadcasts through the cluster primary instead of Redis,
//      HOST_NAME: this host's name, reported with the worker (hello, acks, /health): several hosts
//        behind one balancer (docs/scale-out.md),
//      SIO_SID_COOKIE: name of a cookie in which the handshake's response carries the session id
//        (Engine.IO's `cookie` option): an HTTP balancer learns from it which host holds the session
//        and sends the session's requests (?sid=) there (docs/scale-out.md, draining a host),
//      SIO_ADAPTER (streams): "streams" for @socket.io/redis-streams-adapter with Socket.IO's connection
//        state recovery (a client that reconnects gets its id, rooms and missed events back), "redis"
//        for the classic @socket.io/redis-adapter (pub/sub, no recovery),
//      SIO_PASS_ON=0: a request for another worker's session is refused with 400 as in a plain app, not
//        passed on to that worker (sio-steer-drain's passOn): to show what sio-steer fixes by itself,
//      SIO_STREAM_MAXLEN (100000): broadcasts the Redis stream keeps (the adapter's maxLen),
//      SIO_STEER_PEER_DIR: where the workers find each other (sio-steer-drain's peerDir; default
//        $XDG_RUNTIME_DIR/sio-steer or /tmp/sio-steer-<uid>).
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { Server } = require('socket.io');
const { createAdapter: createPubSubAdapter } = require('@socket.io/redis-adapter');
const { createAdapter: createStreamsAdapter } = require('@socket.io/redis-streams-adapter');
const { createClient } = require('redis');
const { gracefulStop } = require('sio-steer-drain'); // packages/sio-steer-drain

const PORT = Number(process.env.PORT || 5001);
const HOST = process.env.HOST || undefined;
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const REUSEPORT = process.env.SIO_REUSEPORT !== '0';
const STICKY = process.env.SIO_STICKY === '1';
const DRAIN_MS = Number(process.env.SIO_DRAIN_MS ?? 0);
const ABRUPT_STOP = process.env.SIO_STOP === 'close';
const CONTROL_SOCKET = `${process.env.SIO_STEER_LOCK_DIR || '/run/sio-steer'}/${PORT}.sock`;
const STEER_KEY = process.env.SIO_STEER_KEY || 'address';
const STICKY_MODULE = process.env.SIO_STICKY_MODULE || '@socket.io/sticky';
const CLUSTER_ADAPTER = process.env.SIO_CLUSTER_ADAPTER;
const ADAPTER = process.env.SIO_ADAPTER || 'streams';
const PEER_DIR = process.env.SIO_STEER_PEER_DIR || undefined;
const PASS_ON = process.env.SIO_PASS_ON !== '0';
// The stream keeps the last STREAM_MAXLEN broadcasts for clients between two workers: at the load
// tests' ~4,000 broadcasts/s the adapter's default (10,000) is 2.5 s, less than a busy handover may
// need; 100,000 is 25 s (about 20 MB in Redis).
const STREAM_MAXLEN = Number(process.env.SIO_STREAM_MAXLEN || 100000);
// PM2 sets NODE_APP_INSTANCE at run time (cluster and fork mode); a plain `node server.js` is 0.
const INSTANCE = Number(process.env.NODE_APP_INSTANCE || 0);
const me = { pid: process.pid, instance: INSTANCE, ...(process.env.HOST_NAME ? { host: process.env.HOST_NAME } : {}) };

// The page (public/): GET / and its two files; the Socket.IO client is /socket.io/socket.io.min.js.
const PAGE = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/chat.js': ['chat.js', 'text/javascript; charset=utf-8'],
  '/chat.css': ['chat.css', 'text/css; charset=utf-8'],
};
const INBOX_MAX = 500; // messages kept per user for a page to catch up after a reconnect

let engineErrors = 0; // requests this worker refused (e.g. code 1, "Session ID unknown")

async function main() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  const store = pub.duplicate(); // unread counters live in Redis, so every worker sees them
  for (const c of [pub, sub, store]) c.on('error', (e) => console.error('redis:', e.message));
  await Promise.all([pub.connect(), sub.connect(), store.connect()]);

  const httpServer = http.createServer((req, res) => {
    if (req.url === '/health') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ...me, node: process.version, reusePort: REUSEPORT, clients: io.engine.clientsCount, engineErrors }));
      return;
    }
    const file = PAGE[req.url.split('?')[0]];
    if (file && req.method === 'GET') {
      res.setHeader('content-type', file[1]);
      fs.createReadStream(path.join(__dirname, 'public', file[0])).pipe(res);
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  const streams = !CLUSTER_ADAPTER && ADAPTER === 'streams';
  const adapter = CLUSTER_ADAPTER ? require(CLUSTER_ADAPTER).createAdapter()
    : streams ? createStreamsAdapter(pub, { maxLen: STREAM_MAXLEN }) : createPubSubAdapter(pub, sub);
  // connection state recovery: what a client missed while it reconnects (a worker's WebSocket
  // closed by a reload) is stored in the Redis stream and replayed on whichever worker it reaches
  const io = new Server(httpServer, {
    adapter, ...(streams ? { connectionStateRecovery: { maxDisconnectionDuration: 120000 } } : {}),
    ...(process.env.SIO_SID_COOKIE ? { cookie: { name: process.env.SIO_SID_COOKIE, path: '/', httpOnly: true, sameSite: 'lax' } } : {}),
  });
  io.engine.on('connection_error', () => { engineErrors++; });
  const log = (line) => console.log(`chat: pid ${me.pid} instance ${INSTANCE}: ${line}`);
  // Not under @socket.io/sticky (its primary hands connections over; this worker never listens, and
  // sticky reads its own session id format): that contender runs as its docs say, without it.
  const drainAndClose = STICKY ? null : gracefulStop(io, httpServer, {
    key: STEER_KEY, peerDir: PEER_DIR, passOn: PASS_ON, log, ...(streams ? { redis: pub } : {}),
  });
  // A stalled event loop makes Engine.IO time sessions out (its timers run before the pongs that
  // wait to be read): say when this process could not run for 2 s or more.
  let tick = performance.now();
  setInterval(() => {
    const late = performance.now() - tick - 500;
    if (late >= 2000) log(`event loop stalled ${Math.round(late)} ms`);
    tick = performance.now();
  }, 500).unref();

  // What a timed-out session's transport was doing: a stuck write, or a connection through a sibling.
  const via = (sock) => (sock?._handle?.constructor?.name === 'Pipe' ? 'passed on by a sibling' : 'direct');
  const transportState = (conn) => {
    const t = conn.transport;
    return `${t.name}, ${t.writable ? 'writable' : 'not writable'}, ${conn.writeBuffer.length} queued, ${via(t.socket?._socket ?? conn.request?.socket)}`;
  };
  // An upgrade that fails after its probe leaves socket.io-client's polling paused for good (it
  // waits for the next ping timeout): say when, and how long after the probe.
  io.engine.on('connection', (conn) => {
    conn.on('upgrading', (t) => {
      const began = performance.now();
      t.once('close', () => {
        if (conn.transport !== t && conn.readyState === 'open') {
          log(`session ${conn.id}: upgrade to ${t.name} failed ${Math.round(performance.now() - began)} ms after its probe (${via(t.socket?._socket)})`);
        }
      });
    });
  });
  io.on('connection', async (socket) => {
    // the server gave up on a client: worth a line (on a starved host, the reason is below)
    socket.on('disconnect', (reason) => { if (reason === 'ping timeout') log(`session ${socket.conn.id}: ping timeout (${transportState(socket.conn)})`); });
    const user = String(socket.handshake.auth?.user ?? socket.id);
    const room = socket.handshake.auth?.room ? `room:${socket.handshake.auth.room}` : null;
    // a recovered socket (a reconnect, or a session another worker handed over) is in its rooms already
    if (!socket.recovered) await socket.join(room ? [`user:${user}`, room] : [`user:${user}`]);
    socket.emit('hello', { ...me, node: process.version, sid: socket.id, user, transport: socket.conn.transport.name, recovered: socket.recovered });

    // typing indicator: fire and forget, to the peer on whatever worker holds it
    socket.on('typing', (msg) => {
      socket.to(`user:${msg?.to}`).emit('typing', { from: user });
    });

    // direct message: deliver, bump the peer's unread counter, ack with this worker's identity.
    // A message with an id (the page's) is delivered once however often it is sent (the client
    // sends it again if its ack is lost in a reconnect), and kept in the peer's inbox, where the
    // peer's page finds it if it was reconnecting when it was delivered ('sync').
    socket.on('dm', async (msg, ack) => {
      const to = String(msg?.to);
      const reply = () => { if (typeof ack === 'function') ack({ ok: true, ...me }); };
      let entry = { from: user, text: msg?.text, ts: msg?.ts }, unread;
      if (msg?.id) {
        if (!(await store.set(`dm:${msg.id}`, '1', { NX: true, EX: 3600 }))) return reply(); // seen
        entry = { id: String(msg.id), seq: await store.incr('dm:seq'), ...entry };
        [, , unread] = await store.multi()
          .rPush(`inbox:${to}`, JSON.stringify(entry)).lTrim(`inbox:${to}`, -INBOX_MAX, -1)
          .incr(`unread:${to}`).exec();
      } else {
        unread = await store.incr(`unread:${to}`);
      }
      io.to(`user:${to}`).emit('dm', entry);
      io.to(`user:${to}`).emit('unread', { count: unread });
      reply();
    });

    // what reached this user's inbox after `since` (a page (re)connecting), and the unread count
    socket.on('sync', async (msg, ack) => {
      if (typeof ack !== 'function') return;
      const since = Number(msg?.since) || 0;
      const [inbox, unread] = await Promise.all([store.lRange(`inbox:${user}`, 0, -1), store.get(`unread:${user}`)]);
      ack({ messages: inbox.map((e) => JSON.parse(e)).filter((e) => e.seq > since), unread: Number(unread) || 0, ...me });
    });

    socket.on('read', async (ack) => {
      await store.del(`unread:${user}`);
      if (typeof ack === 'function') ack({ ok: true, ...me });
    });

    // activity stream: broadcast to the sender's room (everyone if no room), not back to the sender
    socket.on('activity', (msg, ack) => {
      const target = room ? socket.to(room) : socket.broadcast;
      target.emit('activity', { from: user, text: msg?.text, ts: msg?.ts });
      if (typeof ack === 'function') ack({ ok: true, ...me });
    });
  });

  if (STICKY) {
    require(STICKY_MODULE).setupWorker(io);
    console.log(`chat: pid ${me.pid} instance ${INSTANCE} served by the sticky primary`);
    process.send('ready');
  } else {
    httpServer.listen({ port: PORT, host: HOST, reusePort: REUSEPORT }, async () => {
      await drainAndClose.ready; // the other workers can find this one: a stopping one hands its sessions here
      console.log(`chat: pid ${me.pid} instance ${INSTANCE} listening on ${PORT} reusePort=${REUSEPORT}`);
      if (process.send) process.send('ready'); // PM2 wait_ready
    });
  }

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    // pm2 reload / stop: hand every long-polling session to the successor, close each WebSocket for
    // Socket.IO to recover on it, then stop listening (sio-steer-drain, packages/sio-steer-drain).
    // PM2's kill_timeout must be longer (ecosystem.config.cjs).
    if (ABRUPT_STOP || !drainAndClose) {
      httpServer.close();
      io.close(); // Engine.IO resets POSTs in flight and drops sessions whose poll is not pending
    } else {
      await drainAndClose({ drainMs: DRAIN_MS, controlSocket: CONTROL_SOCKET, log }).catch((e) => log(`stop: ${e.message}`));
    }
    await Promise.allSettled([pub.quit(), sub.quit(), store.quit()]);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e) => {
  console.error('chat: fatal', e);
  process.exit(1);
});
