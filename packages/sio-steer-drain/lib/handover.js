// Handing a long-polling session to another worker of the same app, and adopting one.
//
// Nothing in a long-polling session lives in a TCP connection: it is an Engine.IO session id, the
// Socket.IO sockets on it (id, private id, rooms, data, handshake) and the packets queued for the
// client's next GET. The giving worker sends those over the successor's private socket in two steps:
//
//   prepare  the sockets: the successor builds the session, runs the namespace's middlewares, joins
//            the rooms and from then on collects what is broadcast to it (staged, not sent);
//   commit   the queued packets, and the cut between the two workers' deliveries (offsets.js): the
//            successor adds the stored broadcasts this worker did not deliver, drops those it did,
//            and serves the session. The app sees a `connection` with `socket.recovered === true`.
//
// Meanwhile the giving worker holds the session's requests (router.js) and passes them on once the
// successor has it. The client notices nothing: same session id, same socket ids, nothing lost.
//
// Without stored offsets (no connectionStateRecovery, or an adapter without it) the cut is the
// moment of the freeze: a broadcast delivered between prepare and freeze (about a millisecond) can
// reach the client twice; none is lost.
'use strict';
const { compareOffsets, isOffset, offsetOfEncoded, reaches } = require('./offsets');
const { guardClient, nsOfEncoded } = require('./guard');

const encodeData = (d) => (typeof d === 'string' || d === undefined ? d : { base64: Buffer.from(d).toString('base64') });
const decodeData = (d) => (d && typeof d === 'object' ? Buffer.from(d.base64, 'base64') : d);

class Handover {
  /** logs: namespace name -> DeliveryLog; classes: internals.classesOf(io); onSession(conn): for each adopted session. */
  constructor(io, { classes, logs, stream = null, log = () => {}, onSession = () => {} }) {
    this.io = io;
    this.onSession = onSession; // what every session of this worker gets (index.js), an adopted one too
    this.stream = stream; // stream.js: the Redis stream the adapter stores broadcasts in, if known
    this.classes = classes;
    this.logs = logs;
    this.log = log;
    this.adopting = new Map(); // sid -> { conn, client, sockets, staged }
    this.committed = new Map(); // sid -> conn, for a minute: an abort that crossed the commit undoes it
    this.stats = { given: 0, adopted: 0, recovered: 0, recoveryFailed: 0, missed: 0, dropped: 0, incomplete: 0 };
  }

  /** Whether recovered broadcasts can be cut by offset (connectionStateRecovery with a storing adapter). */
  get byOffset() {
    return Boolean(this.io.opts.connectionStateRecovery);
  }

  // --- the giving worker ---

  /** The Socket.IO sockets on an Engine.IO session. */
  socketsOf(conn) {
    const out = [];
    for (const nsp of this.io._nsps.values()) for (const s of nsp.sockets.values()) if (s.conn === conn) out.push(s);
    return out;
  }

  /** What prepare sends: JSON, or throws if a socket's data cannot be sent (then the session is not handed over). */
  snapshot(conn, key) {
    const sockets = this.socketsOf(conn).map((s) => ({
      nsp: s.nsp.name, id: s.id, pid: s.pid ?? null, rooms: [...s.rooms], data: s.data, handshake: s.handshake,
    }));
    return JSON.stringify({ sid: conn.id, protocol: conn.protocol, remoteAddress: conn.remoteAddress ?? null, key, sockets });
  }

  /**
   * Takes the packets queued for the client and fixes the cut: after this, whatever this worker
   * delivers to the session is dropped at detach(), and the successor delivers it instead.
   */
  freeze(conn) {
    const taken = conn.writeBuffer.splice(0);
    conn.packetsFn.splice(0); // write callbacks: there is nobody left here to call them for
    const sockets = this.socketsOf(conn).map((s) => ({ id: s.id, ...this.cutOf(s) }));
    return {
      taken,
      body: JSON.stringify({
        sid: conn.id,
        writeBuffer: taken.map((p) => ({ type: p.type, data: encodeData(p.data), compress: p.options?.compress !== false })),
        sockets,
      }),
    };
  }

  /**
   * Where this worker's deliveries to a socket end, from now on: every broadcast stored above
   * `floor` and not in `delivered` is another worker's to deliver. floor null: no stored offsets.
   */
  cutOf(socket) {
    const dlog = this.logs.get(socket.nsp.name);
    const floor = this.byOffset ? dlog?.floor() ?? null : null;
    if (floor === null) return { floor: null, delivered: [] };
    const { offsets, complete } = dlog.deliveredTo(socket.rooms, floor);
    if (!complete) this.stats.incomplete++;
    return { floor, delivered: offsets };
  }

  /** The commit failed: the session stays here, with what was queued for it first. */
  thaw(conn, frozen) {
    conn.writeBuffer.unshift(...frozen.taken);
  }

