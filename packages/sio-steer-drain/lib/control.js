// sio-steer's control socket (<lock dir>/<port>.sock): a stopping worker tells the controller which
// clients it has handed over, so that their next connection goes straight to the successor.
'use strict';
const net = require('node:net');

// A timer for "no answer within ms" that a stalled event loop cannot fool: after a stall, Node runs
// due timers before it reads the sockets, so a reply that came in time would be read only after its
// timer had fired. The verdict waits for the reads of that turn (setImmediate runs after them).
function answerTimer(ms, expired) {
  let immediate = null;
  const timer = setTimeout(() => { immediate = setImmediate(expired); }, ms);
  return () => { clearTimeout(timer); if (immediate) clearImmediate(immediate); };
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
    log(`sio-steer control socket ${path}: ${why}; not releasing clients any more: they reach the successor through this worker until it stops listening`);
    for (const reply of waiting.splice(0)) reply(`error ${why}`);
    sock?.destroy();
    onGiveUp();
  };
  const open = () => new Promise((resolve) => {
    const s = net.createConnection({ path });
    let buf = '';
    const stop = answerTimer(timeoutMs, () => { s.destroy(); resolve(null); });
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      for (let eol; (eol = buf.indexOf('\n')) >= 0; buf = buf.slice(eol + 1)) waiting.shift()?.(buf.slice(0, eol));
    });
    s.on('error', () => { stop(); resolve(null); });
    s.on('close', () => {
      if (sock === s) sock = null;
      if (!failed) for (const reply of waiting.splice(0)) reply('error the control socket closed');
    });
    s.on('connect', () => { stop(); resolve(s); });
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
        const stop = answerTimer(timeoutMs, () => giveUp(`no answer within ${timeoutMs} ms`));
        waiting.push((r) => { stop(); reply(r); });
        s.write(`${line}\n`);
      });
    },
    failed: () => failed !== null,
    close: () => sock?.end(),
  };
}

module.exports = { connectControl };
