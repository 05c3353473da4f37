// sio-steer's control socket (<lock dir>/<port>.sock): a stopping worker tells the controller which
// clients it has handed over, so that their next connection goes straight to the successor.
'use strict';
const net = require('node:net');

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

module.exports = { connectControl };
