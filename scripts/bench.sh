#!/usr/bin/env bash
# sio-steer against what users pick instead, side by side, on the same machine in the same run:
#   sio_steer        PM2 cluster, N workers with reusePort, `sio-steer attach`
#   nginx_hash       nginx `hash $remote_addr consistent` in front of N PM2 fork-mode workers, one port each
#   socketio_sticky  a Node cluster primary with @socket.io/sticky (setupMaster) and N workers (setupWorker)
#   fork             PM2 fork mode, 1 instance (one core)
# All serve examples/chat/server.js (Redis adapter) to the same load (examples/chat/load.js): Socket.IO
# long-polling clients, then clients upgrading to WebSocket, each client from its own loopback
# address, closed loop (a client sends its next message when the previous one is acked).
# The BPF program's cost (scripts/bench-bpf.sh) is part of the same run.
#
#   scripts/bench.sh [--quick] [--workers 1,2,4] [--rounds R] [--duration S] [--clients N]
#                    [--loadgens K] [--contenders a,b,...] [--loads polling,upgrade,polling_close]
#                    [--sticky-lb round-robin|least-connection|random] [--nginx-keepalive N]
#                    [--attempts N] [--max-others PCT] [--no-bpf] [--out DIR] [--publish] [--keep-autogroup]
#
# --quick: a few minutes (1 round, N=2, 8 s per load, fewer BPF rounds). Full (default): 3 rounds,
# N = 1,2,4. Contenders alternate within a round in a rotating order; tables give the median and
# the min-max over rounds. Results (every measurement as a JSON line, tables, plots) go to --out
# (default: a new /tmp/sio-steer-bench.* folder); --publish also copies the plots to docs/.
# On a shared machine: a measurement during which other jobs took more than --max-others % of one
# core (30) is taken again, up to --attempts times in all (3), and the least disturbed one is kept.
# The last line printed is one JSON object:
#   {"bpf_ns": {...}, "polling": {"sio_steer": {"rps", "p50_ms", "p99_ms", "errors", ...}, ...},
#    "upgrade": {...}, ...}
# The scheduler weighs every process by itself while it runs (kernel.sched_autogroup_enabled=0,
# restored after): with autogroups, PM2 cluster mode's workers share one CPU share and fork mode's
# get one each (scripts/bench/lib.sh); --keep-autogroup measures the host's setting as it is.
# Needs root (BPF), loopback only. docs/benchmarks.md says what the numbers mean.
#
# scripts/bench.sh --behind-nginx [--quick] [...]: the production path instead, nginx terminating TLS
# in front of sio-steer, nginx sticky sessions, @socket.io/pm2 and fork mode, and a deploy under
# load for each (scripts/bench/behind-nginx.sh; its options: --behind-nginx --help).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
for arg in "$@"; do [[ "$arg" == --behind-nginx ]] && exec scripts/bench/behind-nginx.sh "$@"; done

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
quick=0 workers="" rounds="" duration="" clients="" loadgens=2 bpf=1 out="" publish=0 loads="" attempts=3 max_others=30 keep_autogroup=0
contenders="sio_steer,nginx_hash,socketio_sticky,fork"
STICKY_LB=least-connection NGINX_UPSTREAM_KEEPALIVE=0
while (($#)); do
  case "$1" in
    --quick) quick=1; shift ;;
    --workers) workers=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --loadgens) loadgens=$2; shift 2 ;;
    --contenders) contenders=$2; shift 2 ;;
    --loads) loads=$2; shift 2 ;;
    --sticky-lb) STICKY_LB=$2; shift 2 ;;
    --nginx-keepalive) NGINX_UPSTREAM_KEEPALIVE=$2; shift 2 ;;
    --no-bpf) bpf=0; shift ;;
    --attempts) attempts=$2; shift 2 ;;
    --max-others) max_others=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --publish) publish=1; shift ;;
    --keep-autogroup) keep_autogroup=1; shift ;;
    *) usage ;;
  esac
done
if ((quick)); then
  : "${workers:=2}" "${rounds:=1}" "${duration:=8}" "${clients:=200}" "${loads:=polling,upgrade,polling_close}"
  warmup=2 bpf_args=(--rounds 2 --clients 4000)
else
  : "${workers:=1,2,4}" "${rounds:=3}" "${duration:=15}" "${clients:=200}" "${loads:=polling,upgrade,polling_close}"
  warmup=4 bpf_args=()
fi
BENCH_LOADGENS=$loadgens
export STICKY_LB NGINX_UPSTREAM_KEEPALIVE BENCH_LOADGENS
[[ "$workers" =~ ^[0-9]+(,[0-9]+)*$ && "$rounds" =~ ^[0-9]+$ && "$duration" =~ ^[0-9]+$ &&
   "$clients" =~ ^[0-9]+$ && "$loadgens" =~ ^[1-8]$ && "$NGINX_UPSTREAM_KEEPALIVE" =~ ^[0-9]+$ &&
   "$attempts" =~ ^[1-9]$ && "$max_others" =~ ^[0-9]+$ ]] || usage
((rounds >= 1 && rounds <= 20 && duration >= 2 && clients >= loadgens)) || usage
IFS=, read -r -a WORKERS <<<"$workers"
IFS=, read -r -a CONTENDERS <<<"$contenders"
IFS=, read -r -a LOADS <<<"$loads"
for c in "${CONTENDERS[@]}"; do [[ "$c" =~ ^(sio_steer|nginx_hash|socketio_sticky|fork)$ ]] || usage; done
for l in "${LOADS[@]}"; do [[ "$l" =~ ^(polling|upgrade|polling_close)$ ]] || usage; done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it loads BPF programs)" >&2; exit 1; }

