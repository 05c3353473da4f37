#!/usr/bin/env node
// The edge's L4 balancer for the multi-host test, as an nftables ruleset for `nft -f`: DNAT to the
// hosts with conntrack, the way kube-proxy (nftables mode) balances a Service with
// `sessionAffinity: ClientIP`:
//   - a client already recorded for a ready host goes there (one affinity set per host, each
//     element refreshed by every new connection, 3 h timeout: kube-proxy's default);
//   - a new client goes to jhash(ip saddr) mod BUCKETS, and the bucket to a host by rendezvous
//     hashing over the ready hosts, so that adding or removing a host moves only the buckets it
//     takes or gives (a consistent hash, like Maglev in IPVS or Katran);
//   - a draining host ("drain") gets no new client, and keeps its recorded ones;
//   - a host taken out ("out", "down") gets no new client, and its recorded clients are forgotten
//     (its set is flushed): kube-proxy's handling of a terminating or not-ready endpoint. Live
//     connections stay where they are (conntrack).
// usage: nft.js --table T --vip A --port P --target-port Q --buckets B --seed S
//                 [--init] NAME=ADDR=STATE ...     (STATE: ready | drain | out | down | absent)
// --init: the whole table (delete it first if it exists); without: the svc chain only, atomically.
'use strict';
const { parseArgs } = require('node:util');

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    table: { type: 'string', default: 'sio_lb' }, vip: { type: 'string' }, port: { type: 'string', default: '80' },
    'target-port': { type: 'string', default: '5001' }, buckets: { type: 'string', default: '1024' },
    seed: { type: 'string', default: '0x5e1d' }, init: { type: 'boolean', default: false },
    'affinity-timeout': { type: 'string', default: '10800s' },
  },
});
const hosts = positionals.map((p) => {
  const [name, addr, state] = p.split('=');
  if (!/^[a-z0-9_]+$/.test(name) || !/^[0-9.]+$/.test(addr) || !['ready', 'drain', 'out', 'down', 'absent'].includes(state))
    throw new Error(`bad host ${p}`);
  return { name, addr, state };
});
const B = Number(opt.buckets);

// The rendezvous score of a (bucket, host) pair: well mixed (FNV-1a on such short strings is not:
// it gave one host of three half of the buckets).
const score = (s) => require('node:crypto').createHash('sha256').update(s).digest().readUInt32BE(0);
const ready = hosts.filter((h) => h.state === 'ready');
const bucketHost = [];
for (let b = 0; b < B; b++) {
  let best = null, bestScore = -1;
  for (const h of ready) { const s = score(`${b}/${h.name}`); if (s > bestScore) { best = h; bestScore = s; } }
  bucketHost.push(best);
}

const T = opt.table, out = [];
if (opt.init) {
  out.push(`table ip ${T}`, `delete table ip ${T}`, `table ip ${T} {`);
  for (const h of hosts) out.push(`  set aff_${h.name} { type ipv4_addr; flags timeout; timeout ${opt['affinity-timeout']}; }`);
  out.push(`  chain prerouting { type nat hook prerouting priority dstnat; policy accept;`,
    `    ip daddr ${opt.vip} tcp dport ${opt.port} jump svc`, '  }', '  chain svc {', '  }');
  for (const h of hosts)
    out.push(`  chain ep_${h.name} {`, `    update @aff_${h.name} { ip saddr }`, `    meta l4proto tcp dnat to ${h.addr}:${opt['target-port']}`, '  }');
  out.push('}');
}
out.push(`flush chain ip ${T} svc`);
const keeps = (h) => h.state === 'ready' || h.state === 'drain'; // its recorded clients still go there
for (const h of hosts) if (!keeps(h)) out.push(`flush set ip ${T} aff_${h.name}`);
for (const h of hosts.filter(keeps)) out.push(`add rule ip ${T} svc ip saddr @aff_${h.name} goto ep_${h.name}`);
if (ready.length) {
  const vmap = bucketHost.map((h, b) => `${b} : goto ep_${h.name}`).join(', ');
  out.push(`add rule ip ${T} svc jhash ip saddr mod ${B} seed ${opt.seed} vmap { ${vmap} }`);
}
out.push(`add rule ip ${T} svc drop`); // no ready host
process.stdout.write(`${out.join('\n')}\n`);
// what each host gets of the hash (stderr): buckets per ready host
process.stderr.write(`nft: buckets ${ready.map((h) => `${h.name}=${bucketHost.filter((x) => x === h).length}`).join(' ') || 'none'}\n`);
