// The worker's private HTTP server (<peer dir>/<token>.sock): requests other workers pass on, served
// as if the client had sent them here, and the handover steps. Only this user's processes can
// reach it (peers.js), so it trusts the client address a forwarding worker names.
'use strict';
const http = require('node:http');
const { forwardedFrom } = require('./forward');

const CONTROL = '/.sio-steer/';
const BODY_MAX = 8 << 20; // a session's state: its sockets' data and the packets queued for it

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > BODY_MAX) req.destroy(new Error('too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// A request that came over the private socket: as the forwarding worker saw it (router.js reads these).
function markForwarded(req) {
  const from = forwardedFrom(req);
  req.sioSteerPeer = true;
  req.sioSteerHops = from.hops;
  req.sioSteerClient = from.client;
  req.sioSteerSecure = from.secure;
  req.sioSteerLocal = from.local;
  return from;
}

/** An http.Server for the private socket; steps: { prepare(body), commit(body), abort(sid) } of handover.js. */
function createPeerServer(httpServer, steps) {
  const server = http.createServer((req, res) => {
    if (req.url.startsWith(CONTROL)) return control(req, res, steps);
    const from = markForwarded(req);
    // what Engine.IO and Socket.IO read of the client's connection, for this request only
    Object.defineProperty(req, 'connection', { value: { remoteAddress: from.client, encrypted: from.secure } });
    httpServer.emit('request', req, res);
  });
  server.on('upgrade', (req, socket, head) => {
    const from = markForwarded(req);
    // this connection carries one WebSocket: its address is the client's
    Object.defineProperty(socket, 'remoteAddress', { value: from.client });
    httpServer.emit('upgrade', req, socket, head);
  });
  server.keepAliveTimeout = 60_000; // forwarding workers keep their connections to it
  return server;
}

async function control(req, res, steps) {
  const step = req.url.slice(CONTROL.length);
  if (req.method !== 'POST' || !['prepare', 'commit', 'abort'].includes(step)) return reply(res, 404, { error: 'no such step' });
  try {
    const body = await readJson(req);
    if (step === 'abort') steps.abort(JSON.parse(body).sid);
    else await steps[step](body);
    reply(res, 200, { ok: true });
  } catch (e) {
    reply(res, 409, { error: e.message });
  }
}

/** Sends a handover step to the worker at `socketPath`: resolves, or rejects with its reason. */
function sendStep(socketPath, step, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: 'POST', path: CONTROL + step, headers: { 'content-type': 'application/json' }, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        if (res.statusCode === 200) return resolve();
        let why = text;
        try { why = JSON.parse(text).error; } catch { /* as sent */ }
        reject(new Error(why));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

module.exports = { createPeerServer, sendStep };
