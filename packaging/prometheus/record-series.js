// The two halves of packaging/prometheus/record.sh (run with Node >= 18):
//   node record-series.js scrape URL DIR EVERY_S FOR_S
//       GETs URL every EVERY_S seconds for FOR_S seconds, as Prometheus scrapes (4 s timeout);
//       DIR/NNNN.prom holds each answer, DIR/NNNN.fail each failed scrape; DIR/start the time of
//       scrape 0 (ms since the epoch), written before it.
//   node record-series.js yaml DIR PORT [RULES]
//       prints those scrapes as promtool input series (YAML list items), only those of the metric
//       names that the `expr:`s of the rules file RULES name (all of them without RULES), labelled
//       as a scrape job
//       "sio-steer" of target 127.0.0.1:9477 labels them: job and instance added, the workers'
//       `instance` label renamed exported_instance (Prometheus's default for a clash), port PORT
//       written as 5001; `up` is 1 for an answered scrape, 0 for a failed one. A series missing
//       from a scrape after it was in the one before gets a staleness marker, as Prometheus gives it.
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const [mode, ...args] = process.argv.slice(2);
const usage = () => {
  console.error('usage: record-series.js scrape URL DIR EVERY_S FOR_S | yaml DIR PORT [RULES]');
  process.exit(2);
};

function scrapeOnce(url, timeoutMs) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : null));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

async function scrape(url, dir, everyS, forS) {
  if (!url || !dir || !(everyS > 0) || !(forS > 0)) usage();
  fs.mkdirSync(dir, { recursive: true });
  const start = Date.now();
  fs.writeFileSync(path.join(dir, 'start'), `${start}\n`);
  for (let i = 0; i * everyS <= forS; i++) {
    const due = start + i * everyS * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
    const body = await scrapeOnce(url, 4000);
    const name = path.join(dir, String(i).padStart(4, '0'));
    if (body === null) fs.writeFileSync(`${name}.fail`, '');
    else fs.writeFileSync(`${name}.prom`, body);
  }
}

// `name{a="x",b="y"} value` -> [name, [[a, x], [b, y]], value]; comments and blank lines: null.
function parseSample(line) {
  if (!line || line.startsWith('#')) return null;
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
  if (!m) throw new Error(`not a sample line: ${line}`);
  const labels = [];
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
  for (let l; (l = re.exec(m[2] ?? ''));) labels.push([l[1], l[2]]);
  return [m[1], labels, m[3]];
}

function seriesKey(name, labels, port) {
  const out = [['job', 'sio-steer'], ['instance', '127.0.0.1:9477']];
  for (const [k, v] of labels) {
    if (k === 'instance') out.push(['exported_instance', v]);
    else if (k === 'port') out.push(['port', v === port ? '5001' : v]);
    else out.push([k, v]);
  }
  out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return `${name}{${out.map(([k, v]) => `${k}="${v}"`).join(', ')}}`;
}

// Runs of one value written the way promtool expands them: "v" then "vxN" for N more.
function compress(values) {
  const out = [];
  for (let i = 0; i < values.length;) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[i]) j++;
    const n = j - i;
    if (values[i] === '_') out.push(n ? `_x${n + 1}` : '_');
    else if (values[i] === 'stale') out.push(...Array(n + 1).fill('stale'));
    else out.push(n ? `${values[i]}x${n}` : values[i]);
    i = j + 1;
  }
  return out.join(' ');
}

// The metric names (and other identifiers) of the rules' expressions: `expr:` values, one line or
// a block scalar (the lines indented deeper than the key).
function exprNames(rulesFile) {
  const names = new Set();
  const lines = fs.readFileSync(rulesFile, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)expr:\s*(.*)$/.exec(lines[i]);
    if (!m) continue;
    let text = m[2];
    if (/^[|>]/.test(text)) {
      text = '';
      while (i + 1 < lines.length && (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > m[1].length))
        text += ` ${lines[++i]}`;
    }
    for (const n of text.replace(/"(?:[^"\\]|\\.)*"/g, '').match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []) names.add(n);
  }
  return names;
}

function yaml(dir, port, rulesFile) {
  if (!dir || !port) usage();
  const wanted = rulesFile ? exprNames(rulesFile) : null;
  const files = fs.readdirSync(dir).filter((f) => /^\d{4}\.(prom|fail)$/.test(f)).sort();
  if (files.length === 0) throw new Error(`no scrapes in ${dir}`);
  const scrapes = files.map((f) => {
    if (f.endsWith('.fail')) return null;
    const samples = new Map();
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const s = parseSample(line);
      if (s && (!wanted || wanted.has(s[0]))) samples.set(seriesKey(s[0], s[1], port), s[2]);
    }
    return samples;
  });
  const keys = new Set();
  for (const s of scrapes) if (s) for (const k of s.keys()) keys.add(k);
  const series = new Map([[seriesKey('up', [], port), scrapes.map((s) => (s ? '1' : '0'))]]);
  for (const k of [...keys].sort()) {
    series.set(k, scrapes.map((s, i) => {
      if (s && s.has(k)) return s.get(k);
      return i > 0 && scrapes[i - 1]?.has(k) ? 'stale' : '_';
    }));
  }
  for (const [k, values] of series) {
    process.stdout.write(`      - series: '${k}'\n        values: '${compress(values)}'\n`);
  }
}

if (mode === 'scrape') scrape(args[0], args[1], Number(args[2]), Number(args[3]));
else if (mode === 'yaml') yaml(args[0], args[1], args[2]);
else usage();
