// One measurement of scripts/bench.sh as one JSON line: the summaries of the load.js processes that
// ran side by side (each from its own source addresses) merged, their raw latencies merged for
// exact percentiles, plus what bench.sh measured around them (CPU, BPF statistics).
//   node record.js META_JSON LOAD_PREFIX...
// META_JSON: {round, workers, contender, load, cpu: {...}, bpf: {...} | null}; for each
// LOAD_PREFIX, PREFIX.json is load.js's last line and PREFIX.{delivery,ack}.f32 its --samples-out.
'use strict';
const fs = require('node:fs');

const [meta, ...prefixes] = [JSON.parse(process.argv[2]), ...process.argv.slice(3)];
const runs = prefixes.map((p) => ({ p, j: JSON.parse(fs.readFileSync(`${p}.json`, 'utf8')) }));
const samples = (kind) => {
  const parts = runs.map(({ p }) => {
    const b = fs.readFileSync(`${p}.${kind}.f32`);
    return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  });
  const all = new Float32Array(parts.reduce((a, x) => a + x.length, 0));
  let at = 0;
  for (const x of parts) { all.set(x, at); at += x.length; }
  return all.sort();
};
const pct = (s, p) => (s.length ? +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(1) : null);
const sum = (f) => runs.reduce((a, { j }) => a + (f(j) || 0), 0);
const delivery = samples('delivery'), ack = samples('ack');

// the processes run side by side: rates add up; a window is the longest of theirs
const out = {
  ...meta,
  clients: sum((j) => j.clients),
  clients_ok: sum((j) => j.clients_ok),
  errors: sum((j) => j.http_400), // every HTTP 400 the clients got
  session_unknown_400: sum((j) => j.session_unknown_400),
  connect_errors: sum((j) => j.connect_errors),
  disconnects: sum((j) => j.disconnects),
  timed_out: runs.some(({ j }) => j.timed_out),
  clients_websocket: sum((j) => j.clients_websocket),
  tcp_connections: sum((j) => j.tcp_connections),
  window_s: +Math.max(...runs.map(({ j }) => j.rate.window_ms / 1000)).toFixed(2),
  events_per_s: sum((j) => j.rate.events_per_s),     // Socket.IO events delivered to the clients
  requests_per_s: sum((j) => j.rate.requests_per_s), // HTTP requests the clients made
  messages_per_s: sum((j) => j.rate.messages_per_s), // chat messages sent (typing + dm + activity)
  p50_ms: pct(delivery, 50), p99_ms: pct(delivery, 99), // emit -> delivery of dm/activity
  ack_p50_ms: pct(ack, 50), ack_p99_ms: pct(ack, 99),
  latency_samples: delivery.length,
  loadgen_cpu_s: +(sum((j) => j.cpu_ms.user + j.cpu_ms.system) / 1000).toFixed(2),
  loadgen_duration_s: +Math.max(...runs.map(({ j }) => j.duration_ms / 1000)).toFixed(2),
  // events of the whole run per CPU second of the server side over the whole run;
  // server side = workers + proxy/primary/controller + Redis (+ the BPF program, in softirq: not in any
  // process's time); "other" = what the machine did besides this benchmark (others' jobs: noise)
  events_per_server_cpu_s: null,
  other_cpu_s: null,
  clients_per_worker: (() => {
    const m = new Map();
    for (const { j } of runs) for (const w of j.workers) m.set(w.pid, (m.get(w.pid) || 0) + w.clients);
    return [...m.values()].sort((a, b) => b - a);
  })(),
};
const server = meta.cpu_s.workers + meta.cpu_s.proxy + meta.cpu_s.redis;
out.events_per_server_cpu_s = server > 0 ? Math.round(sum((j) => j.rate.events_total) / server) : null;
out.other_cpu_s = +(meta.cpu_s.machine - server - meta.cpu_s.pm2_god - out.loadgen_cpu_s).toFixed(2);
process.stdout.write(JSON.stringify(out) + '\n');
