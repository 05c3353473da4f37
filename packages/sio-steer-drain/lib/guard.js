// A session that moved to this worker (handed over, or recovered after a reconnect) got the stored
// broadcasts up to some offset from the stream. This worker's own reader may still be behind that
// offset and deliver some of them again: drop those, until the reader (and this worker's own
// broadcasts in flight) are past it. From then on the stream keeps deliveries apart by itself.
'use strict';
const { compareOffsets, offsetOfEncoded } = require('./offsets');

// The namespace of an encoded packet ('/' unless it starts '/nsp,' after its type).
function nsOfEncoded(encoded) {
  const s = Array.isArray(encoded) ? encoded[0] : encoded;
  let i = 1;
  if (s[0] === '5') i = s.indexOf('-') + 1;
  if (s[i] !== '/') return '/';
  return s.slice(i, s.indexOf(',', i));
}

/**
 * Filters what `client` (a Socket.IO Client) is sent. guards: per namespace, { floor, skip (Set),
 * until }: an offset at or below floor, or in skip, is dropped while the namespace's delivery log
 * is not past until. onDrop: counts.
 */
function guardClient(client, guards, logs, onDrop = () => {}) {
  const write = Object.getPrototypeOf(client).writeToEngine;
  // A log with no floor yet (a worker just started: its reader has read nothing) is not past
  // anything: what it reads first may be what the session was sent already.
  const settled = () => [...guards].every(([nsp, g]) => {
    const log = logs.get(nsp);
    if (!log) return true;
    const floor = log.floor();
    return floor !== null && compareOffsets(floor, g.until) >= 0;
  });
  // A copy is dropped before settled() is asked: the reader moves its cursor to an entry before it
  // delivers it, so the copy of `until` itself comes when the guard already looks settled.
  client.writeToEngine = (encoded, opts) => {
    const offset = offsetOfEncoded(encoded);
    if (offset) {
      const g = guards.get(nsOfEncoded(encoded));
      const copy = g && (compareOffsets(offset, g.floor) <= 0 || g.skip.has(offset));
      if (settled()) delete client.writeToEngine;
      if (copy) {
        onDrop();
        return undefined;
      }
    }
    return write.call(client, encoded, opts);
  };
}

module.exports = { guardClient, nsOfEncoded };
