// Summarizes a scripts/bench.sh run: medians and min-max over rounds per contender, worker count
// and load; the goals of the benchmark issue, met or not; data files for plots.gp; and the JSON
// object bench.sh prints last.
//   node report.js OUT_DIR HEADLINE_WORKERS
// Reads OUT_DIR/run.json, results.jsonl, bpf.json (if any). Writes OUT_DIR/summary.json,
// summary.md (the tables, as in docs/benchmarks.md), plot-*.dat; prints summary.md.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const [dir, headlineArg] = process.argv.slice(2);
const read = (f) => fs.readFileSync(path.join(dir, f), 'utf8');
const run = JSON.parse(read('run.json'));
const rows = read('results.jsonl').split('\n').filter(Boolean).map((l) => JSON.parse(l));
let bpf = null;
try { bpf = JSON.parse(read('bpf.json')).bpf_ns; } catch { /* --no-bpf, or it failed */ }
const HEAD = Number(headlineArg);
const CONTENDERS = ['sio_steer', 'nginx_hash', 'socketio_sticky', 'fork'];
const LOADS = ['polling', 'upgrade', 'polling_close'].filter((l) => rows.some((r) => r.load === l));
const WORKERS = [...new Set(rows.filter((r) => r.contender !== 'fork').map((r) => r.workers))].sort((a, b) => a - b);

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const stat = (xs) => {
  const a = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
  return a.length ? { median: +median(a).toFixed(3), min: Math.min(...a), max: Math.max(...a), n: a.length } : null;
};
// fork has one worker whatever N: it is the same measurement at every worker count
const pick = (c, n, load) => rows.filter((r) => r.contender === c && r.load === load && (c === 'fork' || r.workers === n));

function summarize(c, n, load) {
  const rs = pick(c, n, load);
  if (!rs.length) return null;
  const f = (k) => stat(rs.map(k));
  const s = {
    rps: f((r) => r.events_per_s), http_rps: f((r) => r.requests_per_s),
    p50_ms: f((r) => r.p50_ms), p99_ms: f((r) => r.p99_ms),
    ack_p50_ms: f((r) => r.ack_p50_ms), ack_p99_ms: f((r) => r.ack_p99_ms),
    errors: f((r) => r.errors), session_unknown_400: f((r) => r.session_unknown_400),
    connect_errors: f((r) => r.connect_errors),
    clients_ok: f((r) => r.clients_ok), clients: rs[0].clients,
    // CPU as a share of one core over the load generators' run (connects, messaging, drain)
    workers_cpu_pct: f((r) => (100 * r.cpu_s.workers) / r.wall_s),
    proxy_cpu_pct: f((r) => (100 * r.cpu_s.proxy) / r.wall_s),
    redis_cpu_pct: f((r) => (100 * r.cpu_s.redis) / r.wall_s),
    loadgen_cpu_pct: f((r) => (100 * r.loadgen_cpu_s) / r.wall_s),
    tcp_connections: f((r) => r.tcp_connections),
    events_per_server_cpu_s: f((r) => r.events_per_server_cpu_s),
    other_cpu_pct: f((r) => (100 * r.other_cpu_s) / r.wall_s),
    clients_per_worker: rs.map((r) => r.clients_per_worker),
    rounds: rs.length,
  };
  if (c === 'sio_steer') {
    s.bpf_ns_per_run = f((r) => r.bpf?.ns_per_run ?? null);
    s.bpf_runs_per_s = f((r) => (r.bpf ? r.bpf.run_cnt / r.wall_s : null));
    s.bpf_cpu_pct = f((r) => (r.bpf ? (100 * r.bpf.run_time_ms) / 1000 / r.wall_s : null));
  }
  return s;
}

const full = {};
for (const load of LOADS) {
  full[load] = {};
  for (const n of WORKERS) {
    full[load][n] = {};
    for (const c of CONTENDERS) { const s = summarize(c, n, load); if (s) full[load][n][c] = s; }
  }
}

