// The one report module of bench/run.sh (scripts/bench.sh): every figure the benchmark publishes is
// computed here, from what the run measured.
//   node report.js record META PREFIX...   one measurement as one JSON line: META (bench/lib.sh's
//                                          measure_once: CPU of each process class over the window,
//                                          the level, the contender's settings) with the summaries of
//                                          the load.js processes that ran side by side (PREFIX.json,
//                                          their raw latencies PREFIX.{delivery,ack}.f32) merged
//   node report.js deploy META PREFIX...   one deploy run as one JSON line: what the clients saw
//   node report.js summary OUT_DIR         the tables (stdout, OUT_DIR/summary.md), OUT_DIR/summary.json
//                                          (the object bench/run.sh prints last), plot data
//   node report.js compare DIR_A DIR_B     do two runs agree within ±5 %? (exit 0 either way)
// summary.json: {run, contenders: {id: {label, settings}}, reference, results: {load: {level:
// {contender: {events_per_s, events_per_server_cpu_s, server_us_per_event, us_per_event: {...}, p50_ms,
// p99_ms, ...}}}}, comparisons: {load: {level: {contender: {server_cpu, p50, p99: {per_round, median,
// min, max, verdict}}}}}, goals, deploy: {contender: {reload, sigkill}}, bpf_ns}.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

let write = (s) => process.stdout.write(s); // report() below collects it instead

const LABEL = {
  sio_steer: 'sio-steer', sio_steer_fork: 'sio-steer, PM2 fork mode', sio_steer_bind: 'sio-steer, proxy_bind (--key address)',
  nginx_hash_tuned: 'nginx hash, tuned', nginx_ip_hash: 'nginx ip_hash, tuned',
  nginx_hash_tutorial: 'nginx hash + keepalive 32, as tutorials write it', socketio_pm2: '@socket.io/pm2',
  socketio_sticky: '@socket.io/sticky', fork: 'PM2 fork ×1',
};
const ORDER = Object.keys(LABEL);
const CLASSES = ['workers', 'nginx', 'controller', 'pm2', 'redis', 'loadgen'];
const SERVER = ['workers', 'nginx', 'controller', 'pm2']; // what serving costs; Redis and load.js apart
const AGREE = 0.05; // two runs agree when every median is within ±5 % of the other run's

const readLines = (f) => { try { return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)); } catch { return []; } };
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const finite = (xs) => xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
const stat = (xs) => {
  const a = finite(xs);
  return a.length ? { median: +median(a).toFixed(4), min: Math.min(...a), max: Math.max(...a), n: a.length } : null;
};
const r2 = (x) => (x === null || x === undefined ? null : +x.toFixed(2));
const loadgenRuns = (prefixes) => prefixes.map((p) => ({ p, j: JSON.parse(fs.readFileSync(`${p}.json`, 'utf8')) }));
const sumOf = (runs) => (f) => runs.reduce((a, { j }) => a + (f(j) || 0), 0);

