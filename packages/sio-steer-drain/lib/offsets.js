// Stream offsets ("<ms>-<seq>", as the Redis Streams adapter numbers every broadcast it stores for
// Socket.IO's connection state recovery), and what this worker delivered under them.
//
// A session handed to another worker must get each stored broadcast exactly once: the ones this
// worker delivered before the handover from here, every later one from the successor. Broadcasts
// reach a worker out of stream order (its own are delivered as soon as Redis gives them an offset,
// the others when its reader gets to them), so "everything after the last offset delivered" is not
// a cut. The cut is a floor and a set: every stored broadcast above `floor` that this worker did not
// deliver (not in `delivered`) is the successor's to deliver. The floor is the stream position this
// worker's reader has passed, lowered below any broadcast of its own still on its way to Redis.
'use strict';

const OFFSET = /^(\d{1,16})-(\d{1,16})$/;

function parseOffset(o) {
  const m = typeof o === 'string' && o.length <= 33 ? OFFSET.exec(o) : null;
  return m ? [Number(m[1]), Number(m[2])] : null;
}

const isOffset = (o) => parseOffset(o) !== null;

/** <0, 0, >0 as offset a is before, equal to, after b; null sorts first (no position yet). */
function compareOffsets(a, b) {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  const x = parseOffset(a), y = parseOffset(b);
  return x[0] - y[0] || x[1] - y[1];
}

const maxOffset = (a, b) => (compareOffsets(a, b) >= 0 ? a : b);

// Whether a broadcast with these rooms/except reaches a socket in `socketRooms` (as the adapter's
// apply() and the Redis Streams adapter's restoreSession decide it).
function reaches(socketRooms, rooms, except) {
  const included = rooms.length === 0 || rooms.some((r) => socketRooms.has(r));
  return included && !except.some((r) => socketRooms.has(r));
}

/**
 * The offset at the end of an encoded Socket.IO EVENT packet without an ack id (where the cluster
 * adapter appends it), or null. Encoded: type ('2', or '5' and '<n>-' for binary), then '/nsp,'
 * unless the main namespace, then the ack id in digits if any, then the JSON array.
 */
function offsetOfEncoded(encoded) {
  const s = Array.isArray(encoded) ? encoded[0] : encoded;
  if (typeof s !== 'string' || s.length < 4) return null;
  let i = 1;
  if (s[0] === '5') {
    while (i < s.length && s[i] >= '0' && s[i] <= '9') i++;
    if (s[i++] !== '-') return null;
  } else if (s[0] !== '2') return null;
  if (s[i] === '/') {
    i = s.indexOf(',', i) + 1;
    if (i === 0) return null;
  }
  if (s[i] !== '[') return null; // an ack id: no offset is appended to those
  const m = /,"(\d{1,16}-\d{1,16})"\]$/.exec(s.slice(-36));
  return m ? m[1] : null;
}

/**
 * What one namespace's adapter delivered under stream offsets, and where its reader is. Hooks the
 * adapter instance (ClusterAdapter and the in-memory Adapter of socket.io-adapter 2.5): every local
 * delivery of a broadcast goes through _encode() then apply(); the reader hands each stream entry
 * to onMessage(message, offset); this worker's own broadcasts go through publishAndReturnOffset().
 */
class DeliveryLog {
  constructor(adapter, size = 32768) {
    this.size = size;
    this.entries = []; // ring of { offset, rooms, except }, oldest first once wrapped
    this.next = 0;
    this.wrapped = false;
    this.cursor = null; // the last stream entry the reader handed over
    this.newest = null; // the highest offset seen either way
    this.pending = new Set(); // own broadcasts not delivered yet: { since }
    this.taps = new Set(); // open taps: each collects the broadcasts delivered while it is open
    this.reading = typeof adapter.onMessage === 'function'; // a reader delivers other workers' broadcasts
    this.install(adapter);
  }