log() { echo "bench: $*" >&2; }
log "installing what is missing, building"
scripts/install-deps.sh >&2
if [[ -z "${SIO_STEER:-}" ]]; then SIO_STEER="$ROOT/$(scripts/build.sh)"; fi
export SIO_STEER
. scripts/node-env.sh
. scripts/bench/lib.sh

out="${out:-$(mktemp -d /tmp/sio-steer-bench.XXXXXX)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
: >"$out/results.jsonl"
BENCH_TMP="$(mktemp -d /tmp/sio-steer-bench-tmp.XXXXXX)"
BENCH_PINS="/sys/fs/bpf/sio-steer-bench-$$" # bpffs names may not contain dots
mkdir -p "$BENCH_PINS" "$BENCH_TMP/locks"
export BENCH_TMP BENCH_PINS
STATS_PID=""
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
bench_scheduler_begin "$keep_autogroup"

machine="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/^Mem:/{print $2}') GiB, Linux $(uname -r)"
versions="Node $("$NODE24" --version), $(nginx -v 2>&1 | sed 's/^nginx version: //'), redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'), pm2 $("$NODE24" -p "require('$CHAT_DIR/node_modules/pm2/package.json').version"), socket.io 4.8.4, @socket.io/sticky 2.0.1"
log "machine: $machine; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
log "$versions"
log "scheduler: $BENCH_SCHEDULER"
jq -n --arg machine "$machine" --arg versions "$versions" --arg scheduler "$BENCH_SCHEDULER" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg args "$*" --argjson quick "$quick" --arg workers "$workers" --argjson rounds "$rounds" \
  --argjson duration "$duration" --argjson clients "$clients" --argjson loadgens "$loadgens" \
  --arg sticky_lb "$STICKY_LB" --argjson nginx_keepalive "$NGINX_UPSTREAM_KEEPALIVE" \
  --argjson attempts "$attempts" --argjson max_others "$max_others" \
  '{machine: $machine, versions: $versions, scheduler: $scheduler, load_at_start: $load, quick: ($quick == 1), workers: $workers,
    rounds: $rounds, duration_s: $duration, clients: $clients, loadgens: $loadgens,
    sticky_lb: $sticky_lb, nginx_upstream_keepalive: $nginx_keepalive, attempts: $attempts,
    max_others_pct: $max_others}' >"$out/run.json"

# --- the BPF program's cost ------------------------------------------------------------------
if ((bpf)); then
  log "BPF program cost: scripts/bench-bpf.sh ${bpf_args[*]}"
  scripts/bench-bpf.sh "${bpf_args[@]}" 2>"$out/bpf.log" | tee "$out/bpf.txt" >&2 ||
    log "bench-bpf.sh failed (see $out/bpf.log)"
  tail -n 1 "$out/bpf.txt" | jq -e .bpf_ns >/dev/null 2>&1 && tail -n 1 "$out/bpf.txt" >"$out/bpf.json"
fi

# --- the contenders --------------------------------------------------------------------------
cc -O2 -Wall -o "$BENCH_TMP/bpf-stats" scripts/bench/bpf-stats.c
"$BENCH_TMP/bpf-stats" >"$BENCH_TMP/bpf-stats.out" 2>&1 &
STATS_PID=$!
redis_start

# a plan: per round, per worker count, every contender (fork once per round: it has 1 worker)
plan=()
for ((r = 1; r <= rounds; r++)); do
  for n in "${WORKERS[@]}"; do
    for c in "${CONTENDERS[@]}"; do
      [[ "$c" == fork && "$n" != "${WORKERS[0]}" ]] && continue
      plan+=("$r $n $c")
    done
  done
done
log "${#plan[@]} setups, ${#LOADS[@]} loads each, $duration s of messaging per load, $clients clients from $loadgens load generators"
start_all=$SECONDS
for ((r = 1; r <= rounds; r++)); do
  # rotate the order of the contenders every round: none always runs first (or after the same one)
  mapfile -t order < <(printf '%s\n' "${plan[@]}" | awk -v r="$r" '$1 == r')
  k=$(((r - 1) % ${#order[@]}))
  order=("${order[@]:k}" "${order[@]:0:k}")
  for item in "${order[@]}"; do
    read -r _ n c <<<"$item"
    [[ "$c" == fork ]] && n=1
    log "round $r/$rounds: $c with $n worker(s) [$((SECONDS - start_all)) s, load $(cut -d' ' -f1 /proc/loadavg)]"
    if ! contender_start "$c" "$n"; then
      log "$c did not start: skipped"
      contender_stop "$c"
      continue
    fi
    # warm up (JIT, connection pools), not measured
    run_load polling "$BENCH_TMP/warmup" "$((clients / 2))" "$warmup" >/dev/null 2>&1 || true
    for kind in "${LOADS[@]}"; do measure "$c" "$n" "$kind" "$r"; done
    contender_stop "$c"
  done
done
log "measured in $((SECONDS - start_all)) s"

# --- tables, plots, the JSON line ------------------------------------------------------------
headline="$(nproc)"
[[ ",$workers," == *",$headline,"* ]] || headline="${WORKERS[0]}"
"$NODE24" scripts/bench/report.js "$out" "$headline" >"$out/summary.txt"
cat "$out/summary.txt" >&2
if command -v gnuplot >/dev/null; then
  gnuplot -e "dir='$out'" scripts/bench/plots.gp 2>"$out/gnuplot.log" || log "gnuplot failed: $(tail -n 3 "$out/gnuplot.log")"
  if ((publish)); then cp "$out"/bench-*.png docs/; log "plots copied to docs/"; fi
fi
log "results in $out"
cat "$out/summary.json"
