// In front of Engine.IO on the app's HTTP server: every Engine.IO request reaches the worker that
// holds its session, whichever worker the kernel gave its connection to.
//
// - a session held here: Engine.IO serves it, as without this module (the steered path);
// - a session being handed over: its requests wait until the successor has it, then go there;
// - a session handed over: passed on to the worker that took it;
// - a session id naming another worker: passed on to that worker's private socket (a client whose
//   address changed, a request that crossed a handover), at most twice in a row;
// - a handshake while this worker stops: passed on to its successor, where the session is born.
// Anything else (an id of nobody's, a worker gone) is Engine.IO's to refuse, as before.
'use strict';
const { readBody, forwardRequest, forwardUpgrade, stripOwnHeaders, MAX_HOPS } = require('./forward');
const { tokenOf } = require('./session-id');

const HOLD_MAX = 16; // requests of one session held at once (a client sends one GET and one POST at a time)

class Router {
  constructor({ io, httpServer, passOn = true }) {
    this.passOn = passOn; // pass requests for other workers' sessions on (else: Engine.IO's 400, as without this module)
    this.engine = io.engine;
    this.path = `${(io._path || '/socket.io').replace(/\/$/, '')}/`;
    this.peers = null; // set once the private socket listens
    this.opening = null; // the promise of it
    this.held = new Map(); // sid -> dispatches waiting for a handover to end
    this.handedTo = new Map(); // sid -> token of the worker that took it
    this.successor = null; // token: handshakes go there (a stopping worker)
    this.stopping = false;
    this.inFlight = 0; // forwarded requests not finished
    this.posts = new Map(); // sid -> POSTs handed to Engine.IO here and not answered yet
    this.stats = { forwarded: 0, handshakes: 0, unreachable: 0 };
    this.install(httpServer);
  }

  // In front of Engine.IO's own 'request' and 'upgrade' listeners, which it installed when attached.
  install(httpServer) {
    for (const event of ['request', 'upgrade']) {
      const listeners = httpServer.listeners(event).slice(0);
      httpServer.removeAllListeners(event);
      const next = (args) => { for (const l of listeners) l.apply(httpServer, args); };
      httpServer.on(event, (...args) => this.dispatch(event, args, next));
    }
  }

  dispatch(event, args, next) {
    const [req, resOrSocket] = args;
    if (!req.sioSteerPeer) stripOwnHeaders(req); // only the private socket may say it forwards
    if (this.stopping && event === 'request') resOrSocket.shouldKeepAlive = false; // hand the connection back
    if (!req.url.startsWith(this.path)) return next(args);
    if (!this.peers) { // listening, its private socket not open yet (a few ms): wait for it
      if (this.opening) return void this.opening.then(() => this.dispatch(event, args, next), () => next(args));
      return next(args);
    }
    if (!req._query) req._query = Object.fromEntries(new URL(req.url, 'https://socket.io').searchParams);
    const sid = req._query.sid;
    const hops = req.sioSteerHops ?? 0;
    if (typeof sid === 'string') {
      const queue = this.held.get(sid);
      if (queue) {
        if (queue.length >= HOLD_MAX) return next(args);
        return void queue.push(() => this.dispatch(event, args, next));
      }
      const to = this.handedTo.get(sid);
      if (to && hops < MAX_HOPS) return this.forward(event, args, to, next);
      if (Object.prototype.hasOwnProperty.call(this.engine.clients, sid)) return this.serve(event, args, sid, next);
      if (hops > 0) return next(args);
      const token = tokenOf(sid);
      if (token && token !== this.peers.token && this.passOn) return this.forward(event, args, token, next);
      return next(args);
    }
    if (this.successor && hops === 0) {
      this.stats.handshakes++;
      return this.forward(event, args, this.successor, next);
    }
    return next(args);
  }

  // Served here. A POST is counted until answered: a session is handed over only between POSTs.
  serve(event, args, sid, next) {
    const [req, res] = args;
    if (event === 'request' && req.method === 'POST') {
      this.posts.set(sid, (this.posts.get(sid) ?? 0) + 1);
      res.once('close', () => {
        const n = this.posts.get(sid) - 1;
        if (n > 0) this.posts.set(sid, n);
        else this.posts.delete(sid);
      });
    }
    return next(args);
  }

  posting(sid) {
    return this.posts.has(sid);
  }

  async forward(event, args, token, next) {
    const [req, resOrSocket, head] = args;
    const hops = (req.sioSteerHops ?? 0) + 1;
    const socketPath = this.peers.pathOf(token);
    this.inFlight++;
    try {
      const bodyless = event === 'upgrade' || req.method === 'GET' || req.method === 'HEAD';
      const body = bodyless ? null : await readBody(req, this.engine.opts.maxHttpBufferSize + 4096);
      if (!bodyless && body === null) return void next(args); // too large, or gone: Engine.IO answers
      const once = () => (event === 'upgrade'
        ? forwardUpgrade(req, resOrSocket, head, socketPath, { hops })
        : forwardRequest(req, resOrSocket, socketPath, { hops, close: this.stopping, body }));
      // a worker that retires swaps its socket for a link to its successor: across that moment
      // (a rename) its path may lead nowhere; a few tries, then the session is nowhere
      let result = await once();
      for (const ms of [5, 50, 200]) {
        if (result !== 'unreachable') break;
        await new Promise((r) => setTimeout(r, ms));
        result = await once();
      }
      if (result === 'unreachable') {
        this.stats.unreachable++;
        next(args); // the session is nowhere to be found: Engine.IO answers as it always did
      } else this.stats.forwarded++;
    } finally {
      this.inFlight--;
    }
  }

  /** Requests of `sid` wait from now on (a handover begins). */
  hold(sid) {
    if (!this.held.has(sid)) this.held.set(sid, []);
  }

  /** The handover of `sid` ended: to `token` (its requests go there), or not (they are served here). */
  release(sid, token) {
    if (token) this.handedTo.set(sid, token);
    const queue = this.held.get(sid) ?? [];
    this.held.delete(sid);
    for (const dispatch of queue) dispatch();
  }
}

module.exports = { Router };
