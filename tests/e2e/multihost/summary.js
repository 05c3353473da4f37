#!/usr/bin/env node
// Merges the reports of the clients.js processes (one per front balancer) of the multi-host test
// into its result: one JSON object, per phase (baseline, then one per fault) and per balancer.
// usage: summary.js FACTS.json REPORT.json...   (FACTS: what the test knows: hosts, which host each
// fault hit, the balance measured, ...); prints the JSON on stdout, a table on stderr.
'use strict';
const fs = require('node:fs');

const [factsFile, ...reportFiles] = process.argv.slice(2);
const facts = JSON.parse(fs.readFileSync(factsFile, 'utf8'));
const reports = reportFiles.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
const pct = (a, b) => (b ? +((100 * a) / b).toFixed(1) : null);

// The counters of one phase, over the given reports; `hit` is the host the fault hit (its own
// clients are counted apart: they are expected to lose their sessions when it is killed).
function merge(name, hit, rs) {
  const o = {
    http_400: 0, session_unknown: 0, resets: 0, refused: 0, connect_errors: 0, http_5xx: 0,
    disconnects: 0, reconnects: 0, recovered: 0, moved_between_hosts: 0, moved_workers: 0,
    acks_sent: 0, acks_lost: 0, events_expected: 0, events_missed: 0, events_missed_connected: 0,
    duplicates: 0, affinity_violations: 0, acks_other_worker: 0, reconnect_ms_max: null, seconds: 0, missed_connected_sample: [],
    hit_host: hit ?? null, hit_host_clients: 0,
    outside_hit_host: { http_400: 0, resets: 0, refused: 0, disconnects: 0, moved_between_hosts: 0, events_missed_connected: 0 },
  };
  for (const r of rs) {
    const p = r.phases.find((x) => x.name === name);
    if (!p) continue;
    o.seconds = Math.max(o.seconds, p.seconds);
    for (const [host, b] of Object.entries(p.by_host)) {
      const http5xx = Object.entries(b).filter(([k]) => /^http_5\d\d$/.test(k)).reduce((a, [, n]) => a + n, 0);
      o.http_400 += b.http_400 || 0; o.session_unknown += b.session_unknown || 0; o.resets += b.resets || 0;
      o.refused += b.refused || 0; o.connect_errors += b.connect_errors || 0; o.disconnects += b.disconnects || 0;
      o.http_5xx += http5xx;
      if (host !== hit) {
        o.outside_hit_host.http_400 += b.http_400 || 0; o.outside_hit_host.resets += b.resets || 0;
        o.outside_hit_host.refused += b.refused || 0; o.outside_hit_host.disconnects += b.disconnects || 0;
      }
    }
    o.reconnects += p.reconnects; o.recovered += p.recovered; o.moved_workers += p.moved_workers;
    o.moved_between_hosts += p.moved_hosts.length;
    o.outside_hit_host.moved_between_hosts += p.moved_hosts.filter((i) => p.host_at_start[i] !== hit).length;
    o.hit_host_clients += Object.values(p.host_at_start).filter((h) => h === hit).length;
    for (const [h, n] of Object.entries(p.missed_connected_by_host)) if (h !== hit) o.outside_hit_host.events_missed_connected += n;
    for (const k of ['acks_sent', 'acks_lost', 'events_expected', 'events_missed', 'events_missed_connected', 'duplicates', 'affinity_violations', 'acks_other_worker'])
      o[k] += p[k];
    o.missed_connected_sample.push(...p.missed_connected_sample.map((x) => ({ balancer: r.name, ...x })));
    if (p.reconnect_ms_max !== null) o.reconnect_ms_max = Math.max(o.reconnect_ms_max ?? 0, p.reconnect_ms_max);
  }
  o.recovered_pct = pct(o.recovered, o.reconnects);
  return o;
}

const phaseNames = reports[0].phases.map((p) => p.name);
const phases = {};
for (const name of phaseNames) {
  const hit = facts.hit?.[name];
  const all = merge(name, hit, reports);
  all.by_balancer = {};
  for (const r of reports) {
    const m = merge(name, hit, [r]);
    all.by_balancer[r.name] = { http_400: m.http_400, resets: m.resets, disconnects: m.disconnects, reconnects: m.reconnects,
      moved_between_hosts: m.moved_between_hosts, acks_lost: m.acks_lost, events_missed: m.events_missed, recovered_pct: m.recovered_pct };
  }
  phases[name] = all;
}

const faults = Object.fromEntries(facts.faults.map((f) => [f, { ...phases[f], ...(facts.fault_extra?.[f] ?? {}) }]));
const total = (k) => Object.values(phases).reduce((a, p) => a + p[k], 0);
const exactlyOnceExcept = facts.exactly_once_except ?? [];
const out = {
  test: 'multihost',
  hosts: facts.hosts,
  clients: reports.reduce((a, r) => a + r.clients, 0),
  balancers: facts.balancers,
  faults,
  killed_host_fault: facts.killed_host_fault,
  broadcasts_exactly_once: total('duplicates') === 0 &&
    Object.entries(phases).every(([n, p]) => exactlyOnceExcept.includes(n) ||
      (n === facts.killed_host_fault ? p.outside_hit_host.events_missed_connected : p.events_missed_connected) === 0),
  broadcasts_exactly_once_excludes: exactlyOnceExcept,
  duplicates: total('duplicates'),
  worker_balance_max_dev_pct: facts.worker_balance_max_dev_pct,
  worker_balance: facts.worker_balance,
  recovered_pct: Object.fromEntries(facts.faults.map((f) => [f, phases[f].recovered_pct])),
  baseline: phases.baseline,
  ...facts.extra,
};
process.stdout.write(`${JSON.stringify(out)}\n`);

const cols = ['http_400', 'resets', 'refused', 'disconnects', 'reconnects', 'recovered_pct', 'moved_between_hosts', 'acks_lost', 'events_missed', 'duplicates', 'reconnect_ms_max'];
const rows = [['phase', ...cols], ...phaseNames.map((n) => [n, ...cols.map((k) => String(phases[n][k]))])];
const w = cols.map((_, j) => Math.max(...rows.map((r) => r[j + 1].length)));
for (const r of rows) process.stderr.write(`  ${r[0].padEnd(20)} ${r.slice(1).map((x, j) => x.padStart(w[j])).join('  ')}\n`);