  /** Removes a handed-over session from this worker without a word to the app or the client. */
  detach(conn) {
    for (const s of this.socketsOf(conn)) {
      s._cleanup(); // leaves every room, leaves the namespace
      s.client._remove(s);
      s.connected = false;
    }
    for (const s of this.socketsOf(conn)) s.client?.destroy();
    conn.removeAllListeners('data');
    conn.removeAllListeners('close');
    conn.removeAllListeners('error');
    clearTimeout(conn.pingIntervalTimer);
    clearTimeout(conn.pingTimeoutTimer);
    conn.transport.discard();
    conn.clearTransport();
    conn.readyState = 'closed';
    conn.writeBuffer = [];
    const engine = this.io.engine;
    if (engine.clients[conn.id] === conn) {
      delete engine.clients[conn.id];
      engine.clientsCount--;
    }
    this.stats.given++;
  }

  // --- the adopting worker ---

  /** Builds the session and its sockets, staged. Throws (the giving worker keeps it) on any refusal. */
  async prepare(body) {
    const snap = JSON.parse(body);
    const engine = this.io.engine;
    if (typeof snap.sid !== 'string' || engine.clients[snap.sid] || this.adopting.has(snap.sid)) {
      throw new Error(`session ${snap.sid} is here already`);
    }
    const { EngineSocket, Client, Socket } = this.classes;
    const nsps = snap.sockets.map((s) => {
      const nsp = this.io._nsps.get(s.nsp);
      if (!nsp) throw new Error(`no namespace ${s.nsp} here`);
      return nsp;
    });
    // a request as the session's first one looked, for Engine.IO and the handshake
    const req = {
      method: 'GET', url: snap.sockets[0]?.handshake?.url ?? '/', headers: snap.sockets[0]?.handshake?.headers ?? {},
      _query: { EIO: String(snap.protocol), transport: 'polling' },
      connection: { remoteAddress: snap.remoteAddress ?? undefined, encrypted: Boolean(snap.sockets[0]?.handshake?.secure) },
    };
    const transport = engine.createTransport('polling', req);
    transport.maxHttpBufferSize = engine.opts.maxHttpBufferSize;
    transport.httpCompression = engine.opts.httpCompression;
    const conn = new EngineSocket(snap.sid, engine, transport, req, snap.protocol);
    this.onSession(conn);
    conn.writeBuffer.length = 0; // its "open" packet: the client opened this session long ago
    conn.packetsFn.length = 0;
    clearTimeout(conn.pingIntervalTimer); // pinged at commit
    transport.on('headers', (headers, r) => engine.emit('headers', headers, r));
    const client = new Client(this.io, conn);
    clearTimeout(client.connectTimeout);
    client.connectTimeout = undefined;
    const staged = [];
    client.writeToEngine = (encoded, opts) => { staged.push([encoded, opts]); };
    const sockets = [];
    conn.sioSteerKey = snap.key ?? undefined; // the client's key at sio-steer, for this worker's own stop
    const a = { conn, client, sockets, staged, key: snap.key };
    this.adopting.set(snap.sid, a);
    try {
      for (const [i, s] of snap.sockets.entries()) {
        const socket = new Socket(nsps[i], client, s.handshake?.auth ?? {}, { sid: s.id, pid: s.pid ?? undefined, rooms: s.rooms, data: s.data, missedPackets: [] });
        socket.handshake = s.handshake; // what the client sent when it connected, not this worker's guess
        sockets.push(socket);
        await new Promise((resolve, reject) => nsps[i].run(socket, (err) => (err ? reject(err) : resolve())));
        client.sockets.set(socket.id, socket);
        client.nsps.set(nsps[i].name, socket);
        nsps[i].sockets.set(socket.id, socket);
        socket.connected = true;
      }
    } catch (e) {
      this.abort(snap.sid);
      throw new Error(`refused by a middleware: ${e.message}`);
    }
    return a;
  }

  /** Drops a prepared session, or one committed here whose giving worker stopped waiting (it keeps it). */
  abort(sid) {
    const committed = this.committed.get(sid);
    if (committed) {
      this.committed.delete(sid);
      if (this.io.engine.clients[sid] === committed) this.detach(committed);
      return;
    }
    const a = this.adopting.get(sid);
    if (!a) return;
    this.adopting.delete(sid);
    for (const s of a.sockets) {
      s._cleanup();
      s.connected = false;
    }
    a.client.destroy();
    clearTimeout(a.conn.pingTimeoutTimer);
    a.conn.transport.discard();
    a.conn.clearTransport();
    a.conn.readyState = 'closed';
  }

