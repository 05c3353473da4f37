// The parts of sio-steer-drain that need no server: session ids (a client writes them back, so
// they are fuzzed), stream offsets and the cut between two workers' deliveries, the peer folder.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { newToken, newSessionId, tokenOf, isToken } = require('../lib/session-id');
const { compareOffsets, offsetOfEncoded, DeliveryLog, reaches } = require('../lib/offsets');
const { Peers, privateFolder } = require('../lib/peers');
const { guardClient } = require('../lib/guard');
const { connectControl } = require('../lib/control');

test('a session id carries its worker token, and nothing else parses', () => {
  const token = newToken();
  assert.ok(isToken(token));
  const sid = newSessionId(token);
  assert.strictEqual(sid.length, 29);
  assert.strictEqual(tokenOf(sid), token);
  for (const bad of [undefined, null, 42, '', 'x'.repeat(29), `${sid}x`, sid.slice(1), sid.replace('.', '/'),
    `${'a'.repeat(20)}./../x`, `${'a'.repeat(20)}.${'b'.repeat(7)}/`, `${'a'.repeat(20)}.abc\0defg`, `${'é'.repeat(20)}.abcdefgh`]) {
    assert.strictEqual(tokenOf(bad), null, JSON.stringify(bad));
  }
});

test('fuzz: whatever a client sends as sid, a token is 8 base64url characters or nothing', () => {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./\\\0%é ';
  const dir = path.join(os.tmpdir(), 'peers');
  const peers = new Peers(dir, newToken(), 0);
  for (let i = 0; i < 200000; i++) {
    const len = i % 3 === 0 ? 29 : crypto.randomInt(0, 64);
    let s = '';
    for (let k = 0; k < len; k++) s += alphabet[crypto.randomInt(alphabet.length)];
    if (i % 5 === 0 && len === 29) s = `${s.slice(0, 20)}.${s.slice(21)}`;
    const t = tokenOf(s);
    if (t === null) continue;
    assert.match(t, /^[A-Za-z0-9_-]{8}$/);
    assert.strictEqual(path.dirname(peers.pathOf(t)), dir); // never a path outside the folder
  }
  assert.throws(() => peers.pathOf('../etc/x'), /not a worker token/);
});

test('offsets compare as numbers, not strings', () => {
  assert.ok(compareOffsets('9-0', '10-0') < 0);
  assert.ok(compareOffsets('10-2', '10-10') < 0);
  assert.strictEqual(compareOffsets('5-5', '5-5'), 0);
  assert.ok(compareOffsets(null, '0-0') < 0);
});

test('the offset of an encoded event: only where the adapter appends one', () => {
  assert.strictEqual(offsetOfEncoded('2["dm",{"a":1},"1700000000000-3"]'), '1700000000000-3');
  assert.strictEqual(offsetOfEncoded(['2/chat,["x","17-0"]']), '17-0');
  assert.strictEqual(offsetOfEncoded('51-["x",{"_placeholder":true,"num":0},"17-1"]'), '17-1');
  assert.strictEqual(offsetOfEncoded('212["x","17-0"]'), null); // an ack id: no offset is appended
  assert.strictEqual(offsetOfEncoded('3["x","17-0"]'), null); // an ack
  assert.strictEqual(offsetOfEncoded('2["x","hello"]'), null);
});

// A fake adapter with the in-memory adapter's hooks: _encode then apply per local delivery, the
// reader's onMessage(message, offset), publishAndReturnOffset for this worker's own broadcasts.
function fakeAdapter() {
  const adapter = {
    nsp: { server: { opts: { connectionStateRecovery: {} } } },
    _encode: () => [],
    apply: (opts, callback) => { if (!opts.nobody) callback({}); }, // opts.nobody: no socket here is in its rooms
    onMessage: () => {},
    publishAndReturnOffset: async (m) => m.offset,
  };
  const deliver = (offset, rooms, nobody = false) => {
    adapter._encode({ type: 2, data: ['ev', offset] }, {});
    adapter.apply({ rooms: new Set(rooms), except: new Set(), nobody }, () => {});
  };
  return { adapter, deliver };
}

test('the cut: the floor follows the reader and stays below broadcasts of this worker not yet delivered', async () => {
  const { adapter, deliver } = fakeAdapter();
  const log = new DeliveryLog(adapter, 16);
  adapter.onMessage({}, '100-0');
  deliver('100-0', ['r1']);
  assert.strictEqual(log.floor(), '100-0');
  // an own broadcast on its way to Redis: the floor may not pass what was known when it left
  let resolve;
  const publish = adapter.publishAndReturnOffset;
  const inFlight = publish.call(adapter, { type: 3, data: { packet: { type: 2, data: [] }, opts: {} }, offset: new Promise((r) => { resolve = r; }) });
  adapter.onMessage({}, '105-0');
  deliver('105-0', ['r2']);
  assert.strictEqual(log.floor(), '100-0', 'an own broadcast that left when 100-0 was the newest known: the floor waits for it');
  resolve('103-0'); // Redis numbered it below what the reader has passed since
  await inFlight;
  assert.strictEqual(log.floor(), '100-0', 'numbered, not delivered yet: the floor stays below it');
  deliver('103-0', ['r1']);
  assert.strictEqual(log.floor(), '105-0');
  // what went to a socket in r1 above a floor
  assert.deepStrictEqual(log.deliveredTo(new Set(['r1']), '100-0').offsets, ['103-0']);
  assert.deepStrictEqual(log.deliveredTo(new Set(['r2']), '100-0').offsets, ['105-0']);
  assert.ok(log.deliveredTo(new Set(['r1']), '100-0').complete);
});

