// Summarizes a `scripts/bench.sh --behind-nginx` run: medians and min-max over rounds per contender
// and load, the deploy runs, the issue's goals met or not, data files for plots-nginx.gp, and the
// JSON object the benchmark prints last.
//   node report-nginx.js OUT_DIR
// Reads OUT_DIR/run.json, results.jsonl, deploy.jsonl. Writes OUT_DIR/summary.json, summary.md (the
// tables, as in docs/benchmarks.md), plot-nginx-*.dat; prints summary.md.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const [dir] = process.argv.slice(2);
const read = (f) => fs.readFileSync(path.join(dir, f), 'utf8');
const lines = (f) => { try { return read(f).split('\n').filter(Boolean).map((l) => JSON.parse(l)); } catch { return []; } };
const run = JSON.parse(read('run.json'));
const rows = lines('results.jsonl');
const deploys = lines('deploy.jsonl');
const ALL = ['sio_steer', 'sio_steer_fork', 'sio_steer_bind', 'nginx_hash_keepalive', 'nginx_ip_hash', 'socketio_pm2', 'fork'];
const CONTENDERS = ALL.filter((c) => rows.some((r) => r.contender === c) || deploys.some((d) => d.contender === c));
const LOADS = ['polling', 'upgrade', 'polling_close'].filter((l) => rows.some((r) => r.load === l));
const label = {
  sio_steer: 'sio-steer, --key destination', sio_steer_fork: 'sio-steer, --key destination, PM2 fork mode', sio_steer_bind: 'sio-steer, proxy_bind (--key address)',
  nginx_hash_keepalive: 'nginx hash + keepalive 32', nginx_ip_hash: 'nginx ip_hash', socketio_pm2: '@socket.io/pm2',
  fork: 'PM2 fork ×1',
};
const short = {
  sio_steer: 'sio-steer dest', sio_steer_fork: 'sio-steer fork', sio_steer_bind: 'sio-steer bind', nginx_hash_keepalive: 'hash+keepalive',
  nginx_ip_hash: 'ip_hash', socketio_pm2: '@socket.io/pm2', fork: 'fork x1',
};

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const stat = (xs) => {
  const a = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
  return a.length ? { median: +median(a).toFixed(3), min: Math.min(...a), max: Math.max(...a), n: a.length } : null;
};

// events of the whole run (events_per_server_cpu_s is computed over them and the server CPU)
const eventsTotal = (r) => (r.events_per_server_cpu_s ?? 0) * (r.cpu_s.workers + r.cpu_s.proxy + r.cpu_s.redis);
const msPerKEvent = (r, cpu) => (eventsTotal(r) > 0 ? (1e6 * cpu) / eventsTotal(r) : null);