  /** Completes an adoption: queued packets, broadcasts the giving worker did not deliver, then serve. */
  async commit(body) {
    const frozen = JSON.parse(body);
    const a = this.adopting.get(frozen.sid);
    if (!a) throw new Error(`session ${frozen.sid} was not prepared here`);
    const { conn, client, sockets, staged } = a;
    const cuts = new Map(frozen.sockets.filter((c) => isOffset(c.floor)).map((c) => [c.id, { ...c, delivered: new Set(c.delivered) }]));
    const { missed, end } = await this.missed(client, sockets, cuts);
    if (this.adopting.get(frozen.sid) !== a) throw new Error(`session ${frozen.sid} was dropped meanwhile`);
    this.adopting.delete(frozen.sid);

    // the queued packets first, then what was stored or staged, once each, in stream order
    for (const p of frozen.writeBuffer) conn.writeBuffer.push({ type: p.type, data: decodeData(p.data), options: { compress: p.compress } });
    const cutOfNsp = new Map(sockets.map((s) => [s.nsp.name, cuts.get(s.id)]));
    const byOffset = new Map(missed.map((m) => [m.offset, m.encoded]));
    const plain = [];
    for (const [encoded, opts] of staged) {
      const offset = this.byOffset ? offsetOfEncoded(encoded) : null;
      const cut = offset && cutOfNsp.get(nsOfEncoded(encoded));
      if (!cut) plain.push([encoded, opts]);
      else if (compareOffsets(offset, cut.floor) <= 0 || cut.delivered.has(offset)) this.stats.dropped++;
      else byOffset.set(offset, encoded);
    }
    const write = this.classes.Client.prototype.writeToEngine;
    const written = [...byOffset.keys()].sort(compareOffsets);
    if (process.env.SIO_STEER_DRAIN_DEBUG) {
      this.log(`DEBUG commit ${frozen.sid} sockets ${sockets.map((x) => x.id)} cuts ${JSON.stringify([...cuts.values()].map((c) => ({ floor: c.floor, delivered: [...c.delivered] })))} end ${end} ` +
        `missed ${missed.map((m) => m.offset)} staged ${staged.map(([e]) => offsetOfEncoded(e))} written ${written} wb ${frozen.writeBuffer.length}`);
    }
    for (const offset of written) write.call(client, byOffset.get(offset), {});
    for (const [encoded, opts] of plain) write.call(client, encoded, opts);
    delete client.writeToEngine;

    // until this worker's reader is past what was read here, it may still deliver a broadcast the
    // giving worker delivered or that was just written: drop those
    const until = [end, written[written.length - 1]].filter(isOffset).sort(compareOffsets).pop();
    const guards = new Map(sockets.filter((s) => cuts.has(s.id)).map((s) => {
      const c = cuts.get(s.id);
      return [s.nsp.name, { floor: c.floor, skip: new Set([...c.delivered, ...written]), until: until && compareOffsets(until, c.floor) > 0 ? until : c.floor }];
    }));
    if (guards.size) guardClient(client, guards, this.logs, () => { this.stats.dropped++; });

    const engine = this.io.engine;
    engine.clients[conn.id] = conn;
    engine.clientsCount++;
    conn.once('close', () => {
      delete engine.clients[conn.id];
      engine.clientsCount--;
    });
    // a ping now: the client's ping timeout runs from the last ping it had from the giving worker
    conn.hasRefreshedPingTimeout = false;
    conn.sendPacket('ping');
    conn.resetPingTimeout(engine.opts.pingTimeout); // engine.io 6.5 takes the timeout, 6.6 knows it
    conn.schedulePing();
    this.stats.adopted++;
    this.committed.set(conn.id, conn);
    setTimeout(() => this.committed.delete(conn.id), 60000).unref();
    for (const s of sockets) {
      s.nsp.emitReserved('connect', s);
      s.nsp.emitReserved('connection', s);
    }
    return a;
  }

  // The stored broadcasts above each socket's cut that the giving worker did not deliver, encoded
  // for the client, and the stream offset read up to (null: nothing read).
  async missed(client, sockets, cuts) {
    const missed = [];
    const wanted = sockets.filter((s) => cuts.has(s.id));
    if (!wanted.length) return { missed, end: null };
    const add = (s, offset, data) => missed.push({ offset, encoded: client.encoder.encode({ type: 2, nsp: s.nsp.name, data }) });
    try {
      if (this.stream) {
        const end = await this.stream.last();
        const from = wanted.map((s) => cuts.get(s.id).floor).sort(compareOffsets)[0];
        for (const { offset, broadcast: b } of await this.stream.broadcasts(from, end)) {
          if (!b || b.packet.type !== 2 || b.packet.id !== undefined || b.opts.flags?.volatile) continue;
          for (const s of wanted) {
            const cut = cuts.get(s.id);
            if (b.nsp !== s.nsp.name || compareOffsets(offset, cut.floor) <= 0 || cut.delivered.has(offset)) continue;
            if (reaches(s.rooms, b.opts.rooms ?? [], b.opts.except ?? [])) add(s, offset, [...b.packet.data, offset]);
          }
        }
        return { missed, end };
      }
      // any other storing adapter: its own restoreSession()
      for (const s of wanted) {
        const cut = cuts.get(s.id);
        s.adapter.persistSession({ sid: s.id, pid: s.pid, rooms: [...s.rooms], data: s.data });
        const session = await s.adapter.restoreSession(s.pid, cut.floor);
        for (const data of session?.missedPackets ?? []) {
          const offset = data[data.length - 1];
          if (!cut.delivered.has(offset)) add(s, offset, data);
        }
      }
    } catch (e) {
      this.stats.missed++;
      this.log(`handover: the broadcasts stored since offset ${[...cuts.values()][0].floor} cannot be read (${e.message ?? e}); some sent during the handover may be missing`);
    }
    return { missed, end: null };
  }
}

module.exports = { Handover, reaches };
