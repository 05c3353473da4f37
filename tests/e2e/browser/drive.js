#!/usr/bin/env node
// Drives Debian's chromium (headless, through puppeteer-core) through the example chat's page, as
// people check a Socket.IO fix in DevTools: each visitor is a browser context of its own, with its
// own address in CF-Connecting-IP (what Cloudflare adds), through nginx with TLS, to the chat under a
// PM2 cluster. What it asserts comes from the browser's own network events (CDP Network domain:
// every HTTP response, every WebSocket handshake) and from the page's DOM.
//
//   drive.js unsteered   2 visitors for a few seconds: counts the 400s (no sio-steer attached)
//   drive.js steered     the whole check: visitors over the workers, messages, typing, unread, toasts,
//                        polling only (WebSocket blocked), then `$RELOAD_CMD` (pm2 reload) with the
//                        pages open and messages flowing
// env: CHAT_URL (https://127.0.0.1:PORT/), POLLING_URL (the same through a proxy refusing WebSocket),
//      CHROMIUM (/usr/bin/chromium), RELOAD_CMD, SCREENSHOT_DIR
//      (pictures for docs/), VISITORS (8), POLLING_VISITORS (4), MESSAGES (15 per default pair).
// Progress on stderr; ONE JSON object on the last stdout line. Exit 0 whatever it measured (the
// test judges), 1 if it could not run.
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

const URL = process.env.CHAT_URL;
const POLLING_URL = process.env.POLLING_URL; // through a proxy that refuses WebSocket upgrades
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const NV = Number(process.env.VISITORS || 8), NP = Number(process.env.POLLING_VISITORS || 4);
const MESSAGES = Number(process.env.MESSAGES || 15);
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi',
  'ivan', 'judy', 'mallory', 'niaj', 'olivia', 'peggy', 'rupert', 'sybil', 'trent', 'victor', 'walter', 'wendy'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (line) => console.error(`browser: ${line}`);
const t0 = Date.now();

// What the test watches in each page, installed before the page's own script: when each received
// message, typing indicator and toast first appeared (Date.now() of the page's renderer; the
// sender's page stamps the message's ts the same way, on the same machine).
function watchPage() {
  window.__seen = { msgs: {}, typing: [], toasts: [] };
  let typing = false, toast = '';
  new MutationObserver(() => {
    const now = Date.now();
    for (const li of document.querySelectorAll('#messages li.theirs')) {
      if (!(li.dataset.id in window.__seen.msgs)) window.__seen.msgs[li.dataset.id] = now;
    }
    const t = document.querySelector('#typing');
    if (t && !t.hidden !== typing) {
      typing = !t.hidden;
      if (typing) window.__seen.typing.push({ at: now, text: t.textContent });
    }
    const o = document.querySelector('#toast');
    if (o && !o.hidden && o.textContent !== toast) window.__seen.toasts.push({ at: now, text: o.textContent });
    toast = o && !o.hidden ? o.textContent : '';
  }).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
}

