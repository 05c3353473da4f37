// PM2 ecosystem for the chat example.
// env: PORT (5001), INSTANCES (4), REDIS_URL, SIO_REUSEPORT, SIO_DRAIN_MS (0), SIO_STEER_LOCK_DIR,
//      SIO_STEER_PEER_DIR, SIO_ADAPTER (streams | redis), SIO_PASS_ON (0: no safety net),
//      LISTEN_TIMEOUT (10000 ms: PM2's listen_timeout; raise it on a host too busy to start a worker in 10 s),
//      PM2_EXEC_MODE ("cluster" or "fork"),
//      PORT_PER_INSTANCE=1: instance i listens on PORT + i (PM2's increment_var), e.g. behind nginx.
// In cluster mode the workers run on the PM2 daemon's Node, whatever `interpreter` says, so start
// PM2 itself with Node >= 22.12 (scripts/node-env.sh does: $PM2 runs pm2 with $NODE24). Fork mode
// does use `interpreter` (default: `node` from PATH), so it is set to the Node running the pm2 CLI.
const path = require('node:path');

// A stopping worker serves its sessions for SIO_DRAIN_MS, hands them over or closes them within
// 10 s, then lets its connections close within the 5 s keep-alive timeout (sio-steer-drain,
// packages/sio-steer-drain); PM2 must not SIGKILL it before.
const DRAIN_MS = Number(process.env.SIO_DRAIN_MS || 0);

module.exports = {
  apps: [
    {
      name: 'chat',
      script: path.join(__dirname, 'server.js'),
      cwd: __dirname,
      interpreter: process.execPath,
      exec_mode: process.env.PM2_EXEC_MODE || 'cluster',
      instances: Number(process.env.INSTANCES || 4),
      wait_ready: true,      // server.js sends 'ready' after listen (shortens the reload overlap)
      // upper bound only: 'ready' ends the wait as soon as the worker listens. Past it PM2 stops the
      // old worker anyway, before its replacement listens (a drain then has nobody to hand over to).
      listen_timeout: Number(process.env.LISTEN_TIMEOUT || 10000),
      kill_timeout: DRAIN_MS + 20000,
      autorestart: true,
      max_restarts: 10,
      merge_logs: true,
      ...(process.env.PORT_PER_INSTANCE === '1' ? { increment_var: 'PORT' } : {}),
      env: {
        PORT: process.env.PORT || '5001',
        REDIS_URL: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
        SIO_REUSEPORT: process.env.SIO_REUSEPORT || '1',
        SIO_DRAIN_MS: String(DRAIN_MS),
        ...(process.env.SIO_STEER_LOCK_DIR ? { SIO_STEER_LOCK_DIR: process.env.SIO_STEER_LOCK_DIR } : {}),
        ...(process.env.SIO_STEER_PEER_DIR ? { SIO_STEER_PEER_DIR: process.env.SIO_STEER_PEER_DIR } : {}),
        ...(process.env.SIO_ADAPTER ? { SIO_ADAPTER: process.env.SIO_ADAPTER } : {}),
        ...(process.env.SIO_PASS_ON ? { SIO_PASS_ON: process.env.SIO_PASS_ON } : {}),
        ...(process.env.SIO_STEER_DRAIN_DEBUG ? { SIO_STEER_DRAIN_DEBUG: process.env.SIO_STEER_DRAIN_DEBUG } : {}),
      },
    },
  ],
};