function summarize(c, load) {
  const rs = rows.filter((r) => r.contender === c && r.load === load);
  if (!rs.length) return null;
  const f = (k) => stat(rs.map(k));
  return {
    // CPU milliseconds per 1,000 events delivered: where the time goes, per process group
    workers_ms_per_kevent: f((r) => msPerKEvent(r, r.cpu_s.workers)),
    nginx_ms_per_kevent: f((r) => msPerKEvent(r, r.cpu_s.nginx ?? 0)),
    router_ms_per_kevent: f((r) => msPerKEvent(r, r.cpu_s.proxy - (r.cpu_s.nginx ?? 0))),
    upstream_conns_per_krequest: f((r) => (r.tcp_passive_opens != null && r.requests_per_s > 0
      ? (1000 * Math.max(0, r.tcp_passive_opens - r.tcp_connections)) / (r.requests_per_s * r.window_s) : null)),
    rps: f((r) => r.events_per_s), http_rps: f((r) => r.requests_per_s),
    p50_ms: f((r) => r.p50_ms), p99_ms: f((r) => r.p99_ms),
    errors: f((r) => r.errors), clients_ok: f((r) => r.clients_ok), clients: rs[0].clients,
    workers: rs[0].workers,
    nginx_cpu_pct: f((r) => (100 * (r.cpu_s.nginx ?? 0)) / r.wall_s),
    router_cpu_pct: f((r) => (100 * (r.cpu_s.proxy - (r.cpu_s.nginx ?? 0))) / r.wall_s),
    workers_cpu_pct: f((r) => (100 * r.cpu_s.workers) / r.wall_s),
    redis_cpu_pct: f((r) => (100 * r.cpu_s.redis) / r.wall_s),
    loadgen_cpu_pct: f((r) => (100 * r.loadgen_cpu_s) / r.wall_s),
    other_cpu_pct: f((r) => (100 * r.other_cpu_s) / r.wall_s),
    events_per_server_cpu_s: f((r) => r.events_per_server_cpu_s),
    tcp_connections: f((r) => r.tcp_connections),
    // connections accepted by nginx and by the workers: minus the clients' own, those nginx opened
    upstream_connections: f((r) => (r.tcp_passive_opens != null ? Math.max(0, r.tcp_passive_opens - r.tcp_connections) : null)),
    bpf_runs: f((r) => r.bpf?.run_cnt ?? null),
    load_average: rs.map((r) => r.load_average?.start ?? null),
    clients_per_worker: rs.map((r) => r.clients_per_worker),
    rounds: rs.length,
  };
}

const full = {};
for (const load of LOADS) {
  full[load] = {};
  for (const c of CONTENDERS) { const s = summarize(c, load); if (s) full[load][c] = s; }
}
const flat = (s) => s && {
  rps: Math.round(s.rps.median), p99_ms: s.p99_ms?.median ?? null, errors: s.errors.median,
  p50_ms: s.p50_ms?.median ?? null, http_rps: Math.round(s.http_rps.median),
  rps_min: s.rps.min, rps_max: s.rps.max, p99_min: s.p99_ms?.min ?? null, p99_max: s.p99_ms?.max ?? null,
  clients_ok: s.clients_ok.median, clients: s.clients, workers: s.workers,
  nginx_cpu_pct: Math.round(s.nginx_cpu_pct.median), router_cpu_pct: +s.router_cpu_pct.median.toFixed(1),
  workers_cpu_pct: Math.round(s.workers_cpu_pct.median), other_cpu_pct: Math.round(s.other_cpu_pct.median),
  events_per_server_cpu_s: s.events_per_server_cpu_s?.median ?? null, rounds: s.rounds,
  upstream_connections: s.upstream_connections?.median ?? null,
  load_average: s.load_average,
};
const out = { behind_nginx: {}, deploy: {} };
for (const load of LOADS) {
  out.behind_nginx[load] = {};
  for (const c of CONTENDERS) if (full[load][c]) out.behind_nginx[load][c] = flat(full[load][c]);
}
const deployFields = (d) => d && {
  failed_requests: d.failed_requests, http_400: d.http_400, disconnects: d.disconnects, acks_lost: d.acks_lost,
  max_gap_ms: d.max_gap_ms, reconnects: d.reconnects, http_errors: d.http_errors, clients_ok: d.clients_ok,
  clients: d.clients, action_s: d.action_s, load_average: d.load_average?.start ?? null,
};
for (const c of CONTENDERS) {
  const reload = deploys.find((d) => d.contender === c && d.action === 'reload');
  const kill = deploys.find((d) => d.contender === c && d.action === 'sigkill');
  if (reload || kill) out.deploy[c] = { ...(deployFields(reload) ?? {}), ...(kill ? { sigkill: deployFields(kill) } : {}) };
}