test('a worker whose reader has read nothing yet has no floor, whatever it delivered of its own', async () => {
  const { adapter, deliver } = fakeAdapter();
  const log = new DeliveryLog(adapter, 16);
  assert.strictEqual(log.floor(), null);
  await adapter.publishAndReturnOffset({ type: 3, data: { packet: { type: 2, data: [] }, opts: {} }, offset: '200-0' });
  deliver('200-0', ['r1']);
  assert.strictEqual(log.floor(), null, 'the reader may still deliver entries below 200-0');
  adapter.onMessage({}, '190-0');
  assert.strictEqual(log.floor(), '190-0');
  // without a reader (one worker, in-memory adapter), its own deliveries are all there is
  const alone = fakeAdapter();
  delete alone.adapter.onMessage;
  const solo = new DeliveryLog(alone.adapter, 16);
  alone.deliver('7-0', ['r1']);
  assert.strictEqual(solo.floor(), '7-0');
});

test('the delivery log says when it no longer reaches back to a floor', () => {
  const { adapter, deliver } = fakeAdapter();
  const log = new DeliveryLog(adapter, 4);
  for (let i = 1; i <= 6; i++) deliver(`${i}-0`, ['r']);
  assert.deepStrictEqual(log.deliveredTo(new Set(['r']), '4-0'), { offsets: ['5-0', '6-0'], complete: true });
  assert.strictEqual(log.deliveredTo(new Set(['r']), '1-0').complete, false);
});

test('the delivery log keeps only what reached a socket here, and reaches back further for it', () => {
  const { adapter, deliver } = fakeAdapter();
  const log = new DeliveryLog(adapter, 4);
  deliver('1-0', ['r']);
  for (let i = 2; i <= 9; i++) deliver(`${i}-0`, ['elsewhere'], true); // no socket of this worker in that room
  deliver('10-0', ['r']);
  assert.deepStrictEqual(log.deliveredTo(new Set(['r']), '0-0'), { offsets: ['1-0', '10-0'], complete: true });
  assert.strictEqual(log.floor(), null, 'no read yet');
  const tap = log.tap(); // a tap still sees every broadcast (a socket being restored is in no room yet)
  deliver('11-0', ['elsewhere'], true);
  tap.close();
  assert.deepStrictEqual(tap.map((e) => e.offset), ['11-0']);
});

test('the guard drops copies a session got already until the reader is past them, a fresh reader too', () => {
  const written = [];
  const proto = { writeToEngine(encoded) { written.push(offsetOfEncoded(encoded)); } };
  const client = Object.create(proto);
  let floor = null; // a worker that just started: its reader has read nothing yet
  const logs = new Map([['/', { floor: () => floor }]]);
  let dropped = 0;
  guardClient(client, new Map([['/', { floor: '10-0', skip: new Set(['12-0', '14-0']), until: '14-0' }]]), logs, () => dropped++);
  const send = (o) => client.writeToEngine(`2["activity",{"text":"x"},"${o}"]`);
  for (const o of ['9-0', '12-0', '13-0']) send(o);
  assert.deepStrictEqual(written, ['13-0']);
  floor = '12-5'; // the reader is on its way, not past until yet
  for (const o of ['14-0', '15-0']) send(o);
  assert.deepStrictEqual(written, ['13-0', '15-0']);
  assert.strictEqual(dropped, 3);
  floor = '14-0'; // past until: the stream keeps deliveries apart by itself, the guard goes
  send('16-0');
  assert.strictEqual(Object.hasOwn(client, 'writeToEngine'), false);
  client.writeToEngine('2["activity",{"text":"x"},"12-0"]');
  assert.deepStrictEqual(written, ['13-0', '15-0', '16-0', '12-0']);
  // a namespace without a delivery log (no reader to wait for): the guard goes with the first packet
  const other = Object.create(proto);
  guardClient(other, new Map([['/', { floor: '10-0', skip: new Set(['12-0']), until: '14-0' }]]), new Map(), () => dropped++);
  other.writeToEngine('2["activity",{"text":"x"},"13-0"]');
  assert.strictEqual(Object.hasOwn(other, 'writeToEngine'), false);
  assert.strictEqual(dropped, 3);
});

