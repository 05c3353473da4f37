// The workers of one app on one host find each other through a private folder: each serves an HTTP
// server on <dir>/<token>.sock (the token is in every session id it creates), and the newest worker
// of each PM2 instance links instance-<N>.sock to its own socket, so that a stopping worker finds
// its successor (the same rule sio-steer uses to send a closed socket's clients on).
//
// Who can connect decides what they can do (hand a session over, pass a request on with the
// client's address), so the folder must be this user's alone: created 0700, and refused if it is a
// link, another user's, or open to others. Node cannot check a peer's credentials; the folder can.
'use strict';
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const { isToken } = require('./session-id');

/** The default base folder: $XDG_RUNTIME_DIR/sio-steer (a systemd user's 0700 runtime folder), else <tmp>/sio-steer-<uid>. */
function defaultBase() {
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg && path.isAbsolute(xdg) ? path.join(xdg, 'sio-steer') : path.join(os.tmpdir(), `sio-steer-${process.getuid()}`);
}

// Creates `dir` (mode 0700) if missing, then checks it is a real folder of ours that nobody else can
// enter. Throws with what is wrong and what to do.
function privateFolder(dir) {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (e.code !== 'EEXIST') throw new Error(`cannot create the peer folder ${dir}: ${e.message}`);
  }
  const st = fs.lstatSync(dir);
  const problem = !st.isDirectory() ? 'is not a folder (a link?)'
    : st.uid !== process.getuid() ? `belongs to uid ${st.uid}, not to this worker's uid ${process.getuid()}`
      : (st.mode & 0o077) !== 0 ? `has mode ${(st.mode & 0o777).toString(8)}: others can enter it` : null;
  if (problem) {
    throw new Error(`the peer folder ${dir} ${problem}; remove it, or give the workers another one (peerDir)`);
  }
}

class Peers {
  /**
   * Opens <base>/<port>/ and listens on <token>.sock with `server` (an http.Server the caller set
   * up). instance: this worker's PM2 instance (null: no successor can be found by instance).
   */
  static async open({ base = defaultBase(), port, token, instance, server }) {
    privateFolder(base);
    const dir = path.join(base, String(port));
    privateFolder(dir);
    const peers = new Peers(dir, token, instance);
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(peers.pathOf(token), () => { server.off('error', reject); resolve(); });
    });
    peers.server = server;
    await peers.tidy();
    if (instance !== null) await peers.link(peers.instanceLink(instance), `${token}.sock`);
    return peers;
  }

  constructor(dir, token, instance) {
    this.dir = dir;
    this.token = token;
    this.instance = instance;
  }

  pathOf(token) {
    if (!isToken(token)) throw new Error(`not a worker token: ${JSON.stringify(token)}`);
    return path.join(this.dir, `${token}.sock`);
  }

  instanceLink(instance) { return path.join(this.dir, `instance-${Number(instance)}.sock`); }

  // Points `at` to `target` (a name in the folder) in one rename: never missing, never half-made.
  async link(at, target) {
    const tmp = `${at}.${process.pid}.tmp`;
    await fsp.rm(tmp, { force: true });
    await fsp.symlink(target, tmp);
    await fsp.rename(tmp, at);
  }

  /** The token of the newest other worker of this instance, or null. */
  async successor() {
    if (this.instance === null) return null;
    try {
      const target = await fsp.readlink(this.instanceLink(this.instance));
      const token = target.endsWith('.sock') ? target.slice(0, -5) : null;
      return isToken(token) && token !== this.token ? token : null;
    } catch {
      return null;
    }
  }

  /** This worker stops: no other worker stopping at the same time picks it to take its sessions. */
  async stopping() {
    await fsp.writeFile(path.join(this.dir, `${this.token}.stopping`), '', { mode: 0o600 }).catch(() => {});
  }

  /** The token of the newest worker of another instance that is not stopping (a worker stopping for good hands its sessions there), or null. */
  async sibling() {
    const links = (await fsp.readdir(this.dir).catch(() => [])).filter((n) => /^instance-\d+\.sock$/.test(n));
    const own = this.instance === null ? null : path.basename(this.instanceLink(this.instance));
    for (const name of links.sort()) {
      if (name === own) continue;
      const target = await fsp.readlink(path.join(this.dir, name)).catch(() => '');
      const token = target.endsWith('.sock') ? target.slice(0, -5) : null;
      if (!isToken(token) || token === this.token) continue;
      if (!(await fsp.access(path.join(this.dir, `${token}.stopping`)).then(() => true, () => false))) return token;
    }
    return null;
  }

  /**
   * On the way out, once `successor` holds this worker's sessions: <token>.sock becomes a link to
   * the successor's socket (a client whose request goes elsewhere with an id naming this worker is
   * still found), and every link to this worker's socket is pointed at the successor's, so that a
   * chain of reloads never makes a chain of links. Without a successor the socket is removed.
   */
  async retire(successor) {
    await fsp.rm(path.join(this.dir, `${this.token}.stopping`), { force: true });
    const own = `${this.token}.sock`;
    const next = successor ? `${successor}.sock` : null;
    for (const name of await fsp.readdir(this.dir).catch(() => [])) {
      const at = path.join(this.dir, name);
      const target = await fsp.readlink(at).catch(() => null);
      if (target !== own) continue;
      if (next) await this.link(at, next).catch(() => {});
      else await fsp.rm(at, { force: true });
    }
    // Closing the server unlinks its path (libuv does): the link to the successor is made aside
    // first and renamed into place right after, so that a request passed on finds no gap wider
    // than a rename (the router tries again across it).
    const at = this.pathOf(this.token);
    const tmp = `${at}.${process.pid}.next`;
    if (next) await fsp.symlink(next, tmp).catch(() => {});
    this.server?.close();
    if (next) await fsp.rename(tmp, at).catch(() => {});
    else await fsp.rm(at, { force: true });
  }

  // Removes links that lead nowhere (their worker stopped without a successor) and sockets nobody
  // listens on any more (a worker killed with SIGKILL): a connect to them fails at once.
  async tidy() {
    const net = require('node:net');
    const probe = (p) => new Promise((resolve) => {
      const s = net.connect(p);
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    const names = await fsp.readdir(this.dir).catch(() => []);
    for (const name of names) {
      if (!name.endsWith('.sock') || name === `${this.token}.sock`) continue;
      const at = path.join(this.dir, name);
      if (!(await probe(at))) await fsp.rm(at, { force: true });
    }
    for (const name of names) { // a stopping mark outlives a worker killed while stopping
      if (name.endsWith('.stopping') && !names.includes(`${name.slice(0, -9)}.sock`)) await fsp.rm(path.join(this.dir, name), { force: true });
    }
  }
}

module.exports = { Peers, privateFolder, defaultBase };