// --- record --------------------------------------------------------------------------------------
function record(meta, prefixes) {
  const runs = loadgenRuns(prefixes);
  const sum = sumOf(runs);
  const samples = (kind) => {
    const parts = runs.map(({ p }) => { const b = fs.readFileSync(`${p}.${kind}.f32`); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); });
    const all = new Float32Array(parts.reduce((a, x) => a + x.length, 0));
    let at = 0;
    for (const x of parts) { all.set(x, at); at += x.length; }
    return all.sort();
  };
  const pct = (s, p) => (s.length ? +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(1) : null);
  const delivery = samples('delivery'), ack = samples('ack');
  // The rate of the steady phase: in an open loop the clients start within one interval of the
  // phase's start (half an interval of events missing on average), in a closed loop at once.
  const rate = sum((j) => {
    const w = j.rate.window_ms - Math.min(meta.interval_ms, j.rate.window_ms / 2) / 2;
    return w > 0 ? (1000 * j.rate.events) / w : 0;
  });
  const c = meta.cpu_s;
  const events = rate * meta.window_s; // delivered within the CPU window
  const server = SERVER.reduce((a, k) => a + c[k], 0);
  c.others = r2(c.machine - CLASSES.reduce((a, k) => a + c[k], 0));
  const us = (x) => (events > 0 ? +((1e6 * x) / events).toFixed(2) : null);
  const cpus = os.cpus().length;
  const out = {
    ...meta,
    events_per_s: Math.round(rate),
    saturated: meta.offered_events_per_s ? rate < 0.95 * meta.offered_events_per_s : null,
    events_in_window: Math.round(events),
    server_cpu_s: r2(server),
    server_us_per_event: us(server),
    events_per_server_cpu_s: server > 0 ? Math.round(events / server) : null,
    us_per_event: Object.fromEntries(CLASSES.map((k) => [k, us(c[k])])),
    loadgen_share_pct: r2((100 * c.loadgen) / (meta.window_s * cpus)),
    machine_busy_pct: r2((100 * c.machine) / (meta.window_s * cpus)),
    requests_per_s: sum((j) => j.rate.requests_per_s),
    // TCP connections accepted (by nginx or the workers) per 1,000 HTTP requests the clients made, in
    // the window: how often an upstream connection is opened
    accepted_per_krequest: null,
    messages_per_s: sum((j) => j.rate.messages_per_s),
    p50_ms: pct(delivery, 50), p99_ms: pct(delivery, 99), ack_p50_ms: pct(ack, 50), ack_p99_ms: pct(ack, 99),
    latency_samples: delivery.length,
    clients: sum((j) => j.clients), clients_ok: sum((j) => j.clients_ok),
    errors: sum((j) => j.http_400), session_unknown_400: sum((j) => j.session_unknown_400),
    failed_requests: sum((j) => j.failed_requests), connect_errors: sum((j) => j.connect_errors),
    disconnects: sum((j) => j.disconnects), tcp_connections: sum((j) => j.tcp_connections),
    timed_out: runs.some(({ j }) => j.timed_out),
    clients_per_worker: (() => {
      const m = new Map();
      for (const { j } of runs) for (const w of j.workers) m.set(w.pid, (m.get(w.pid) || 0) + w.clients);
      return [...m.values()].sort((a, b) => b - a);
    })(),
  };
  const requests = out.requests_per_s * meta.window_s;
  out.accepted_per_krequest = requests > 0 && meta.tcp_accepted_in_window !== undefined ? r2((1000 * meta.tcp_accepted_in_window) / requests) : null;
  write(JSON.stringify(out) + '\n');
}

// --- deploy --------------------------------------------------------------------------------------
const DEPLOY_SUMS = ['clients', 'clients_ok', 'failed_requests', 'http_400', 'session_unknown_400', 'resets', 'connect_errors',
  'disconnects', 'disconnects_polling', 'disconnects_upgrade', 'reconnects', 'recovered', 'handovers',
  'acks_lost', 'acks_lost_polling', 'acks_lost_upgrade', 'events_missed', 'events_duplicated',
  'clients_unaffected', 'clients_unaffected_polling', 'clients_unaffected_upgrade'];
function deploy(meta, prefixes) {
  const runs = loadgenRuns(prefixes);
  const sum = sumOf(runs);
  const out = { ...meta };
  for (const k of DEPLOY_SUMS) out[k] = sum((j) => j[k]);
  out.clients_polling = sum((j) => j.polling);
  out.clients_upgrade = sum((j) => j.upgrade);
  out.acks_expected = sum((j) => j.acks.expected);
  out.http_errors = {};
  for (const { j } of runs) for (const [k, n] of Object.entries(j.http_errors || {})) out.http_errors[k] = (out.http_errors[k] || 0) + n;
  out.max_gap_ms = Math.max(...runs.map(({ j }) => j.max_gap_ms));
  out.events_per_s = sum((j) => j.rate.events_per_s);
  write(JSON.stringify(out) + '\n');
}

// --- summary -------------------------------------------------------------------------------------
// verdict RATIOS WHAT: how a contender compares with the reference, from the per-round ratios
function verdict(ratios, [less, more]) {
  const a = finite(ratios);
  if (!a.length) return null;
  const m = median(a), lo = Math.min(...a), hi = Math.max(...a);
  const pct = (x) => `${Math.abs(100 * (x - 1)).toFixed(1)} %`;
  if (a.length === 1) return `${pct(m)} ${m <= 1 ? less : more} (one round: no spread to judge noise by)`;
  if (lo <= 1 && hi >= 1) return `within noise (the rounds disagree: ${lo.toFixed(3)}–${hi.toFixed(3)})`;
  return `${pct(m)} ${hi < 1 ? less : more} (every one of ${a.length} rounds)`;
}
const ratioStat = (ratios, words) => {
  const s = stat(ratios);
  return s && { per_round: ratios.map((x) => (x === null ? null : +x.toFixed(3))), median: +s.median.toFixed(3), min: +s.min.toFixed(3), max: +s.max.toFixed(3), verdict: verdict(ratios, words) };
};

