// sio-steer-drain never waits forever for sio-steer's control socket (docs/pm2.md, step 2): a controller
// that accepts and never answers costs one timeout and one log line, then the drain carries on;
// a connection the controller closed (idle) is opened again. No PM2, no kernel: plain Unix sockets.
//   node tests/e2e/drain_control_test.js [path/to/sio-steer-drain]
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const drain = require(path.resolve(process.argv[2] ?? path.join(__dirname, '../../packages/sio-steer-drain')));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sio-steer-drain-'));
const deadline = setTimeout(() => {
  console.error('FAIL: a request waited more than 5 s');
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}, 5000);

function server(name, onLine) {
  const at = path.join(dir, name);
  const srv = net.createServer((c) => {
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d) => {
      buf += d;
      for (let eol; (eol = buf.indexOf('\n')) >= 0; buf = buf.slice(eol + 1)) onLine(c, buf.slice(0, eol));
    });
    c.on('error', () => {});
  });
  return new Promise((r) => srv.listen(at, () => r({ at, srv })));
}

async function main() {
  // A controller that accepts and never answers.
  const mute = await server('mute.sock', () => {});
  const logged = [];
  let gaveUp = 0;
  const control = await drain.connectControl(mute.at, { timeoutMs: 300, log: (l) => logged.push(l), onGiveUp: () => gaveUp++ });
  assert.ok(control, 'connected');
  let t = Date.now();
  const reply = await control.request('release 192.0.2.7');
  assert.match(reply, /^error no answer within 300 ms/);
  assert.ok(Date.now() - t < 1500, `gave up after ${Date.now() - t} ms`);
  t = Date.now();
  assert.match(await control.request('release 192.0.2.8'), /^error /);
  assert.ok(Date.now() - t < 50, 'once given up, a request answers at once');
  assert.equal(logged.length, 1, `one warning: ${logged.join(' | ')}`);
  assert.equal(gaveUp, 1);
  assert.ok(control.failed());
  mute.srv.close();

  // A controller that answers, then closes the connection (as after its idle timeout).
  const closing = await server('closing.sock', (c, line) => c.end(`ok ${line}\n`));
  const again = await drain.connectControl(closing.at, { timeoutMs: 300 });
  assert.equal(await again.request('release 192.0.2.9'), 'ok release 192.0.2.9');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await again.request('release 192.0.2.10'), 'ok release 192.0.2.10', 'a closed connection is opened again');
  assert.ok(!again.failed());
  again.close();
  closing.srv.close();

  // No controller at all.
  assert.equal(await drain.connectControl(path.join(dir, 'none.sock'), { timeoutMs: 300 }), null);
  clearTimeout(deadline);
  fs.rmSync(dir, { recursive: true, force: true });
  console.log('PASS');
}

main().catch((e) => { console.error('FAIL:', e.message); fs.rmSync(dir, { recursive: true, force: true }); process.exit(1); });
