// The Redis stream the Redis Streams adapter stores every broadcast in (for Socket.IO's connection
// state recovery), read over a bounded range: the broadcasts a handed-over session has not had.
//
// Why not the adapter's restoreSession(): it reads from an offset to the end of the stream again
// and again until one read comes back empty, which under steady traffic takes up to 100 round trips
// (its own FIXME); a handover of hundreds of sessions at once then takes seconds. Here the end is
// fixed first (the stream's last entry), and the range is read once, in pages.
'use strict';
const { createRequire } = require('node:module');
const { compareOffsets, isOffset } = require('./offsets');

const PAGE = 500;

// Redis Streams adapter entries hold their data as JSON, or as base64 msgpack when it has binary
// parts: decoded with the msgpack the adapter itself loaded.
function msgpackDecoder() {
  for (const file of Object.keys(require.cache)) {
    if (!/[\\/]@socket\.io[\\/]redis-streams-adapter[\\/]dist[\\/]adapter\.js$/.test(file)) continue;
    try {
      return createRequire(file)('@msgpack/msgpack').decode;
    } catch { /* not found next to it */ }
  }
  return null;
}

const CACHE_MAX = 50000; // entries kept for the handovers of one stop, which read overlapping ranges
const CACHE_IDLE_MS = 10000;

class Stream {
  /** redis: a node-redis (v4, v5) or ioredis client; streamName: the adapter's (default "socket.io"). */
  constructor(redis, { streamName = 'socket.io' } = {}) {
    this.redis = redis;
    this.name = streamName;
    this.decodeMsgpack = undefined; // looked up once, when first needed
    // a stop hands hundreds of sessions over at once, each reading the stream from about the same
    // place: entries read are kept (decoded) for the next, and each reads only what is new
    this.cache = null; // { from, to, entries: [{ offset, broadcast }] } covering (from, to]
    this.cacheTimer = null;
  }

  /** Broadcasts stored in (after, end], as [{ offset, broadcast }] (broadcast null: not one), from the cache where it has them. */
  async broadcasts(after, end) {
    if (!isOffset(after) || !isOffset(end)) return [];
    const fill = (this.filling ?? Promise.resolve()).then(() => this.fill(after, end)); // one read at a time
    this.filling = fill.catch(() => {});
    await fill;
    clearTimeout(this.cacheTimer);
    this.cacheTimer = setTimeout(() => { this.cache = null; }, CACHE_IDLE_MS).unref();
    return this.cache.entries.filter((e) => compareOffsets(e.offset, after) > 0 && compareOffsets(e.offset, end) <= 0);
  }

  async fill(after, end) {
    const decode = (list) => list.map(({ offset, message }) => ({ offset, broadcast: this.broadcastOf(message) }));
    const c = this.cache;
    if (!(c && compareOffsets(after, c.from) >= 0) && compareOffsets(await this.first(), after) > 0) {
      // the adapter trims the stream to its maxLen: what it dropped after `after` is gone
      throw new Error(`the stream no longer reaches back to ${after} (the adapter's maxLen is too small for this traffic)`);
    }
    if (c && compareOffsets(after, c.from) >= 0 && compareOffsets(after, c.to) <= 0) {
      if (compareOffsets(end, c.to) > 0) {
        c.entries.push(...decode(await this.range(c.to, end)));
        c.to = end;
      }
    } else {
      this.cache = { from: after, to: end, entries: decode(await this.range(after, end)) };
    }
    const over = this.cache.entries.length - CACHE_MAX; // the oldest go first
    if (over > 0) this.cache.from = this.cache.entries.splice(0, over).pop().offset;
  }

  /** The offset of the stream's first entry, or null (empty). */
  async first() {
    const r = this.redis;
    if (typeof r.xRange === 'function') return (await r.xRange(this.name, '-', '+', { COUNT: 1 }))[0]?.id ?? null;
    return (await r.xrange(this.name, '-', '+', 'COUNT', 1))[0]?.[0] ?? null;
  }

  /** The offset of the stream's last entry, or null (empty). */
  async last() {
    const r = this.redis;
    if (typeof r.xRevRange === 'function') return (await r.xRevRange(this.name, '+', '-', { COUNT: 1 }))[0]?.id ?? null;
    return (await r.xrevrange(this.name, '+', '-', 'COUNT', 1))[0]?.[0] ?? null;
  }

  /** Entries with offsets in (after, end], as { offset, message } in stream order. */
  async range(after, end) {
    const out = [];
    if (!isOffset(after) || !isOffset(end)) return out;
    for (let from = `(${after}`; ;) {
      const page = await this.page(from, end);
      out.push(...page);
      if (page.length < PAGE) return out;
      from = `(${page[page.length - 1].offset}`;
    }
  }

  async page(from, end) {
    const r = this.redis;
    if (typeof r.xRange === 'function') {
      return (await r.xRange(this.name, from, end, { COUNT: PAGE })).map((e) => ({ offset: e.id, message: e.message }));
    }
    return (await r.xrange(this.name, from, end, 'COUNT', PAGE)).map(([offset, fields]) => {
      const message = {};
      for (let i = 0; i < fields.length; i += 2) message[fields[i]] = fields[i + 1];
      return { offset, message };
    });
  }

  /** msgpack's decode, as the adapter loaded it (null: not found). */
  msgpack() {
    if (this.decodeMsgpack === undefined) this.decodeMsgpack = msgpackDecoder();
    return this.decodeMsgpack;
  }

  /** An entry's broadcast: { nsp, packet, opts }, or null for anything else. */
  broadcastOf(message) {
    if (message.type !== '3' || typeof message.data !== 'string') return null;
    let data;
    if (message.data.startsWith('{')) data = JSON.parse(message.data);
    else {
      const decode = this.msgpack();
      if (!decode) return null;
      data = decode(Buffer.from(message.data, 'base64'));
    }
    if (data?.requestId !== undefined || !data?.packet) return null; // a broadcast with acks: not stored for recovery
    return { nsp: message.nsp, packet: data.packet, opts: data.opts ?? {} };
  }
}

module.exports = { Stream };
