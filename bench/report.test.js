// bench/report.js on made-up measurements: what it computes from them (node --test bench/report.test.js).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { report } = require('./report.js'); // in this process: what `node report.js ARGS...` prints
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'bench-report-'));

// one load.js summary (its last line) and its latency samples
function loadgen(prefix, { events, windowMs, latencies, requestsPerS = 100, extra = {} }) {
  fs.writeFileSync(`${prefix}.json`, JSON.stringify({
    clients: 10, clients_ok: 10, http_400: 0, session_unknown_400: 0, failed_requests: 0, connect_errors: 0, disconnects: 0,
    tcp_connections: 10, timed_out: false, workers: [{ pid: 1, clients: 10 }],
    rate: { events, window_ms: windowMs, requests_per_s: requestsPerS, messages_per_s: 10 }, ...extra,
  }));
  fs.writeFileSync(`${prefix}.delivery.f32`, Buffer.from(Float32Array.from(latencies).buffer));
  fs.writeFileSync(`${prefix}.ack.f32`, Buffer.from(Float32Array.from(latencies).buffer));
}

test('record: the steady rate, CPU per event per class, the rest of the machine', () => {
  const dir = tmp();
  // open loop, a message every 1000 ms: half an interval of events is missing from a 10 s window
  loadgen(`${dir}/g0`, { events: 9500, windowMs: 10000, latencies: [1, 2, 3, 4, 100] });
  loadgen(`${dir}/g1`, { events: 9500, windowMs: 10000, latencies: [5, 6, 7, 8, 9] });
  const meta = { contender: 'sio_steer', load: 'polling', level: '50', round: 1, interval_ms: 1000, offered_events_per_s: 2000,
    window_s: 5, tcp_accepted_in_window: 10, cpu_s: { workers: 0.5, nginx: 0.4, controller: 0.05, pm2: 0.05, redis: 0.2, loadgen: 0.8, machine: 2.5 } };
  const r = JSON.parse(report('record', JSON.stringify(meta), `${dir}/g0`, `${dir}/g1`));
  assert.strictEqual(r.events_per_s, 2000); // 2 x 9500 / 9.5 s
  assert.strictEqual(r.events_in_window, 10000);
  assert.strictEqual(r.server_cpu_s, 1);
  assert.strictEqual(r.server_us_per_event, 100);
  assert.strictEqual(r.events_per_server_cpu_s, 10000);
  assert.deepStrictEqual(r.us_per_event, { workers: 50, nginx: 40, controller: 5, pm2: 5, redis: 20, loadgen: 80 });
  assert.strictEqual(r.cpu_s.others, 0.5);
  assert.strictEqual(r.saturated, false);
  assert.strictEqual(r.accepted_per_krequest, 10); // 10 connections for 200 req/s x 5 s
  assert.strictEqual(r.p50_ms, 6);
  assert.strictEqual(r.p99_ms, 100);
});

// a run folder with per-round server CPU per event for sio_steer and the reference
function run(dir, { sio, ref, deploys = [], extraRows = [] }) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(`${dir}/run.json`, JSON.stringify({
    machine: 'test', versions: 'test', scheduler: 'test', load_at_start: '0', command: 'scripts/bench.sh --behind-nginx', commit: 'abc',
    date: 'today', mode: 'behind_nginx', quick: false, workers: 2, rounds: sio.length, duration_s: 20, clients: 10, loadgens: 2,
    deploy_interval_ms: 500, drain_ms: 0, contenders: ['sio_steer', 'nginx_hash_tuned'], reference: 'nginx_hash_tuned',
    loads: ['polling'], levels: ['50'], adapter: 'streams', cpus: 2, saturation: { polling: 1000 },
  }));
  const row = (c, round, us) => ({ contender: c, load: 'polling', level: '50', round, offered_events_per_s: 500, events_per_s: 500,
    server_us_per_event: us, events_per_server_cpu_s: 1e6 / us, us_per_event: { workers: us, nginx: 0, controller: 0, pm2: 0, redis: 0, loadgen: 0 },
    p50_ms: 10, p99_ms: us, ack_p99_ms: 1, errors: 0, clients_ok: 10, clients: 10, window_s: 10, cpu_s: { others: 0 }, settings: c });
  const rows = [...sio.map((us, i) => row('sio_steer', i + 1, us)), ...ref.map((us, i) => row('nginx_hash_tuned', i + 1, us)), ...extraRows];
  fs.writeFileSync(`${dir}/results.jsonl`, rows.map((x) => JSON.stringify(x)).join('\n') + '\n');
  fs.writeFileSync(`${dir}/deploy.jsonl`, deploys.map((x) => JSON.stringify(x)).join('\n'));
  return JSON.parse((report('summary', dir), fs.readFileSync(`${dir}/summary.json`, 'utf8')));
}

test('summary: round-by-round ratios, their spread, and the verdicts', () => {
  const dir = tmp();
  const less = run(`${dir}/less`, { sio: [90, 95, 99], ref: [100, 100, 100] });
  const k = less.comparisons.polling['50'].sio_steer.server_cpu;
  assert.deepStrictEqual(k.per_round, [0.9, 0.95, 0.99]);
  assert.strictEqual(k.median, 0.95);
  assert.match(k.verdict, /^5\.0 % less CPU per event \(every one of 3 rounds\)/);
  assert.strictEqual(less.goals.polling_50.server_cpu_per_event_le_reference.verdict, 'met');
  assert.strictEqual(less.results.polling['50'].sio_steer.events_per_server_cpu_s, Math.round(1e6 / 95));

  const noise = run(`${dir}/noise`, { sio: [90, 105, 103], ref: [100, 100, 100] });
  assert.match(noise.comparisons.polling['50'].sio_steer.server_cpu.verdict, /^within noise/);
  assert.strictEqual(noise.goals.polling_50.server_cpu_per_event_le_reference.verdict, 'missed by the median, within noise');

  const more = run(`${dir}/more`, { sio: [110, 120, 130], ref: [100, 100, 100] });
  assert.match(more.comparisons.polling['50'].sio_steer.server_cpu.verdict, /^20\.0 % more/);
  assert.strictEqual(more.goals.polling_50.server_cpu_per_event_le_reference.verdict, 'missed');

  const one = run(`${dir}/one`, { sio: [90], ref: [100] });
  assert.match(one.goals.polling_50.server_cpu_per_event_le_reference.verdict, /^not judged/);
});