function summarize(dir) {
  const run = JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8'));
  const rows = readLines(path.join(dir, 'results.jsonl'));
  const calib = readLines(path.join(dir, 'calibration.jsonl'));
  const deploys = readLines(path.join(dir, 'deploy.jsonl'));
  let bpf = null;
  try { bpf = JSON.parse(fs.readFileSync(path.join(dir, 'bpf.json'), 'utf8')).bpf_ns; } catch { /* direct runs only */ }
  const behind = run.mode === 'behind_nginx';
  const label = (c) => (c === 'sio_steer' && behind ? 'sio-steer, --key destination' : LABEL[c]);
  const seen = (c) => rows.some((r) => r.contender === c) || deploys.some((d) => d.contender === c);
  const CONT = ORDER.filter(seen);
  const REF = run.reference;
  const LOADS = run.loads.filter((l) => rows.some((r) => r.load === l));
  const LEVELS = run.levels.filter((v) => rows.some((r) => r.level === v));
  const pick = (c, l, v) => rows.filter((r) => r.contender === c && r.load === l && r.level === v);
  const source = `command \`${run.command}\`, commit ${run.commit}, ${run.date}${run.quick ? ' (--quick: a smoke run, not figures to publish)' : ''}`;

  const contenders = {};
  for (const c of CONT) {
    const s = rows.find((r) => r.contender === c)?.settings ?? deploys.find((d) => d.contender === c)?.settings ?? '';
    contenders[c] = { label: label(c), settings: `${s}; ${run.adapter}` };
  }
  const results = {}, full = {}, comparisons = {};
  for (const l of LOADS) {
    results[l] = {}; full[l] = {}; comparisons[l] = {};
    for (const v of LEVELS) {
      results[l][v] = {}; full[l][v] = {}; comparisons[l][v] = {};
      for (const c of CONT) {
        const rs = pick(c, l, v);
        if (!rs.length) continue;
        const f = (k) => stat(rs.map(k));
        const s = {
          offered: rs[0].offered_events_per_s, rate: f((r) => r.events_per_s), server_us: f((r) => r.server_us_per_event),
          per_server_cpu_s: f((r) => r.events_per_server_cpu_s),
          classes: Object.fromEntries(CLASSES.map((k) => [k, f((r) => r.us_per_event[k])])),
          p50: f((r) => r.p50_ms), p99: f((r) => r.p99_ms), ack_p99: f((r) => r.ack_p99_ms),
          errors: f((r) => r.errors), ok: f((r) => r.clients_ok), clients: rs[0].clients,
          loadgen_share: f((r) => r.loadgen_share_pct), accepted: f((r) => r.accepted_per_krequest), held: f((r) => r.worker_connections), others_pct: f((r) => (100 * r.cpu_s.others) / r.window_s),
          saturated: rs.filter((r) => r.saturated).length, rounds: rs.length,
          by_round: Object.fromEntries(rs.map((r) => [r.round, r])),
        };
        full[l][v][c] = s;
        results[l][v][c] = {
          offered_events_per_s: s.offered, events_per_s: Math.round(s.rate.median),
          events_per_server_cpu_s: s.per_server_cpu_s ? Math.round(s.per_server_cpu_s.median) : null, server_us_per_event: s.server_us?.median ?? null,
          server_us_per_event_min: s.server_us?.min ?? null, server_us_per_event_max: s.server_us?.max ?? null,
          us_per_event: Object.fromEntries(CLASSES.map((k) => [k, s.classes[k]?.median ?? null])),
          p50_ms: s.p50?.median ?? null, p99_ms: s.p99?.median ?? null, ack_p99_ms: s.ack_p99?.median ?? null,
          errors: s.errors.median, clients_ok: s.ok.median, clients: s.clients,
          loadgen_share_pct: s.loadgen_share?.median ?? null, others_cpu_pct: r2(s.others_pct?.median ?? null),
          connections_accepted_per_krequest: s.accepted?.median ?? null, worker_connections: s.held?.median ?? null,
          saturated_rounds: s.saturated, rounds: s.rounds,
          per_round: { server_us_per_event: rs.map((r) => r.server_us_per_event), p99_ms: rs.map((r) => r.p99_ms) },
        };
      }
      const ref = full[l][v][REF];
      for (const c of CONT) {
        const s = full[l][v][c];
        if (!s || !ref || c === REF) continue;
        const rounds = Object.keys(s.by_round).filter((k) => ref.by_round[k]).sort((a, b) => a - b);
        const ratio = (k) => rounds.map((r) => {
          const a = s.by_round[r][k], b = ref.by_round[r][k];
          return a !== null && b ? a / b : null;
        });
        comparisons[l][v][c] = {
          rounds: rounds.map(Number),
          server_cpu: ratioStat(ratio('server_us_per_event'), ['less CPU per event', 'more CPU per event']),
          p50: ratioStat(ratio('p50_ms'), ['lower p50', 'higher p50']),
          p99: ratioStat(ratio('p99_ms'), ['lower p99', 'higher p99']),
        };
      }
    }
  }
  // the goal of issue 22: sio-steer's server CPU per event <= the reference's, latency no worse
  const goals = {};
  for (const l of LOADS.filter((x) => x === 'polling' || x === 'upgrade')) {
    for (const v of LEVELS) {
      const k = comparisons[l]?.[v]?.sio_steer;
      if (!k?.server_cpu) continue;
      const judge = (x) => (x.per_round.length < 2 ? `not judged (one round: ${x.median <= 1 ? 'at or below' : 'above'} 1)`
        : x.median <= 1 ? 'met' : x.min <= 1 ? 'missed by the median, within noise' : 'missed');
      goals[`${l}_${v}`] = {
        server_cpu_per_event_le_reference: { ratio: k.server_cpu.median, verdict: judge(k.server_cpu) },
        p99_no_worse: k.p99 ? { ratio: k.p99.median, verdict: judge(k.p99) } : null,
      };
    }
  }
  const deploy = {};
  for (const d of deploys) (deploy[d.contender] ??= {})[d.action] = d;
  const saturation = { ...(run.saturation || {}) };
  const out = {
    mode: run.mode,
    run: { command: run.command, commit: run.commit, date: run.date, machine: run.machine, versions: run.versions, adapter: run.adapter,
      scheduler: run.scheduler, load_at_start: run.load_at_start, rounds: run.rounds, workers: run.workers, clients: run.clients,
      loadgens: run.loadgens, duration_s: run.duration_s, levels: run.levels, saturation_events_per_s: saturation, quick: run.quick },
    contenders, reference: REF, results, comparisons, goals, deploy, bpf_ns: bpf,
    units: { events: 'Socket.IO events delivered to the clients (acks, dm, unread, typing, room broadcasts)',
      server: 'workers + nginx + controller or router + PM2 daemon (Redis and the load generators apart)' },
  };
  fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(out) + '\n');

  // --- tables (markdown) ---
  const n0 = (x) => (x === null || x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));
  const n1 = (x) => (x === null || x === undefined ? '–' : x.toFixed(1));
  const rng = (s, f = n1) => (s ? (s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median)) : '–');
  const md = [];
  const src = () => md.push('', `<sub>${source}</sub>`);
  md.push(`${run.mode === 'behind_nginx' ? 'Behind nginx (TLS)' : 'Direct'}, ${source}.`, '');
  md.push(`Machine: ${run.machine}; load average at start ${run.load_at_start}; ${run.scheduler}.`, '');
  md.push(`Software: ${run.versions}; every contender with the ${run.adapter}.`, '');
  md.push(`Method: ${run.clients} clients from ${run.loadgens} load.js, ${run.workers} workers; 100 % = what the machine sustains ` +
    `in a closed loop with ${label(REF)} (${Object.entries(saturation).map(([k, x]) => `${k} ${n0(x)}`).join(', ')} events/s` +
    `${calib.length ? ', measured at the start of this run' : ', given with --saturation'}); open loop at ${run.levels.join(', ')} % of it ` +
    `(\`max\`: the closed loop), ${run.rounds} round(s), contenders in a rotating order, ${run.duration_s} s per measurement; ` +
    'CPU read over a window inside the messaging phase, per process class (schedstat). Server CPU = workers + nginx + controller or router + PM2 daemon.');
  md.push('', '**Contenders**', '', '| contender | id | configured as |', '|---|---|---|');
  for (const c of CONT) md.push(`| ${contenders[c].label} | \`${c}\` | ${contenders[c].settings} |`);
  const broken = CONT.filter((c) => rows.some((r) => r.contender === c) && rows.filter((r) => r.contender === c).every((r) => !r.clients_ok && !r.events_per_s));
  if (broken.length) md.push('', `**No client got a session** with ${broken.map((c) => contenders[c].label).join(', ')}: broken, not slow; left out of the rest of the run after its first measurement.`);
  out.no_session = broken;
  fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(out) + '\n');
  src();
  for (const l of LOADS) {
    md.push('', `**${l}**: medians over rounds (min–max where more than one); CPU in µs per event delivered; share of the machine in % of all ${run.cpus} CPUs`, '');
    md.push('| contender | level | offered events/s | delivered events/s | server CPU µs/event | workers | nginx | controller/router | PM2 daemon | Redis | load.js | events per server CPU-s | p50 ms | p99 ms | ack p99 ms | 400s | clients OK | connections the workers hold | accepted per 1,000 requests | load.js share % | others\' CPU % of a core |');
    md.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const v of LEVELS) {
      for (const c of CONT) {
        const s = full[l][v][c];
        if (!s) continue;
        const cls = (k) => n1(s.classes[k]?.median ?? null);
        md.push(`| ${contenders[c].label} | ${v === 'max' ? 'max' : `${v} %`} | ${n0(s.offered)} | ${rng(s.rate, n0)}${s.saturated ? ` (below the offered rate in ${s.saturated} of ${s.rounds})` : ''} | ` +
          `${rng(s.server_us, n1)} | ${cls('workers')} | ${cls('nginx')} | ${cls('controller')} | ${cls('pm2')} | ${cls('redis')} | ${cls('loadgen')} | ` +
          `${rng(s.per_server_cpu_s, n0)} | ${rng(s.p50, n1)} | ${rng(s.p99, n1)} | ${rng(s.ack_p99, n1)} | ${n0(s.errors.median)} | ${s.ok.median}/${s.clients} | ${n0(s.held?.median ?? null)} | ${n1(s.accepted?.median ?? null)} | ` +
          `${n1(s.loadgen_share?.median ?? null)} | ${n1(s.others_pct?.median ?? null)} |`);
      }
    }
    src();
  }
  md.push('', `**Against ${label(REF)}** (\`${REF}\`), round by round in the same run: each round's ratio contender / reference`, '');
  md.push('| load | level | contender | server CPU per event, per round | median (min–max) | verdict | p99, per round | median | verdict |');
  md.push('|---|---|---|---|---|---|---|---|---|');
  for (const l of LOADS) for (const v of LEVELS) for (const c of CONT) {
    const k = comparisons[l][v][c];
    if (!k?.server_cpu) continue;
    const pr = (x) => (x ? x.per_round.map((y) => (y === null ? '–' : y.toFixed(3))).join(' · ') : '–');
    md.push(`| ${l} | ${v === 'max' ? 'max' : `${v} %`} | ${contenders[c].label} | ${pr(k.server_cpu)} | ${k.server_cpu.median.toFixed(3)} (${k.server_cpu.min.toFixed(3)}–${k.server_cpu.max.toFixed(3)}) | ` +
      `${k.server_cpu.verdict} | ${pr(k.p99)} | ${k.p99 ? k.p99.median.toFixed(3) : '–'} | ${k.p99?.verdict ?? '–'} |`);
  }
  src();
  if (Object.keys(goals).length) {
    md.push('', `**Goal** (issue 22): sio-steer's server CPU per event ≤ ${label(REF)}'s, p99 no worse, on polling and upgrade`, '');
    for (const [k, g] of Object.entries(goals))
      md.push(`- ${k.replace('_', ' at ')}${/\d$/.test(k) ? ' %' : ''}: CPU per event ${g.server_cpu_per_event_le_reference.ratio}× — ${g.server_cpu_per_event_le_reference.verdict}; ` +
        `p99 ${g.p99_no_worse?.ratio ?? '–'}× — ${g.p99_no_worse?.verdict ?? 'not measured'}`);
    src();
  }
  if (deploys.length) {
    const d0 = deploys[0];
    md.push('', `**Deploy under load** (${run.clients} clients, half long-polling, half WebSocket, a message every ${run.deploy_interval_ms} ms each; ` +
      `\`pm2 reload\` 6 s in, then in a second run one worker SIGKILLed; workers drain for ${run.drain_ms} ms; ${run.deploy_duration_s} s of messaging)`, '');
    md.push('| contender | action | took s | failed requests | of which 400 | other statuses | disconnects polling / upgrade | acks lost polling / upgrade | events missed / duplicated | longest without an ack, ms | clients OK | clients unaffected (polling / upgrade) | sessions handed over | reconnects recovered |');
    md.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const c of CONT) for (const d of deploys.filter((x) => x.contender === c)) {
      const other = Object.entries(d.http_errors || {}).filter(([k]) => k !== '400').map(([k, n]) => `${n}×${k}`).join(' ') || '0';
      md.push(`| ${contenders[c].label} | ${d.action === 'reload' ? 'pm2 reload' : 'SIGKILL'} | ${d.action_s}${d.outlasted_phase ? ' (outlasted the phase: not all counted)' : ''} | ${d.failed_requests} | ${d.http_400} | ${other} | ` +
        `${d.disconnects_polling} / ${d.disconnects_upgrade} | ${d.acks_lost_polling} / ${d.acks_lost_upgrade} | ${d.events_missed} / ${d.events_duplicated} | ` +
        `${d.max_gap_ms} | ${d.clients_ok}/${d.clients} | ${d.clients_unaffected}/${d.clients} (${d.clients_unaffected_polling} / ${d.clients_unaffected_upgrade}) | ${d.handovers} | ${d.recovered}/${d.reconnects} |`);
    }
    if (d0) src();
  }
  if (bpf) {
    md.push('', '**BPF program, ns per run** (scripts/bench-bpf.sh)', '', '| empty | hash only | steer, 0 sessions | steer, 1M sessions |', '|---|---|---|---|');
    md.push(`| ${bpf.empty} | ${bpf.hash_only} | ${bpf.sessions_0} | ${bpf.sessions_1m} |`);
    src();
  }
  fs.writeFileSync(path.join(dir, 'summary.md'), md.join('\n') + '\n');
  write(md.join('\n') + '\n');

  // --- plot data: per load, a line per level; per contender: server µs/event and p99 (median min max)
  const q = (s) => (s ? `${s.median} ${s.min} ${s.max}` : 'NaN NaN NaN');
  for (const l of LOADS) {
    const lines = LEVELS.map((v, i) => `${i} "${v === 'max' ? 'max' : `${v} %`}" ${CONT.map((c) => `${q(full[l][v][c]?.server_us)} ${q(full[l][v][c]?.p99)}`).join(' ')}`);
    fs.writeFileSync(path.join(dir, `plot-${l}.dat`), `# index level ${CONT.map((c) => `${c}:server_us(med min max) p99(med min max)`).join(' ')}\n${lines.join('\n')}\n`);
  }
  fs.writeFileSync(path.join(dir, 'plot-deploy.dat'), '# contender reload:failed unaffected sigkill:failed unaffected\n' +
    CONT.filter((c) => deploy[c]).map((c) => `"${contenders[c].label}" ${deploy[c].reload?.failed_requests ?? 'NaN'} ${deploy[c].reload?.clients_unaffected ?? 'NaN'} ` +
      `${deploy[c].sigkill?.failed_requests ?? 'NaN'} ${deploy[c].sigkill?.clients_unaffected ?? 'NaN'}`).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'plot-meta.gp'), `loads = "${LOADS.join(' ')}"\nncont = ${CONT.length}\n` +
    `names = "${CONT.map((c) => contenders[c].label.replace(/[ ,]+/g, '_')).join(' ')}"\nnlevels = ${LEVELS.length}\nlevels = "${LEVELS.join(' ')}"\n` +
    `title_line = "${(behind ? 'behind nginx (TLS)' : 'direct')}: ${run.workers} workers, ${run.clients} clients, ${run.rounds} round(s); ${run.commit}, ${run.date}"\n` +
    `machine = "${run.machine.replace(/"/g, "'")}"\nclients = ${run.clients}\ndeploys = ${deploys.length}\nprefix = "${behind ? 'bench-nginx' : 'bench'}"\n`);
}