// the issue's goals: sio-steer (destination mode) against nginx hash + keepalive, same run, medians
const ratio = (a, b) => (a && b ? +(a / b).toFixed(2) : null);
const goals = {};
for (const load of LOADS) {
  const A = out.behind_nginx[load].sio_steer, B = out.behind_nginx[load].nginx_hash_keepalive;
  if (!A || !B) continue;
  const need = load === 'polling_close' ? 0.9 : 1;
  goals[load] = {
    ratio: ratio(A.rps, B.rps), need, met: A.rps >= need * B.rps,
    p99_ms: { sio_steer: A.p99_ms, nginx_hash_keepalive: B.p99_ms, met: A.p99_ms <= B.p99_ms },
  };
}
if (out.deploy.sio_steer) {
  const d = out.deploy.sio_steer;
  goals.deploy = { failed_requests: d.failed_requests, http_400: d.http_400, met: d.failed_requests === 0 && d.http_400 === 0 };
}
out.goals = goals;
out.workers = run.workers;
out.rounds = run.rounds;
out.load_at_start = run.load_at_start;
out.rps_unit = 'Socket.IO events delivered to the clients per second (acks, dm, unread, typing, room broadcasts)';
fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(out) + '\n');
fs.writeFileSync(path.join(dir, 'summary-full.json'), JSON.stringify({ run, full, deploys }, null, 1) + '\n');

// --- tables (markdown) ---
const fmt = (s, d = 0) => (s ? (s.n > 1 ? `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})` : s.median.toFixed(d)) : '–');
const md = [];
md.push(`machine: ${run.machine}; ${run.versions}; load average at start ${run.load_at_start}${run.scheduler ? `; scheduler: ${run.scheduler}` : ''}`);
md.push(`${run.quick ? 'quick' : 'full'} run behind nginx (TLS): ${run.rounds} round(s), ${run.workers} workers, ${run.clients} clients ` +
  `from ${run.loadgens} load.js processes, ${run.duration_s} s of closed-loop messaging per load; deploy runs ` +
  `${run.deploy_duration_s} s, workers drain for ${run.drain_ms} ms`);
