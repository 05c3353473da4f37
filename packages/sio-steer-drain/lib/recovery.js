// Socket.IO's connection state recovery, made exact for a session that leaves a worker.
//
// A reconnecting client names the offset of the last event it got, and the adapter replays what is
// stored after it. But events reach a client out of stream order (a worker delivers its own
// broadcasts as soon as Redis numbers them, the others' when its reader gets to them), so "after
// the last one" both replays events the client had and skips ones it had not: measured, about one
// of each per client across a pm2 reload. And the Redis Streams adapter's restoreSession() reads to
// the end of the stream until a read comes back empty, which under steady traffic takes up to 100
// reads, and misses what the worker's reader delivered between the last read and the join.
//
// Here:
//  - a worker that closes a session (a stop) stores its exact cut with it (floor and delivered,
//    offsets.js), and the recovery starts from that cut instead of the client's last offset;
//  - the range is read once, up to the stream's end when the restore begins; what this worker
//    delivers meanwhile, until the socket is connected (before that an adapter skips it), is
//    tapped and sent after the range; late copies its reader may still deliver are dropped (guard.js).
'use strict';
const { compareOffsets, isOffset, reaches } = require('./offsets');
const { guardClient } = require('./guard');

const SESSION_PREFIX = 'sio:session:';

/**
 * Hooks one namespace's adapter (persistSession, restoreSession) and listens for its connections
 * (call before the app's handlers). A socket a stop closes carries its cut (socket.sioSteerCut,
 * set by drain.js as it closes it).
 */
function installRecovery(nsp, { stream, logs, sessionKeyPrefix = SESSION_PREFIX, stats, log = () => {} }) {
  const adapter = nsp.adapter;
  const persist = adapter.persistSession;
  const restoring = new Map(); // pid -> what its restore read and tapped, until the socket connects
  adapter.persistSession = function (session) {
    const cut = nsp.sockets.get(session.sid)?.sioSteerCut;
    if (cut?.floor) session.sioSteerCut = cut;
    return persist.call(this, session);
  };
  adapter.restoreSession = async function (pid, offset) {
    try {
      return await restore(pid, offset);
    } catch (e) {
      stats.recoveryFailed++;
      log(`recovery of session ${pid} from offset ${offset} failed: ${e.message}`);
      throw e;
    }
  };
  const restore = async (pid, offset) => {
    if (typeof pid !== 'string' || !isOffset(offset)) return null;
    const dlog = logs.get(nsp.name);
    // what this worker delivers from now until the socket is connected: it would not reach it
    // (an adapter delivers to connected sockets only), and it may lie beyond the range read below
    const tap = dlog?.tap();
    const session = await takeSession(stream, sessionKeyPrefix + pid).catch((e) => { tap?.close(); throw e; });
    const fail = (why) => {
      tap?.close();
      stats.recoveryFailed++;
      log(`recovery of session ${pid}: ${why}`);
      return null;
    };
    if (!session) return fail('no stored session (expired, or taken already)');
    const fromCut = Boolean(session.sioSteerCut && isOffset(session.sioSteerCut.floor));
    const cut = fromCut ? session.sioSteerCut : { floor: offset, delivered: [] };
    delete session.sioSteerCut;
    const end = await stream.last().catch(() => null);
    if (!end || compareOffsets(end, cut.floor) < 0) return fail(`the stream ends at ${end}, before offset ${cut.floor}`);
    const r = { tap, end, rooms: new Set(session.rooms), delivered: new Set(cut.delivered), written: new Set(), floor: cut.floor };
    session.missedPackets = [];
    for (const { offset: o, broadcast: b } of await stream.broadcasts(cut.floor, end)) {
      if (!b || b.nsp !== nsp.name || b.packet.type !== 2 || b.packet.id !== undefined || b.opts.flags?.volatile) continue;
      if (r.delivered.has(o) || !reaches(r.rooms, b.opts.rooms ?? [], b.opts.except ?? [])) continue;
      session.missedPackets.push([...b.packet.data, o]);
      r.written.add(o);
    }
    stats.recovered++;
    log(`recovered session ${pid} from ${fromCut ? 'the cut of the worker that closed it' : 'the offset it named'} ${cut.floor}: ${session.missedPackets.length} missed`);
    restoring.set(pid, r);
    setTimeout(() => { if (restoring.get(pid) === r) { restoring.delete(pid); tap?.close(); } }, 60000).unref();
    return session;
  };
  // Registered before the app's handlers: the socket is connected, and gets what was delivered
  // past the range while it was not.
  nsp.on('connection', (socket) => {
    const r = socket.recovered ? restoring.get(socket.pid) : undefined;
    if (!r) return;
    restoring.delete(socket.pid);
    r.tap?.close();
    const late = (r.tap ?? []).filter((e) => compareOffsets(e.offset, r.end) > 0 && !r.written.has(e.offset) && !r.delivered.has(e.offset) &&
      reaches(r.rooms, e.rooms, e.except)).sort((a, b) => compareOffsets(a.offset, b.offset));
    for (const e of late) {
      socket.packet({ type: 2, data: e.data });
      r.written.add(e.offset);
    }
    // this worker's reader may still be behind what was sent: drop its late copies
    const until = [r.end, ...r.written].sort(compareOffsets).pop();
    guardClient(socket.client, new Map([[nsp.name, { floor: r.floor, skip: new Set([...r.delivered, ...r.written]), until }]]), logs, () => { stats.dropped++; });
  });
}

// GETDEL of a stored session, decoded as the Redis Streams adapter stored it (msgpack, base64).
async function takeSession(stream, key) {
  const r = stream.redis;
  const raw = typeof r.getDel === 'function' ? await r.getDel(key) : await r.getdel(key);
  const decode = raw && stream.msgpack();
  return decode ? decode(Buffer.from(raw, 'base64')) : null;
}

module.exports = { installRecovery };