// A visitor: its own browser context (cookies, cache, connections), address and network log.
async function openVisitor(browser, i, user, { blockWebSocket = false, wait = true } = {}) {
  const addr = `198.51.100.${10 + i}`; // a documentation address: only ever a header value here
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const v = { i, addr, user, page, context, polling: blockWebSocket, net: [], bodies: [] };
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  const sent = new Map(); // requestId -> method and body, for the rows of failed requests
  cdp.on('Network.requestWillBeSent', ({ requestId, request }) => {
    if (request.url.includes('/socket.io/')) sent.set(requestId, { method: request.method, body: request.postData, sentAt: Date.now() });
  });
  cdp.on('Network.responseReceived', ({ requestId, response, type }) => {
    const req = sent.get(requestId);
    sent.delete(requestId);
    v.net.push({ at: Date.now(), kind: 'http', type, url: response.url, status: response.status, requestId, ...(response.status >= 400 && req) });
  });
  cdp.on('Network.loadingFinished', ({ requestId }) => {
    const row = v.net.find((r) => r.requestId === requestId);
    if (row && row.status >= 400) {
      cdp.send('Network.getResponseBody', { requestId }).then((b) => v.bodies.push(b.body), () => {});
    }
  });
  cdp.on('Network.webSocketCreated', ({ url }) => v.net.push({ at: Date.now(), kind: 'ws-created', url }));
  cdp.on('Network.webSocketHandshakeResponseReceived', ({ response }) => {
    v.net.push({ at: Date.now(), kind: 'ws', type: 'WebSocket', url: '', status: response.status });
  });
  await page.setExtraHTTPHeaders({ 'CF-Connecting-IP': addr });
  await page.evaluateOnNewDocument(watchPage);
  await page.setViewport({ width: 900, height: 640 });
  await page.goto(`${blockWebSocket ? POLLING_URL : URL}?user=${user}`, { waitUntil: 'load' });
  await page.click('#join');
  if (!wait) return v;
  await page.waitForFunction(() => document.querySelector('#state').dataset.state === 'connected' &&
    document.querySelector('#worker').textContent !== '–', { timeout: 15000 });
  v.worker = await text(v, '#worker');
  return v;
}

const text = (v, sel) => v.page.$eval(sel, (e) => e.textContent);
const instanceOf = (worker) => worker.split(' ')[0];

// Pairs visitors so that the two of a pair are on different workers (the Redis adapter between
// them): repeatedly one from each of the two workers with the most visitors left.
function pairAcrossWorkers(visitors) {
  const by = new Map();
  for (const v of visitors) by.set(instanceOf(v.worker), [...(by.get(instanceOf(v.worker)) ?? []), v]);
  const pairs = [];
  for (;;) {
    const groups = [...by.values()].filter((g) => g.length).sort((a, b) => b.length - a.length);
    if (groups.length < 2) return { pairs, left: groups.flat() };
    pairs.push([groups[0].pop(), groups[1].pop()]);
  }
}

async function setPeer(v, peer) {
  v.peer = peer;
  await v.page.select('#peer', peer.user);
}

// A types a message into the page and presses Enter, as a person does.
async function send(a, text) {
  await a.page.type('#text', text);
  await a.page.keyboard.press('Enter');
}

// Typing indicator: A presses a key, B's page shows "A is typing…". Returns ms.
async function typingLatency(a, b) {
  const before = await b.page.evaluate(() => window.__seen.typing.length);
  const start = await a.page.evaluate(() => Date.now());
  await a.page.type('#text', 'h');
  await b.page.waitForFunction((n) => window.__seen.typing.length > n, { timeout: 5000 }, before).catch(() => {});
  const seen = await b.page.evaluate((n) => window.__seen.typing[n], before);
  await a.page.$eval('#text', (e) => { e.value = ''; });
  return seen && seen.text.startsWith(a.user) ? seen.at - start : null;
}

// Received messages in B's page: id -> {count in the DOM, latency}.
function received(b, from) {
  return b.page.evaluate((from) => {
    const out = {};
    for (const li of document.querySelectorAll(`#messages li.theirs[data-from="${from}"]`)) {
      const o = (out[li.dataset.id] ??= { count: 0, ms: null });
      o.count++;
      o.ms = window.__seen.msgs[li.dataset.id] - Number(li.dataset.ts);
    }
    return out;
  }, from.user);
}

// Sent message ids in A's page (its own messages, in order).
const sentIds = (a) => a.page.$$eval('#messages li.mine', (lis) => lis.map((li) => li.dataset.id));

async function waitDelivered(pairs, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    let missing = 0;
    for (const [a, b] of pairs) {
      const ids = await sentIds(a), got = await received(b, a);
      missing += ids.filter((id) => !got[id]).length;
    }
    if (missing === 0 || Date.now() > until) return missing;
    await sleep(200);
  }
}