for (const load of LOADS) {
  md.push('', `**${load}, behind nginx** (median (min–max) over rounds; CPU in % of one core)`, '');
  md.push('| contender | events/s | HTTP req/s | p50 ms | p99 ms | 400s | clients OK | nginx CPU % | controller/router CPU % | workers CPU % | events per server CPU-s | TCP conns clients → nginx | nginx → workers | others\' CPU % | load avg |');
  md.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const c of CONTENDERS) {
    const s = full[load][c];
    if (!s) continue;
    md.push(`| ${label[c]}${c === 'fork' ? '' : ` ×${s.workers}`} | ${fmt(s.rps)} | ${fmt(s.http_rps)} | ${fmt(s.p50_ms)} | ${fmt(s.p99_ms)} | ${fmt(s.errors)} | ` +
      `${s.clients_ok.median}/${s.clients} | ${fmt(s.nginx_cpu_pct)} | ${fmt(s.router_cpu_pct, 1)} | ${fmt(s.workers_cpu_pct)} | ` +
      `${fmt(s.events_per_server_cpu_s)} | ${fmt(s.tcp_connections)} | ${fmt(s.upstream_connections)} | ${fmt(s.other_cpu_pct)} | ${s.load_average.filter(Boolean).map((l) => l.split(' ')[0]).join(', ')} |`);
  }
}
md.push('', '**where the time goes** (CPU ms per 1,000 events delivered, medians; nginx → workers: connections nginx opened per 1,000 client requests, long-polling loads)', '');
md.push(`| contender | ${LOADS.map((l) => `${l}: workers / nginx / controller or router`).join(' | ')} | ${LOADS.filter((l) => l !== 'upgrade').map((l) => `${l}: nginx → workers per 1,000 requests`).join(' | ')} |`);
md.push(`|---|${LOADS.map(() => '---').join('|')}|${LOADS.filter((l) => l !== 'upgrade').map(() => '---').join('|')}|`);
for (const c of CONTENDERS) {
  const cell = (l) => { const s = full[l][c]; return s ? `${fmt(s.workers_ms_per_kevent)} / ${fmt(s.nginx_ms_per_kevent)} / ${fmt(s.router_ms_per_kevent)}` : '–'; };
  const conns = (l) => fmt(full[l][c]?.upstream_conns_per_krequest);
  md.push(`| ${label[c]} | ${LOADS.map(cell).join(' | ')} | ${LOADS.filter((l) => l !== 'upgrade').map(conns).join(' | ')} |`);
}
if (Object.keys(out.deploy).length) {
  md.push('', `**deploy under load** (${run.clients} clients, half long-polling, half WebSocket; \`pm2 reload\` 6 s in, then in a second run one worker SIGKILLed)`, '');
  md.push('| contender | action | took s | failed requests | of which 400 | other statuses | disconnects | reconnects | acks lost | longest without an ack, ms | clients OK | load avg |');
  md.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const c of CONTENDERS) {
    for (const d of deploys.filter((x) => x.contender === c)) {
      const other = Object.entries(d.http_errors || {}).filter(([k]) => k !== '400').map(([k, n]) => `${n}×${k}`).join(' ') || '0';
      md.push(`| ${label[c]} | ${d.action === 'reload' ? 'pm2 reload' : 'SIGKILL'} | ${d.action_s} | ${d.failed_requests} | ${d.http_400} | ${other} | ` +
        `${d.disconnects} | ${d.reconnects} | ${d.acks_lost} | ${d.max_gap_ms} | ${d.clients_ok}/${d.clients} | ${(d.load_average?.start ?? '').split(' ')[0]} |`);
    }
  }
}
md.push('', `**goals** (sio-steer --key destination against nginx hash + keepalive, ${run.workers} workers, medians, same run)`, '');
const yes = (m) => (m ? 'met' : 'missed');
for (const load of LOADS) {
  const g = goals[load];
  if (!g) continue;
  md.push(`- ${load}: throughput ≥ ${g.need}× : ${g.ratio}× — ${yes(g.met)}; p99 no worse: ${g.p99_ms.sio_steer} vs ${g.p99_ms.nginx_hash_keepalive} ms — ${yes(g.p99_ms.met)}`);
}
if (goals.deploy) md.push(`- pm2 reload under load: 0 failed requests and 0 × 400: ${goals.deploy.failed_requests} failed, ${goals.deploy.http_400} × 400 — ${yes(goals.deploy.met)}`);
fs.writeFileSync(path.join(dir, 'summary.md'), md.join('\n') + '\n');
process.stdout.write(md.join('\n') + '\n');

// --- plot data ---
const q = (s, k) => (s?.[k] ? `${s[k].median} ${s[k].min} ${s[k].max}` : 'NaN NaN NaN');
const bars = (k) => CONTENDERS.filter((c) => LOADS.some((l) => full[l][c]))
  .map((c) => `"${short[c]}" ${LOADS.map((l) => q(full[l][c], k)).join(' ')}`).join('\n') + '\n';
fs.writeFileSync(path.join(dir, 'plot-nginx-rps.dat'), `# contender ${LOADS.map((l) => `${l}_median min max`).join(' ')}\n` + bars('rps'));
fs.writeFileSync(path.join(dir, 'plot-nginx-p99.dat'), `# contender ${LOADS.map((l) => `${l}_median min max`).join(' ')}\n` + bars('p99_ms'));
for (const action of ['reload', 'sigkill']) {
  fs.writeFileSync(path.join(dir, `plot-nginx-deploy-${action}.dat`),
    '# contender failed_requests max_gap_ms disconnects\n' +
    CONTENDERS.map((c) => {
      const d = deploys.find((x) => x.contender === c && x.action === action);
      return d ? `"${short[c]}" ${d.failed_requests} ${d.max_gap_ms} ${d.disconnects}` : null;
    }).filter(Boolean).join('\n') + '\n');
}
fs.writeFileSync(path.join(dir, 'plot-nginx-meta.gp'),
  `loads = "${LOADS.join(' ')}"\nworkers = ${run.workers}\nmachine = "${run.machine.replace(/"/g, "'")}"\n` +
  `rounds = ${run.rounds}\nload_at_start = "${run.load_at_start}"\n`);
