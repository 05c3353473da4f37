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
//  - the range is read once up to a fixed end, then up to where this worker's reader is, and what
//    the reader may still deliver of it is dropped (guard.js).
'use strict';
const { compareOffsets, isOffset, maxOffset, reaches } = require('./offsets');
const { guardClient } = require('./guard');

const SESSION_PREFIX = 'sio:session:';

/**
 * Hooks one namespace's adapter (persistSession, restoreSession) and its _createSocket. A socket a
 * stop closes carries its cut (socket.sioSteerCut, set by drain.js as it closes it).
 */
function installRecovery(nsp, { stream, logs, sessionKeyPrefix = SESSION_PREFIX, stats, log = () => {} }) {
  const adapter = nsp.adapter;
  const persist = adapter.persistSession;
  const restoring = new Map(); // pid -> { floor, skip, until } for the guard, between restore and the socket
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
    const session = await takeSession(stream, sessionKeyPrefix + pid);
    if (!session) {
      stats.recoveryFailed++;
      log(`recovery of session ${pid}: no stored session (expired, or taken already)`);
      return null;
    }
    const fromCut = Boolean(session.sioSteerCut && isOffset(session.sioSteerCut.floor));
    const cut = fromCut ? session.sioSteerCut : { floor: offset, delivered: [] };
    delete session.sioSteerCut;
    const delivered = new Set(cut.delivered);
    const rooms = new Set(session.rooms);
    const dlog = logs.get(nsp.name);
    session.missedPackets = [];
    const written = [];
    // up to the stream's end, then up to where this worker's reader and own broadcasts are: all of
    // it before the socket joins its rooms (in the same turn of the event loop as this returns)
    let from = cut.floor;
    let end = await stream.last();
    if (!end || compareOffsets(end, cut.floor) < 0) { // the stream was reset: nothing to recover from
      stats.recoveryFailed++;
      log(`recovery of session ${pid}: the stream ends at ${end}, before offset ${cut.floor}`);
      return null;
    }
    for (let i = 0; i < 8 && compareOffsets(from, end) < 0; i++) {
      for (const { offset: o, message } of await stream.range(from, end)) {
        const b = stream.broadcastOf(message);
        if (!b || b.nsp !== nsp.name || b.packet.type !== 2 || b.packet.id !== undefined || b.opts.flags?.volatile) continue;
        if (delivered.has(o) || !reaches(rooms, b.opts.rooms ?? [], b.opts.except ?? [])) continue;
        session.missedPackets.push([...b.packet.data, o]);
        written.push(o);
      }
      from = end;
      end = maxOffset(end, dlog?.newest ?? null);
    }
    stats.recovered++;
    log(`recovered session ${pid} from ${fromCut ? 'the cut of the worker that closed it' : 'the offset it named'} ${cut.floor}: ${session.missedPackets.length} missed`);
    restoring.set(pid, { floor: cut.floor, skip: new Set([...delivered, ...written]), until: from });
    return session;
  };
  const create = nsp._createSocket;
  nsp._createSocket = async function (client, auth) {
    const socket = await create.call(this, client, auth);
    const guard = socket.recovered ? restoring.get(socket.pid) : undefined;
    restoring.delete(socket.pid);
    if (guard) guardClient(client, new Map([[nsp.name, guard]]), logs, () => { stats.dropped++; });
    return socket;
  };
}

// GETDEL of a stored session, decoded as the Redis Streams adapter stored it (msgpack, base64).
async function takeSession(stream, key) {
  const r = stream.redis;
  const raw = typeof r.getDel === 'function' ? await r.getDel(key) : await r.getdel(key);
  const decode = raw && stream.msgpack();
  return decode ? decode(Buffer.from(raw, 'base64')) : null;
}

module.exports = { installRecovery };