const badge = (v) => v.page.$eval('#unread', (e) => (e.hidden ? 0 : Number(e.textContent)));

function pct(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

// What the browser saw, per visitor: handshakes, upgrades, 400s.
function netSummary(v) {
  const http = v.net.filter((r) => r.kind === 'http' && r.url.includes('/socket.io/'));
  return {
    handshake_200: http.filter((r) => /transport=polling/.test(r.url) && !/sid=/.test(r.url) && r.status === 200).length,
    http_400: v.net.filter((r) => r.status === 400).length,
    session_unknown_400: v.bodies.filter((b) => /Session ID unknown/.test(b)).length,
    ws_101: v.net.filter((r) => r.kind === 'ws' && r.status === 101).length,
    ws_attempts: v.net.filter((r) => r.kind === 'ws-created').length,
    requests: http.length,
    // when it was sent and answered, method, query, body (Engine.IO packets: "3" is a pong)
    errors: v.net.filter((r) => r.status >= 400 && r.status !== 403)
      .map((r) => `${((r.at - t0) / 1000).toFixed(1)}s ${r.status} ${r.method ?? ''} sent ${r.at - (r.sentAt ?? r.at)} ms before ` +
        `${r.url.replace(/^.*\?/, '').replace(/&t=[^&]*/, '')}${r.body ? ` body ${JSON.stringify(r.body.slice(0, 60))}` : ''}`),
  };
}

async function screenshots(dir, a, b, visitors) {
  const fs = require('node:fs');
  const shotA = await a.page.screenshot({ encoding: 'base64' });
  const shotB = await b.page.screenshot({ encoding: 'base64' });
  const page = await a.context.newPage();
  await page.setViewport({ width: 1860, height: 680 });
  await page.setContent(`<body style="margin:0;background:#888;display:flex;gap:20px;padding:20px">
    <img src="data:image/png;base64,${shotA}"><img src="data:image/png;base64,${shotB}"></body>`);
  fs.writeFileSync(path.join(dir, 'browser-chat.png'), await page.screenshot());
  // DevTools-style rows of B's /socket.io/ requests: what the Network tab shows
  const rows = b.net.filter((r) => r.kind === 'ws' || (r.kind === 'http' && r.url.includes('/socket.io/'))).slice(0, 24)
    .map((r) => `<tr><td>${r.kind === 'ws' ? 'websocket' : r.url.replace(/^.*\?/, '?').replace(/&t=[^&]*/, '')}</td>` +
      `<td style="color:${r.status >= 400 ? '#c00' : '#080'}">${r.status}</td><td>${r.type}</td></tr>`).join('');
  await page.setViewport({ width: 900, height: 100 });
  await page.setContent(`<body style="margin:0;font:13px monospace"><table style="border-collapse:collapse;width:100%">
    <tr style="background:#eee"><th align=left>Name (/socket.io/…)</th><th align=left>Status</th><th align=left>Type</th></tr>${rows}</table>
    <style>td,th{border-bottom:1px solid #ddd;padding:3px 8px}</style></body>`);
  fs.writeFileSync(path.join(dir, 'browser-network.png'), await page.screenshot({ fullPage: true }));
  await page.close();
  log(`screenshots in ${dir} (${visitors.length} visitors open)`);
}

async function unsteered(browser) {
  const visitors = [];
  for (let i = 0; i < 2; i++) visitors.push(await openVisitor(browser, i, USERS[i], { wait: false }));
  await sleep(6000);
  const nets = visitors.map(netSummary);
  const states = await Promise.all(visitors.map((v) => v.page.$eval('#state', (e) => e.dataset.state)));
  log(`without steering: ${JSON.stringify(nets)} states ${states}`);
  return {
    visitors: visitors.length,
    http_400: nets.reduce((s, n) => s + n.http_400, 0),
    session_unknown_400: nets.reduce((s, n) => s + n.session_unknown_400, 0),
  };
}

async function steered(browser) {
  const r = { checks: {} };
  const check = (name, ok, detail) => {
    r.checks[name] = { ok: Boolean(ok), detail };
    log(`${ok ? 'ok' : 'FAIL'}: ${name}${detail === undefined ? '' : ` (${JSON.stringify(detail)})`}`);
  };

  // --- visitors, their workers, pairs across workers -------------------------------------------
  // Which worker a visitor lands on is sio-steer's choice: open visitors until the pairs are there
  // (at most 4 more of each kind; the extra ones stay open, as bystanders of the activity stream).
  let next = 0;
  const openPaired = async (n, opts) => {
    const group = [];
    while (group.length < n + 4 && (group.length < n || pairAcrossWorkers(group).pairs.length < n / 2)) {
      group.push(await openVisitor(browser, next, USERS[next], opts));
      next++;
    }
    return group;
  };
  const visitors = await openPaired(NV, {});
  const polling = await openPaired(NP, { blockWebSocket: true });
  const all = [...visitors, ...polling];
  const D = visitors.length; // all[0..D) default pages, all[D..) polling only
  log(`${all.length} visitors open: ${all.map((v) => `${v.user}@${instanceOf(v.worker)}`).join(' ')}`);
  r.workers_used = new Set(all.map((v) => instanceOf(v.worker))).size;
  check('visitors spread over >= 3 workers', r.workers_used >= 3, r.workers_used);

  const { pairs } = pairAcrossWorkers(visitors);
  const { pairs: ppairs } = pairAcrossWorkers(polling);
  pairs.splice(NV / 2);
  ppairs.splice(NP / 2);
  check('pairs of users on two different workers', pairs.length === NV / 2 && ppairs.length === NP / 2,
    [...pairs, ...ppairs].map(([a, b]) => `${a.user}@${instanceOf(a.worker)}->${b.user}@${instanceOf(b.worker)}`));
  for (const [a, b] of [...pairs, ...ppairs]) { await setPeer(a, b); await setPeer(b, a); }

  // --- the upgrade: WebSocket for the default pages, polling for the blocked ones ---------------
  await sleep(1500);
  const transports = await Promise.all(all.map((v) => text(v, '#transport')));
  check('default pages upgraded to websocket', visitors.every((v, i) => transports[i] === 'websocket'), transports.slice(0, D));
  check('pages with WebSocket blocked stay on polling', polling.every((v, i) => transports[D + i] === 'polling'), transports.slice(D));

  // --- typing indicator, messages, unread badge -------------------------------------------------
  const phase = async (ps, n) => {
    const typing = await Promise.all(ps.map(([a, b]) => typingLatency(a, b)));
    await Promise.all(ps.map(async ([a], k) => {
      for (let m = 0; m < n; m++) { await send(a, `message ${m + 1} from ${a.user}`); await sleep(120 + 20 * k); }
    }));
    const missing = await waitDelivered(ps, 10000);
    const lat = [];
    for (const [a, b] of ps) for (const o of Object.values(await received(b, a))) lat.push(o.ms);
    return { typing, missing, lat };
  };
  const ws = await phase(pairs, MESSAGES);
  const pp = await phase(ppairs, Math.ceil(MESSAGES * 2 / 3));
  r.message_p99_ms = pct(ws.lat, 99);
  r.message_p50_ms = pct(ws.lat, 50);
  r.messages = ws.lat.length;
  r.polling_message_p99_ms = pct(pp.lat, 99);
  r.polling_messages = pp.lat.length;
  r.typing_ms_max = Math.max(...ws.typing.map((t) => t ?? Infinity));
  r.polling_typing_ms_max = Math.max(...pp.typing.map((t) => t ?? Infinity));
  check('every message shown in the peer\'s page', ws.missing === 0 && pp.missing === 0, { missing: ws.missing + pp.missing });
  check('>= 50 messages, p99 from send to shown < 1 s', r.messages >= 50 && r.message_p99_ms < 1000, { n: r.messages, p50: r.message_p50_ms, p99: r.message_p99_ms });
  check('polling only: messages p99 < 1 s', r.polling_message_p99_ms < 1000, { n: r.polling_messages, p99: r.polling_message_p99_ms });
  check('typing indicator shown < 1 s (websocket, polling)', r.typing_ms_max < 1000 && r.polling_typing_ms_max < 1000, [ws.typing, pp.typing]);

  await sleep(300);
  const unread = await Promise.all([...pairs, ...ppairs].map(async ([a, b]) => [await badge(a), await badge(b), (await sentIds(a)).length]));
  check('unread badge counts exactly (receiver: every message, sender: none)', unread.every(([ba, bb, n]) => ba === 0 && bb === n), unread);

  // --- activity stream: a post on a websocket page and one on a polling page toast everywhere -----
  for (const poster of [pairs[0][0], ppairs[0][0]]) {
    const post = `${poster.user} shared a photo`;
    const start = await poster.page.evaluate(() => Date.now());
    await poster.page.type('#activity-text', post);
    await poster.page.keyboard.press('Enter');
    const seen = await Promise.all(all.filter((v) => v !== poster).map((v) => v.page.waitForFunction(
      (t) => window.__seen.toasts.find((x) => x.text.includes(t))?.at, { timeout: 5000 }, post)
      .then((h) => h.jsonValue()).then((at) => at - start, () => null)));
    const streams = await Promise.all(all.map((v) => v.page.$$eval('#stream li', (l, t) => l.some((li) => li.textContent.includes(t)), post)));
    check(`activity toast of ${poster.polling ? 'a polling' : 'a websocket'} page shown in the ${seen.length} others`,
      seen.every((ms) => ms !== null && ms < 2000) && streams.every(Boolean), { max_ms: Math.max(...seen.map((x) => x ?? Infinity)) });
  }

  if (process.env.SCREENSHOT_DIR) await screenshots(process.env.SCREENSHOT_DIR, pairs[0][0], pairs[0][1], all);

  // the receivers read their messages: the badge goes back to 0 (and stays, from Redis)
  for (const [, b] of [...pairs, ...ppairs]) await b.page.click('#unread');
  await sleep(300);
  const cleared = await Promise.all([...pairs, ...ppairs].map(([, b]) => badge(b)));
  check('clicking the badge marks read', cleared.every((n) => n === 0), cleared);

  // --- pm2 reload with the pages open and messages flowing -------------------------------------
  r.reload = {};
  if (process.env.RELOAD_CMD) {
    const before = await Promise.all(all.map((v) => text(v, '#worker')));
    const sentBefore = await Promise.all([...pairs, ...ppairs].map(([a]) => sentIds(a).then((x) => x.length)));
    log(`reload: ${process.env.RELOAD_CMD}`);
    const reloadStart = Date.now();
    r.reload.started_s = (reloadStart - t0) / 1000;
    let reloading = true;
    const reload = new Promise((resolve) => {
      const p = spawn('bash', ['-c', process.env.RELOAD_CMD], { stdio: ['ignore', 'ignore', 'inherit'] });
      p.on('exit', (code) => { reloading = false; resolve(code); });
    });
    // messages keep flowing, one every ~400 ms per pair, until 2 s after the reload
    let stopAt = Infinity;
    reload.then(() => { stopAt = Date.now() + 2000; });
    await Promise.all([...pairs, ...ppairs].map(async ([a], k) => {
      await sleep(37 * k);
      for (let m = 0; Date.now() < stopAt && Date.now() - reloadStart < 120000; m++) {
        await send(a, `during reload ${m + 1} from ${a.user}`);
        await sleep(400);
      }
    }));
    const code = await reload;
    r.reload.seconds = Math.round((Date.now() - reloadStart) / 100) / 10;
    check('pm2 reload succeeded', code === 0 && !reloading, { code });
    const missing = await waitDelivered([...pairs, ...ppairs], 15000);
    await sleep(500);
    const after = await Promise.all(all.map((v) => text(v, '#worker')));
    const reconnects = await Promise.all(all.map((v) => text(v, '#reconnects').then(Number)));
    const states = await Promise.all(all.map((v) => v.page.$eval('#state', (e) => e.dataset.state)));
    r.reload_reconnects_max = Math.max(...reconnects);
    r.reload.reconnects = reconnects;
    r.reload.moved = after.filter((w, i) => w !== before[i]).length;
    check('every page moved to a new worker (the reload happened under it)', r.reload.moved === all.length, { moved: r.reload.moved, of: all.length });
    check('each page reconnected at most once, and is connected', r.reload_reconnects_max <= 1 && states.every((s) => s === 'connected'), { reconnects, states });
    // a long-polling session is handed to the successor with the page noticing nothing
    r.reload.polling_reconnects = reconnects.filter((_, i) => all[i].polling).reduce((a, n) => a + n, 0);
    check('polling pages did not reconnect at all (their sessions were handed over)', r.reload.polling_reconnects === 0, { reconnects: reconnects.filter((_, i) => all[i].polling) });
    let lost = 0, dup = 0, sent = 0;
    const unreadAfter = [];
    for (const [k, [a, b]] of [...pairs, ...ppairs].entries()) {
      const ids = await sentIds(a), got = await received(b, a);
      sent += ids.length - sentBefore[k];
      lost += ids.filter((id) => !got[id]).length;
      dup += Object.values(got).filter((o) => o.count > 1).length + Object.keys(got).filter((id) => !ids.includes(id)).length;
      unreadAfter.push([await badge(b), ids.length - sentBefore[k]]);
    }
    r.messages_lost = lost;
    r.messages_duplicated = dup;
    r.reload.messages_sent = sent;
    check('no message lost or shown twice across the reload', missing === 0 && lost === 0 && dup === 0, { sent, lost, dup });
    check('unread badges exact after the reload', unreadAfter.every(([n, want]) => n === want), unreadAfter);
  }

  // --- what the browser saw on the network, over the whole run ---------------------------------
  const nets = all.map(netSummary);
  r.per_visitor = all.map((v, i) => ({ user: v.user, addr: v.addr, polling_only: v.polling, worker: v.worker, ...nets[i] }));
  r.http_400 = nets.slice(0, D).reduce((s, n) => s + n.http_400, 0);
  r.polling_only_http_400 = nets.slice(D).reduce((s, n) => s + n.http_400, 0);
  r.ws_101 = nets.slice(0, D).reduce((s, n) => s + n.ws_101, 0);
  check('every page: handshake 200', nets.every((n) => n.handshake_200 >= 1), nets.map((n) => n.handshake_200));
  check('every default page: WebSocket upgrade 101', nets.slice(0, D).every((n) => n.ws_101 >= 1), nets.slice(0, D).map((n) => n.ws_101));
  check('polling only: WebSocket tried, never 101', polling.every((v, i) => nets[D + i].ws_101 === 0 && nets[D + i].ws_attempts >= 1), polling.map((v, i) => nets[D + i].ws_attempts));
  check('0 responses with status 400 in every context', r.http_400 === 0 && r.polling_only_http_400 === 0, { http_400: r.http_400, polling_only_http_400: r.polling_only_http_400 });
  r.visitors = all.length;
  return r;
}

(async () => {
  const mode = process.argv[2];
  if (!URL || !['steered', 'unsteered'].includes(mode)) throw new Error('usage: CHAT_URL=... drive.js steered|unsteered');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    acceptInsecureCerts: true, // the test's own self-signed certificate
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const r = mode === 'steered' ? await steered(browser) : await unsteered(browser);
    r.seconds = Math.round((Date.now() - t0) / 100) / 10;
    console.log(JSON.stringify(r));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error('browser: error:', e);
  process.exit(1);
});