// the machine-readable line: medians at the headline worker count, spread beside them
const flat = (s) => s && {
  rps: Math.round(s.rps.median), p50_ms: s.p50_ms?.median ?? null, p99_ms: s.p99_ms?.median ?? null,
  errors: s.errors.median, http_rps: Math.round(s.http_rps.median),
  rps_min: s.rps.min, rps_max: s.rps.max, p99_min: s.p99_ms?.min ?? null, p99_max: s.p99_ms?.max ?? null,
  clients_ok: s.clients_ok.median, clients: s.clients,
  proxy_cpu_pct: Math.round(s.proxy_cpu_pct.median), workers_cpu_pct: Math.round(s.workers_cpu_pct.median),
  loadgen_cpu_pct: Math.round(s.loadgen_cpu_pct.median),
  events_per_server_cpu_s: s.events_per_server_cpu_s?.median ?? null,
  other_cpu_pct: Math.round(s.other_cpu_pct.median),
  ...(s.bpf_ns_per_run?.median != null ? { bpf_ns_per_run: s.bpf_ns_per_run.median } : {}),
  rounds: s.rounds,
};
const out = { bpf_ns: bpf };
for (const load of LOADS) {
  out[load] = {};
  for (const c of CONTENDERS) { const s = full[load][HEAD]?.[c]; if (s) out[load][c] = flat(s); }
}

// the goals of the issue, measured (never assumed), for every load (the issue's are about polling)
const ratio = (a, b) => (a && b ? +(a / b).toFixed(2) : null);
const goals = {};
if (bpf) goals.bpf_le_150ns_at_1m = { value_ns: bpf.sessions_1m, met: bpf.sessions_1m <= 150 };
for (const load of LOADS) {
  const P = out[load], g = {};
  if (P.sio_steer && P.nginx_hash) {
    g.ge_1_3x_nginx_hash = { ratio: ratio(P.sio_steer.rps, P.nginx_hash.rps), met: P.sio_steer.rps >= 1.3 * P.nginx_hash.rps };
    g.p99_below_nginx_hash = { sio_steer: P.sio_steer.p99_ms, nginx_hash: P.nginx_hash.p99_ms, met: P.sio_steer.p99_ms < P.nginx_hash.p99_ms };
  }
  if (P.sio_steer && P.socketio_sticky)
    g.ahead_of_sticky = { ratio: ratio(P.sio_steer.rps, P.socketio_sticky.rps), met: P.sio_steer.rps > P.socketio_sticky.rps };
  if (P.sio_steer && P.fork) g.vs_fork = { ratio: ratio(P.sio_steer.rps, P.fork.rps), workers: HEAD };
  goals[load] = g;
}
out.workers = HEAD;
out.rounds = run.rounds;
out.rps_unit = 'Socket.IO events delivered to the clients per second (acks, dm, unread, typing, room broadcasts)';
out.goals = goals;
out.by_workers = {};
for (const load of LOADS) {
  out.by_workers[load] = {};
  for (const n of WORKERS)
    out.by_workers[load][n] = Object.fromEntries(Object.entries(full[load][n]).map(([c, s]) => [c, { rps: Math.round(s.rps.median), p99_ms: s.p99_ms?.median ?? null }]));
}
fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(out) + '\n');
fs.writeFileSync(path.join(dir, 'summary-full.json'), JSON.stringify({ run, full }, null, 1) + '\n');

// --- tables (markdown) ---
const fmt = (s, d = 0) => (s ? (s.n > 1 ? `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})` : s.median.toFixed(d)) : '–');
const md = [];
md.push(`machine: ${run.machine}; ${run.versions}; load average at start ${run.load_at_start}${run.scheduler ? `; scheduler: ${run.scheduler}` : ''}`);
md.push(`${run.quick ? 'quick' : 'full'} run: ${run.rounds} round(s), ${run.clients} clients from ${run.loadgens} load.js processes, ` +
  `${run.duration_s} s of closed-loop messaging per load; @socket.io/sticky ${run.sticky_lb}; nginx upstream keepalive ${run.nginx_upstream_keepalive || 'off'}`);