// --- compare -------------------------------------------------------------------------------------
function compare(a, b) {
  const load = (d) => JSON.parse(fs.readFileSync(path.join(d, 'summary.json'), 'utf8'));
  const A = load(a), B = load(b);
  const md = [`Run A: \`${A.run.command}\`, commit ${A.run.commit}, ${A.run.date}`, `Run B: \`${B.run.command}\`, commit ${B.run.commit}, ${B.run.date}`, ''];
  const sa = JSON.stringify(A.run.saturation_events_per_s), sb = JSON.stringify(B.run.saturation_events_per_s);
  if (sa !== sb) md.push(`Note: the runs offered different rates (100 % = ${sa} against ${sb}); run B with --saturation from run A offers the same.`, '');
  md.push('| load | level | contender | server CPU µs/event, A | B | B/A | p99 ms, A | B | B/A | ratio to the reference, A | B |', '|---|---|---|---|---|---|---|---|---|---|---|');
  const out = [];
  for (const [l, levels] of Object.entries(A.results)) for (const [v, cs] of Object.entries(levels)) for (const [c, x] of Object.entries(cs)) {
    const y = B.results?.[l]?.[v]?.[c];
    if (!y) continue;
    const cpu = y.server_us_per_event / x.server_us_per_event, p99 = y.p99_ms / x.p99_ms;
    const ra = A.comparisons?.[l]?.[v]?.[c]?.server_cpu?.median ?? null, rb = B.comparisons?.[l]?.[v]?.[c]?.server_cpu?.median ?? null;
    out.push({ load: l, level: v, contender: c, cpu_b_over_a: +cpu.toFixed(3), p99_b_over_a: +p99.toFixed(3), ratio_a: ra, ratio_b: rb,
      agree: Math.abs(cpu - 1) <= AGREE && (ra === null || rb === null || Math.abs(rb / ra - 1) <= AGREE) });
    const f1 = (z) => (z === null || z === undefined ? '–' : z.toFixed(1));
    md.push(`| ${l} | ${v} | ${c} | ${f1(x.server_us_per_event)} | ${f1(y.server_us_per_event)} | ${cpu.toFixed(3)} | ${f1(x.p99_ms)} | ${f1(y.p99_ms)} | ${p99.toFixed(3)} | ${ra ?? '–'} | ${rb ?? '–'} |`);
  }
  const off = out.filter((o) => !o.agree);
  md.push('', off.length
    ? `**The runs disagree** beyond ±${100 * AGREE} % (server CPU per event, or its ratio to the reference) in ${off.length} of ${out.length} rows: ` +
      off.map((o) => `${o.load} ${o.level} ${o.contender}`).join(', ')
    : `**The runs agree within ±${100 * AGREE} %**: server CPU per event and its ratio to the reference, in all ${out.length} rows.`);
  md.push('(p99 is shown, not judged: tail latency of a shared machine moves more than ±5 %.)');
  write(md.join('\n') + '\n' + JSON.stringify({ compare: { a, b, rows: out, agree: off.length === 0 && out.length > 0 } }) + '\n');
}

// report(ARGS...): what `node report.js ARGS...` prints, as a string (bench/report.test.js runs it in
// its own process: no node start per call)
function report(cmd, ...args) {
  let text = '';
  const saved = write;
  write = (s) => { text += s; };
  try {
    if (cmd === 'record') record(JSON.parse(args[0]), args.slice(1));
    else if (cmd === 'deploy') deploy(JSON.parse(args[0]), args.slice(1));
    else if (cmd === 'summary') summarize(args[0]);
    else if (cmd === 'compare') compare(args[0], args[1]);
    else throw new Error('usage: report.js record|deploy META PREFIX... | summary DIR | compare DIR_A DIR_B');
  } finally {
    write = saved;
  }
  return text;
}
module.exports = { report };

if (require.main === module) {
  try {
    process.stdout.write(report(...process.argv.slice(2)));
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(e.message.startsWith('usage:') ? 2 : 1);
  }
}