test('summary: every table names the command, the commit and the date; the deploy columns', () => {
  const dir = tmp();
  run(dir, { sio: [90, 95], ref: [100, 100], deploys: [{ contender: 'sio_steer', action: 'reload', action_s: 10, failed_requests: 0, http_400: 0,
    http_errors: {}, disconnects_polling: 0, disconnects_upgrade: 5, acks_lost_polling: 0, acks_lost_upgrade: 1, events_missed: 2,
    events_duplicated: 3, max_gap_ms: 900, clients_ok: 8, clients_unaffected: 5, clients: 10, clients_unaffected_polling: 5, clients_unaffected_upgrade: 0,
    handovers: 5, recovered: 5, reconnects: 5 }] });
  const md = fs.readFileSync(`${dir}/summary.md`, 'utf8');
  const blocks = md.split('\n\n');
  const tables = blocks.map((b, i) => [b, blocks[i + 1]]).filter(([b]) => b.startsWith('|'));
  assert.ok(tables.length >= 4);
  for (const [, after] of tables) assert.strictEqual(after.trim(), '<sub>command `scripts/bench.sh --behind-nginx`, commit abc, today</sub>');
  assert.match(md, /\| sio-steer, --key destination \| pm2 reload \| 10 \| 0 \| 0 \| 0 \| 0 \/ 5 \| 0 \/ 1 \| 2 \/ 3 \| 900 \| 8\/10 \| 5\/10 \(5 \/ 0\) \| 5 \| 5\/5 \|/);
});

test('summary: a contender none of whose clients got a session is named', () => {
  const dir = tmp();
  const s = run(dir, { sio: [90], ref: [100], extraRows: [{ contender: 'socketio_pm2', load: 'polling', level: '50', round: 1,
    offered_events_per_s: 500, events_per_s: 0, server_us_per_event: null, events_per_server_cpu_s: null,
    us_per_event: { workers: null, nginx: null, controller: null, pm2: null, redis: null, loadgen: null }, p50_ms: null, p99_ms: null,
    ack_p99_ms: null, errors: 0, clients_ok: 0, clients: 10, window_s: 10, cpu_s: { others: 0 }, settings: 'x' }] });
  assert.deepStrictEqual(s.no_session, ['socketio_pm2']);
});

test('compare: two runs agree within ±5 %, or say where they do not', () => {
  const dir = tmp();
  run(`${dir}/a`, { sio: [95, 95, 95], ref: [100, 100, 100] });
  run(`${dir}/b`, { sio: [97, 97, 97], ref: [102, 102, 102] });
  run(`${dir}/c`, { sio: [110, 110, 110], ref: [100, 100, 100] });
  const last = (s) => JSON.parse(s.trim().split('\n').pop()).compare;
  assert.strictEqual(last(report('compare', `${dir}/a`, `${dir}/b`)).agree, true);
  const off = last(report('compare', `${dir}/a`, `${dir}/c`));
  assert.strictEqual(off.agree, false);
  assert.deepStrictEqual(off.rows.filter((r) => !r.agree).map((r) => r.contender), ['sio_steer']);
});

test('deploy: what the clients of every load.js saw, summed (the fields of examples/chat/load.js)', () => {
  const dir = tmp();
  const g = (i, x) => fs.writeFileSync(`${dir}/g${i}.json`, JSON.stringify({ clients: 10, clients_ok: 9, polling: 5, upgrade: 5,
    failed_requests: x, http_400: x, session_unknown_400: x, resets: 0, connect_errors: 0, disconnects: 2 * x, disconnects_polling: x,
    disconnects_upgrade: x, reconnects: x, recovered: x, handovers: 5, acks_lost: 3 * x, acks_lost_polling: x, acks_lost_upgrade: 2 * x,
    events_missed: x, events_duplicated: 0, clients_unaffected: 10 - x, clients_unaffected_polling: 5, clients_unaffected_upgrade: 5 - x,
    acks: { expected: 100 }, http_errors: { 400: x }, max_gap_ms: 100 * x, rate: { events_per_s: 10 } }));
  g(0, 1);
  g(1, 2);
  const d = JSON.parse(report('deploy', JSON.stringify({ contender: 'sio_steer', action: 'reload' }), `${dir}/g0`, `${dir}/g1`));
  assert.strictEqual(d.failed_requests, 3);
  assert.strictEqual(d.disconnects_polling, 3);
  assert.strictEqual(d.acks_lost_upgrade, 6);
  assert.strictEqual(d.events_missed, 3);
  assert.strictEqual(d.clients_unaffected, 17);
  assert.strictEqual(d.clients_unaffected_upgrade, 7);
  assert.strictEqual(d.handovers, 10);
  assert.strictEqual(d.max_gap_ms, 200);
  assert.deepStrictEqual(d.http_errors, { 400: 3 });
  assert.strictEqual(d.acks_expected, 200);
  assert.strictEqual(d.clients_polling, 10);
});