if (bpf) {
  md.push('', '| BPF program, ns per run | empty | hash only | steer, 0 sessions | steer, 1M sessions |', '|---|---|---|---|---|');
  md.push(`| bpf_stats (scripts/bench-bpf.sh) | ${bpf.empty} | ${bpf.hash_only} | ${bpf.sessions_0} | ${bpf.sessions_1m} |`);
}
const label = { sio_steer: 'sio-steer', nginx_hash: 'nginx hash', socketio_sticky: '@socket.io/sticky', fork: 'PM2 fork ×1' };
for (const load of LOADS) {
  for (const n of WORKERS) {
    md.push('', `**${load}, ${n} worker${n > 1 ? 's' : ''}** (median (min–max) over rounds; CPU in % of one core)`, '');
    md.push('| contender | events/s | HTTP req/s | p50 ms | p99 ms | 400s | clients OK | proxy/primary CPU % | workers CPU % | events per server CPU-s | load.js CPU % | others\' CPU % |');
    md.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const c of CONTENDERS) {
      const s = full[load][n][c];
      if (!s) continue;
      const proxy = c === 'sio_steer'
        ? `${fmt(s.proxy_cpu_pct, 1)}${s.bpf_cpu_pct ? ` + BPF ${fmt(s.bpf_cpu_pct, 2)}` : ''}`
        : c === 'fork' ? '–' : fmt(s.proxy_cpu_pct);
      md.push(`| ${label[c]}${c === 'fork' ? '' : ` ×${n}`} | ${fmt(s.rps)} | ${fmt(s.http_rps)} | ${fmt(s.p50_ms)} | ${fmt(s.p99_ms)} | ${fmt(s.errors)} | ` +
        `${s.clients_ok.median}/${s.clients} | ${proxy} | ${fmt(s.workers_cpu_pct)} | ${fmt(s.events_per_server_cpu_s)} | ${fmt(s.loadgen_cpu_pct)} | ${fmt(s.other_cpu_pct)} |`);
    }
  }
}
const yes = (m) => (m ? 'met' : 'missed');
md.push('', `**goals** (${HEAD} workers, medians)`, '');
if (goals.bpf_le_150ns_at_1m) md.push(`- program ≤ 150 ns per run at 1M sessions: ${goals.bpf_le_150ns_at_1m.value_ns} ns — ${yes(goals.bpf_le_150ns_at_1m.met)}`);
for (const load of LOADS) {
  const g = goals[load];
  if (g.ge_1_3x_nginx_hash) md.push(`- ${load}: ≥ 1.3× nginx hash throughput: ${g.ge_1_3x_nginx_hash.ratio}× — ${yes(g.ge_1_3x_nginx_hash.met)}; ` +
    `lower p99: ${g.p99_below_nginx_hash.sio_steer} vs ${g.p99_below_nginx_hash.nginx_hash} ms — ${yes(g.p99_below_nginx_hash.met)}`);
  if (g.ahead_of_sticky) md.push(`- ${load}: ahead of @socket.io/sticky: ${g.ahead_of_sticky.ratio}× — ${yes(g.ahead_of_sticky.met)}`);
  if (g.vs_fork) md.push(`- ${load}: against PM2 fork mode (1 worker): ${g.vs_fork.ratio}× with ${g.vs_fork.workers} workers`);
}
fs.writeFileSync(path.join(dir, 'summary.md'), md.join('\n') + '\n');
process.stdout.write(md.join('\n') + '\n');

// --- plot data ---
const q = (s, k) => (s?.[k] ? `${s[k].median} ${s[k].min} ${s[k].max}` : 'NaN NaN NaN');
const short = { sio_steer: 'sio-steer', nginx_hash: 'nginx', socketio_sticky: 'sticky', fork: 'fork x1' };
const bars = (k) => CONTENDERS.filter((c) => LOADS.some((l) => full[l][HEAD]?.[c]))
  .map((c) => `"${short[c]}" ${LOADS.map((l) => q(full[l][HEAD]?.[c], k)).join(' ')}`).join('\n') + '\n';
fs.writeFileSync(path.join(dir, 'plot-rps.dat'), `# contender ${LOADS.map((l) => `${l}_median min max`).join(' ')}\n` + bars('rps'));
fs.writeFileSync(path.join(dir, 'plot-p99.dat'), `# contender ${LOADS.map((l) => `${l}_median min max`).join(' ')}\n` + bars('p99_ms'));
for (const load of LOADS) {
  const lines = WORKERS.map((n) => `${n} ${CONTENDERS.map((c) => `${q(full[load][n][c], 'rps')} ${q(full[load][n][c], 'p99_ms')}`).join(' ')}`);
  fs.writeFileSync(path.join(dir, `plot-workers-${load}.dat`),
    `# workers ${CONTENDERS.map((c) => `${c}:rps(med min max) p99(med min max)`).join(' ')}\n` + lines.join('\n') + '\n');
}
fs.writeFileSync(path.join(dir, 'plot-meta.gp'),
  `loads = "${LOADS.join(' ')}"\nheadline = ${HEAD}\nmachine = "${run.machine.replace(/"/g, "'")}"\n` +
  `nworkers = ${WORKERS.length}\nrounds = ${run.rounds}\n`);