  install(adapter) {
    const log = this;
    const encode = adapter._encode, apply = adapter.apply, onMessage = adapter.onMessage;
    const publish = adapter.publishAndReturnOffset;
    let delivering = null;
    adapter._encode = function (packet, packetOpts) {
      const last = packet.data?.[packet.data.length - 1];
      delivering = packet.type === 2 && packet.id === undefined && isOffset(last) ? packet : null;
      return encode.call(this, packet, packetOpts);
    };
    adapter.apply = function (opts, callback) {
      if (delivering === null) return apply.call(this, opts, callback);
      const { data } = delivering;
      delivering = null;
      let reached = false;
      const result = apply.call(this, opts, (socket) => { reached = true; callback(socket); });
      log.delivered(data[data.length - 1], opts, data, reached);
      return result;
    };
    if (typeof onMessage === 'function') {
      adapter.onMessage = function (message, offset) {
        if (isOffset(offset)) log.read(offset);
        return onMessage.call(this, message, offset);
      };
    }
    if (typeof publish === 'function') {
      const recovery = Boolean(adapter.nsp?.server?.opts?.connectionStateRecovery);
      adapter.publishAndReturnOffset = async function (message) {
        // only an event without ack id, not volatile, gets its offset appended and delivered with it
        const p = message?.data?.packet;
        if (!(recovery && message.type === 3 && p?.type === 2 && p.id === undefined && !message.data.opts?.flags?.volatile)) {
          return publish.call(this, message);
        }
        const mine = { since: log.newest };
        log.pending.add(mine);
        try {
          const offset = await publish.call(this, message);
          if (isOffset(offset)) {
            log.newest = maxOffset(log.newest, offset);
            mine.offset = offset; // delivered() drops it, in this same turn of the event loop
          } else log.pending.delete(mine);
          return offset;
        } catch (e) {
          log.pending.delete(mine);
          throw e;
        }
      };
    }
  }

  read(offset) {
    this.cursor = maxOffset(this.cursor, offset);
    this.newest = maxOffset(this.newest, offset);
  }

  // reached: whether a socket here got it. The ring keeps only those (no cut can need another),
  // so that it reaches back further: a cut whose floor it no longer reaches is incomplete, and the
  // next worker then sends again what this one delivered.
  delivered(offset, opts, data, reached = true) {
    const entry = { offset, rooms: [...(opts.rooms ?? [])], except: [...(opts.except ?? [])] };
    for (const tap of this.taps) tap.push({ ...entry, data });
    if (reached) {
      this.entries[this.next] = entry;
      this.next = (this.next + 1) % this.size;
      if (this.next === 0) this.wrapped = true;
    }
    this.newest = maxOffset(this.newest, offset);
    for (const p of this.pending) if (p.offset === offset) this.pending.delete(p);
  }

  /** Collects every broadcast delivered from now on ({ offset, rooms, except, data }) until tap.close(). */
  tap() {
    const entries = [];
    this.taps.add(entries);
    entries.close = () => this.taps.delete(entries);
    return entries;
  }

  /**
   * The stream position below which every broadcast this worker will ever deliver lies; null: none
   * yet. With a reader, where the reader is: an own broadcast delivered before the reader's first
   * read says nothing of the entries the reader has still to deliver.
   */
  floor() {
    let f = this.reading ? this.cursor : this.newest;
    for (const p of this.pending) if (compareOffsets(p.since, f) < 0) f = p.since;
    return f;
  }

  /** Offsets above `floor` delivered to a socket in `socketRooms`; complete: whether the log reaches back to floor. */
  deliveredTo(socketRooms, floor) {
    const offsets = [];
    const all = this.wrapped ? [...this.entries.slice(this.next), ...this.entries.slice(0, this.next)] : this.entries;
    for (const e of all) {
      if (compareOffsets(e.offset, floor) > 0 && reaches(socketRooms, e.rooms, e.except)) offsets.push(e.offset);
    }
    const complete = !this.wrapped || compareOffsets(all[0].offset, floor) <= 0;
    return { offsets, complete };
  }
}

module.exports = { parseOffset, isOffset, compareOffsets, maxOffset, reaches, offsetOfEncoded, DeliveryLog };
