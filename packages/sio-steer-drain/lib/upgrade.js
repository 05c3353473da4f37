// An upgrade to WebSocket that the server gives up on after answering its probe strands the client:
// socket.io-client has paused its long-polling by then to switch, and does not resume it when the
// probe's WebSocket closes (engine.io-client 6.x). The session then hears nothing until its ping
// timeout (pingInterval + pingTimeout, 45 s by default), loses the acks it was owed, and
// reconnects: a second reconnect for a client a reload had just moved.
//
// Engine.IO gives up after `upgradeTimeout` (10 s) from the upgrade request, and a busy host gets
// there: a new worker taking a reload's reconnects, its event loop stalled for seconds, runs that
// timer before it reads the client's "upgrade" packet. Once the probe is answered the client is
// committed to the switch, and the session's own heartbeat bounds the wait (a client that went
// away times out, and Engine.IO then closes the probe too): from then on the timer is cleared.
'use strict';
const timers = require('node:timers');

/** On one Engine.IO session (conn): its `method` (the engine's maybeUpgrade) keeps a probed upgrade. */
function keepProbedUpgrades(conn, method) {
  const original = conn[method];
  if (typeof original !== 'function') return;
  conn[method] = function (transport) {
    // the one timer maybeUpgrade sets as it runs (synchronously) is the upgrade's timeout
    const setTimeout = timers.setTimeout;
    let timeout = null;
    timers.setTimeout = (...args) => (timeout = setTimeout(...args));
    try {
      original.call(this, transport);
    } finally {
      timers.setTimeout = setTimeout;
    }
    const onUpgrading = (t) => {
      if (t !== transport) return;
      this.off('upgrading', onUpgrading);
      if (timeout) timers.clearTimeout(timeout);
    };
    this.on('upgrading', onUpgrading);
    transport.once('close', () => this.off('upgrading', onUpgrading));
  };
}

module.exports = { keepProbedUpgrades };
