// The Engine.IO and Socket.IO internals a handover touches, found in the very copies of the modules
// that made `io` (an app may have several copies loaded), and the versions they were tested on.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

// engine.io minor versions whose internals this module was tested on (test/matrix/), with the event
// a polling transport emits when the client's GET arrives: 6.6 renamed it.
const GET_EVENT = { '6.5': 'drain', '6.6': 'ready' };
const KNOWN_ENGINES = Object.keys(GET_EVENT);
// The Socket method that takes a transport upgrade in hand (6.6 made it "private").
const UPGRADE_METHOD = { '6.5': 'maybeUpgrade', '6.6': '_maybeUpgrade' };

// The loaded module file matching `pattern` whose export `name` made `instance`, and its package.json version.
function moduleOf(pattern, name, instance) {
  for (const [file, mod] of Object.entries(require.cache)) {
    if (!pattern.test(file)) continue;
    const C = mod.exports?.[name];
    if (typeof C !== 'function' || !(instance instanceof C)) continue;
    let version = null;
    try {
      version = JSON.parse(fs.readFileSync(path.join(path.dirname(file), '..', 'package.json'), 'utf8')).version;
    } catch { /* version unknown */ }
    return { dir: path.dirname(file), version };
  }
  return null;
}

/** { version, known, getEvent, upgradeMethod }: the engine.io behind `io` and whether this module knows it. */
function engineSupport(io) {
  const found = moduleOf(/[\\/]engine\.io[\\/]build[\\/]engine\.io\.js$/, 'Server', io.engine);
  const version = found?.version ?? null;
  const line = version?.split('.').slice(0, 2).join('.');
  return { version, known: Boolean(version && KNOWN_ENGINES.includes(line)), getEvent: GET_EVENT[line], upgradeMethod: UPGRADE_METHOD[line] };
}

/** The classes a handover builds sessions with: Engine.IO's Socket, Socket.IO's Client and Socket. */
function classesOf(io) {
  const engine = moduleOf(/[\\/]engine\.io[\\/]build[\\/]engine\.io\.js$/, 'Server', io.engine);
  const sio = moduleOf(/[\\/]socket\.io[\\/]dist[\\/]index\.js$/, 'Server', io);
  if (!engine || !sio) return null;
  return {
    EngineSocket: require(path.join(engine.dir, 'socket.js')).Socket,
    Client: require(path.join(sio.dir, 'client.js')).Client,
    Socket: require(path.join(sio.dir, 'socket.js')).Socket,
  };
}

module.exports = { engineSupport, classesOf, KNOWN_ENGINES };