test('the guard drops the reader copy of its last offset: the reader moves its cursor first, then delivers', () => {
  const written = [];
  const client = Object.create({ writeToEngine(encoded) { written.push(offsetOfEncoded(encoded)); } });
  let floor = '11-0';
  let dropped = 0;
  guardClient(client, new Map([['/', { floor: '10-0', skip: new Set(['12-0', '14-0']), until: '14-0' }]]), new Map([['/', { floor: () => floor }]]), () => dropped++);
  // as DeliveryLog.read() then the adapter's onMessage() do it: the cursor is at 14-0 as 14-0 is written
  floor = '14-0';
  client.writeToEngine('2["activity",{"text":"x"},"14-0"]');
  assert.deepStrictEqual(written, []);
  assert.strictEqual(dropped, 1);
  assert.strictEqual(Object.hasOwn(client, 'writeToEngine'), false, 'settled: the guard goes after that copy');
});

test('reaches: rooms and except as the adapter applies them', () => {
  assert.ok(reaches(new Set(['a']), [], []));
  assert.ok(reaches(new Set(['a']), ['a', 'b'], []));
  assert.ok(!reaches(new Set(['a']), ['b'], []));
  assert.ok(!reaches(new Set(['a', 'x']), [], ['x']));
});

test('the peer folder: created 0700, refused when a link, another user\'s or open to others', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sio-steer-drain-'));
  try {
    const ok = path.join(base, 'ok');
    privateFolder(ok);
    assert.strictEqual(fs.statSync(ok).mode & 0o777, 0o700);
    privateFolder(ok); // again: fine

    const open = path.join(base, 'open');
    fs.mkdirSync(open, { mode: 0o755 });
    fs.chmodSync(open, 0o755);
    assert.throws(() => privateFolder(open), /has mode 755: others can enter it/);

    const link = path.join(base, 'link');
    fs.symlinkSync(ok, link);
    assert.throws(() => privateFolder(link), /is not a folder/);

    if (process.getuid() === 0) {
      const other = path.join(base, 'other');
      fs.mkdirSync(other, { mode: 0o700 });
      fs.chownSync(other, 65534, 65534);
      assert.throws(() => privateFolder(other), /belongs to uid 65534/);
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a worker stopping for good hands its sessions to another instance, never to one that stops too', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sio-steer-drain-peers-'));
  try {
    const [a, b, c] = [newToken(), newToken(), newToken()];
    for (const [instance, token] of [[0, a], [1, b], [2, c]]) fs.symlinkSync(`${token}.sock`, path.join(dir, `instance-${instance}.sock`));
    const peersA = new Peers(dir, a, 0);
    assert.strictEqual(await peersA.successor(), null, 'instance 0 has no newer worker than a');
    assert.strictEqual(await peersA.sibling(), b);
    await new Peers(dir, b, 1).stopping();
    assert.strictEqual(await peersA.sibling(), c, 'b stops too: c takes them');
    await new Peers(dir, c, 2).stopping();
    assert.strictEqual(await peersA.sibling(), null, 'everyone stops: nobody takes them');
    const newer = newToken();
    fs.rmSync(path.join(dir, 'instance-0.sock'));
    fs.symlinkSync(`${newer}.sock`, path.join(dir, 'instance-0.sock'));
    assert.strictEqual(await peersA.successor(), newer, 'a replacement of instance 0 is a\'s successor');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a reply that came in time counts, even when the event loop stalled past the timeout', async () => {
  // A busy host: the controller answers at once, but this worker cannot run for longer than the
  // timeout. Node then runs the due timer before it reads the reply; the reply must still count.
  const net = require('node:net');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sio-steer-drain-control-'));
  const server = net.createServer((c) => c.on('data', (d) => c.write('ok\n'.repeat(d.toString().split('\n').length - 1))));
  try {
    const at = path.join(dir, 'c.sock');
    await new Promise((r) => server.listen(at, r));
    let gaveUp = false;
    const control = await connectControl(at, { timeoutMs: 200, onGiveUp: () => { gaveUp = true; } });
    const reply = control.request('release 192.0.2.7');
    setTimeout(() => { // the stall, once the request is on its way: no turn of the loop for twice the timeout
      const until = Date.now() + 400;
      while (Date.now() < until) { /* busy */ }
    }, 0);
    assert.strictEqual(await reply, 'ok');
    assert.strictEqual(gaveUp, false);
    assert.strictEqual(await control.request('release 192.0.2.8'), 'ok', 'and it keeps releasing');
    control.close();
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a controller that does not answer is given up on, once', async () => {
  const net = require('node:net');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sio-steer-drain-control-'));
  const server = net.createServer(() => {}); // reads nothing, answers nothing
  try {
    const at = path.join(dir, 'c.sock');
    await new Promise((r) => server.listen(at, r));
    let gaveUp = 0;
    const control = await connectControl(at, { timeoutMs: 100, onGiveUp: () => { gaveUp++; } });
    assert.match(await control.request('release 192.0.2.7'), /^error no answer within 100 ms/);
    assert.match(await control.request('release 192.0.2.8'), /^error /, 'later requests fail at once');
    assert.strictEqual(gaveUp, 1);
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
