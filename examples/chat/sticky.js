// The chat behind @socket.io/sticky: a Node cluster primary owns the port, reads the first bytes of
// every connection and hands the socket to the worker holding its session (keyed on the Engine.IO
// sid in the URL; a handshake, which has none, goes by the load-balancing method). The workers run
// server.js unchanged but for SIO_STICKY=1 (no listen; setupWorker).
//
// env: PORT (5001), HOST, INSTANCES (4), STICKY_LB ("least-connection", the package's default;
//      "round-robin", "random"), plus server.js's REDIS_URL. Run: node sticky.js
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const path = require('node:path');
const { setupMaster } = require('@socket.io/sticky');

const PORT = Number(process.env.PORT || 5001);
const HOST = process.env.HOST || undefined;
const INSTANCES = Number(process.env.INSTANCES || 4);
const LB = process.env.STICKY_LB || 'least-connection';

const httpServer = http.createServer();
setupMaster(httpServer, { loadBalancingMethod: LB });

// "advanced": the first chunk goes to the worker as a Buffer (JSON would turn it into an object)
cluster.setupPrimary({ exec: path.join(__dirname, 'server.js'), serialization: 'advanced' });
const fork = (i) => cluster.fork({ SIO_STICKY: '1', NODE_APP_INSTANCE: String(i) });
let ready = 0, stopping = false;
const instanceOf = new Map(); // worker id -> instance, to restart a crashed worker as itself
for (let i = 0; i < INSTANCES; i++) instanceOf.set(fork(i).id, i);
cluster.on('message', (worker, msg) => {
  // listen once every worker can take connections
  if (msg === 'ready' && ++ready === INSTANCES)
    httpServer.listen({ port: PORT, host: HOST }, () =>
      console.log(`sticky: pid ${process.pid} on ${PORT}, ${INSTANCES} workers, ${LB}`));
});
cluster.on('exit', (worker) => {
  const i = instanceOf.get(worker.id);
  instanceOf.delete(worker.id);
  if (!stopping) instanceOf.set(fork(i).id, i);
});
const stop = () => {
  stopping = true;
  httpServer.close();
  for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  setTimeout(() => process.exit(0), 3000).unref();
  cluster.on('exit', () => { if (!Object.keys(cluster.workers).length) process.exit(0); });
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
