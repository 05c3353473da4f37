// Passing a request on to the worker that holds its session, over that worker's private socket.
// The receiving worker serves it as if it had come to it directly (peer-server.js), with the
// client's address carried in a header that only the private socket trusts.
'use strict';
const http = require('node:http');
const net = require('node:net');

// Headers a forwarded request carries; on a request from the network they are removed, never trusted.
const HOPS = 'x-sio-steer-hops';
const CLIENT = 'x-sio-steer-client';
const SECURE = 'x-sio-steer-secure';
const LOCAL = 'x-sio-steer-local'; // the address the client connected to (sio-steer --key destination)
const OWN_HEADERS = new Set([HOPS, CLIENT, SECURE, LOCAL]);
const MAX_HOPS = 2; // the worker an id names, then the one it handed the session to
const UNREACHED = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'EACCES', 'ENOTDIR']);

// no cap on connections: every passed-on long-polling GET holds one for up to a ping interval
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64 });

// Hop-by-hop headers (RFC 9110 7.6.1) are not passed on; Node sets its own framing.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

function forwardedHeaders(req, hops) {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (!HOP_BY_HOP.has(k) && !OWN_HEADERS.has(k)) headers[k] = v;
  }
  headers[HOPS] = String(hops);
  headers[CLIENT] = req.sioSteerClient ?? req.socket.remoteAddress ?? '';
  headers[SECURE] = (req.sioSteerSecure ?? Boolean(req.socket.encrypted)) ? '1' : '0';
  headers[LOCAL] = req.sioSteerLocal ?? req.socket.localAddress ?? '';
  return headers;
}

// A request body, whole (Engine.IO's POSTs are bounded by maxHttpBufferSize), read before anything
// is sent on: an unreachable peer can be tried again, or leave the request to be answered here.
// null: too large, or the client went away.
function readBody(req, limit) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
    });
    req.on('end', () => resolve(size <= limit ? Buffer.concat(chunks) : null));
    req.on('error', () => resolve(null));
  });
}

/**
 * Sends `req` (its body read already: readBody) to the worker at `socketPath` and its answer back
 * on `res`. Resolves 'sent', or 'unreachable' (nothing written to res: the caller may try again, or
 * answer), or 'failed' (the peer broke off: res was ended). close: answer with "Connection: close"
 * (a stopping worker hands its connections back).
 */
async function forwardRequest(req, res, socketPath, { hops, close = false, body = null }) {
  return new Promise((resolve) => {
    let answered = false;
    const up = http.request({ socketPath, agent, method: req.method, path: req.url, headers: forwardedHeaders(req, hops) }, (upRes) => {
      answered = true;
      const headers = {};
      for (const [k, v] of Object.entries(upRes.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
      if (close) res.shouldKeepAlive = false;
      res.writeHead(upRes.statusCode, headers);
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
      res.on('close', () => { if (!upRes.complete) up.destroy(); resolve('sent'); });
    });
    up.on('error', (e) => {
      if (answered) return;
      // not connected, or a kept-alive connection the peer had closed before this request: the
      // peer never saw it. Anything else: it may have, and the client must not see it twice.
      if (UNREACHED.has(e.code) || (up.reusedSocket && e.code === 'ECONNRESET')) return resolve('unreachable');
      if (process.env.SIO_STEER_DRAIN_DEBUG) console.error(Date.now(), 'forward failed', e.code, e.message, up.reusedSocket, req.method);
      res.destroy();
      resolve('failed');
    });
    // the client gave up (a long-polling GET closed by its browser): so does the forwarded request
    req.on('close', () => { if (!answered) up.destroy(); });
    up.end(body ?? undefined);
  });
}

/**
 * Passes a WebSocket upgrade on: the request head, then the bytes both ways, until either side
 * closes. Resolves 'sent' once the peer's socket is connected, or 'unreachable'.
 */
function forwardUpgrade(req, socket, head, socketPath, { hops }) {
  return new Promise((resolve) => {
    const up = net.connect(socketPath);
    up.once('error', () => resolve('unreachable'));
    up.once('connect', () => {
      up.removeAllListeners('error');
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (!OWN_HEADERS.has(req.rawHeaders[i].toLowerCase())) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      const own = forwardedHeaders(req, hops);
      for (const h of OWN_HEADERS) lines.push(`${h}: ${own[h]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head?.length) up.write(head);
      socket.pipe(up);
      up.pipe(socket);
      const end = () => { socket.destroy(); up.destroy(); };
      socket.on('error', end);
      up.on('error', end);
      socket.on('close', end);
      up.on('close', end);
      resolve('sent');
    });
  });
}

/** On the private socket: hops, client address and TLS as the forwarding worker saw them. */
function forwardedFrom(req) {
  const hops = Number(req.headers[HOPS]);
  return {
    hops: Number.isInteger(hops) && hops > 0 && hops <= MAX_HOPS ? hops : MAX_HOPS,
    client: typeof req.headers[CLIENT] === 'string' && net.isIP(req.headers[CLIENT]) ? req.headers[CLIENT] : undefined,
    secure: req.headers[SECURE] === '1',
    local: typeof req.headers[LOCAL] === 'string' && net.isIP(req.headers[LOCAL]) ? req.headers[LOCAL] : undefined,
  };
}

/** A request from the network may not pose as a forwarded one. */
function stripOwnHeaders(req) {
  for (const h of OWN_HEADERS) delete req.headers[h];
}

module.exports = { readBody, forwardRequest, forwardUpgrade, forwardedFrom, stripOwnHeaders, MAX_HOPS };
