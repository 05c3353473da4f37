#!/usr/bin/env bash
# scripts/bench.sh --behind-nginx: the production path. nginx terminates TLS on 127.0.0.1 (a
# self-signed ECDSA certificate made here) in front of every contender, with the same workers, app,
# Redis and clients (scripts/bench/lib.sh):
#   sio_steer             PM2 cluster (reusePort) + `sio-steer attach --key destination`, behind the
#                         configuration `sio-steer nginx-conf --key destination --listen` prints
#   sio_steer_bind        the same with `nginx-conf`'s default configuration (a proxy_bind source per
#                         client, no upstream keepalive) and `attach`'s default key
#   nginx_hash_keepalive  PM2 fork mode, a port per worker, hash $remote_addr consistent, keepalive 32
#   nginx_ip_hash         PM2 fork mode, a port per worker, ip_hash, no keepalive
#   socketio_pm2          @socket.io/pm2 6.0.14 (its God daemon routes and relays broadcasts)
#   fork                  PM2 fork mode, one worker
# Clients: load.js over TLS, each from its own loopback address, every one in its own /24 (ip_hash
# keys on the /24); nginx sees them as $remote_addr.
#
#   scripts/bench.sh --behind-nginx [--quick] [--workers N] [--rounds R] [--duration S] [--clients N]
#       [--loadgens K] [--contenders a,b,...] [--loads polling,upgrade,polling_close] [--no-deploy]
#       [--deploy-only] [--deploy-duration S] [--drain-ms MS] [--attempts N] [--max-others PCT]
#       [--out DIR] [--publish] [--keep-autogroup]
#
# Throughput: per round, every contender in a rotating order, each load as scripts/bench.sh measures it.
# Deploy: per contender, under the `deploy` load (half the clients long-polling, half on WebSocket),
# `pm2 reload` of the app 6 s in (what PM2 does in fork mode too), then, in a second run, one worker
# killed with SIGKILL: what the clients saw (failed requests, 400s, disconnects, acks lost, the
# longest time a client got no ack). Workers drain for --drain-ms (SIO_DRAIN_MS, 3000) when stopped.
# --quick: 1 round, 8 s per load, 20 s deploy runs. Full: 3 rounds, 15 s, 25 s.
# The last line printed is one JSON object:
#   {"behind_nginx": {"<load>": {"<contender>": {"rps", "p99_ms", "errors", ...}}},
#    "deploy": {"<contender>": {"failed_requests", "http_400", "disconnects", "acks_lost", "max_gap_ms",
#               ..., "sigkill": {...}}}, "goals": {...}}
# The scheduler weighs every process by itself while it runs (kernel.sched_autogroup_enabled=0,
# restored after): with autogroups, PM2 cluster mode's workers share one CPU share and fork mode's
# get one each (scripts/bench/lib.sh); --keep-autogroup measures the host's setting as it is.
# docs/benchmarks.md ("Behind nginx") says what the numbers mean.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
ARGS=("$@")
quick=0 workers=2 rounds="" duration="" clients=200 loadgens=2 out="" publish=0 loads="" attempts=3 max_others=30 keep_autogroup=0
deploy=1 throughput=1 deploy_duration="" drain_ms=3000
contenders="sio_steer,sio_steer_bind,nginx_hash_keepalive,nginx_ip_hash,socketio_pm2,fork"
while (($#)); do
  case "$1" in
    --behind-nginx) shift ;;
    --quick) quick=1; shift ;;
    --workers) workers=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --loadgens) loadgens=$2; shift 2 ;;
    --contenders) contenders=$2; shift 2 ;;
    --loads) loads=$2; shift 2 ;;
    --no-deploy) deploy=0; shift ;;
    --deploy-only) throughput=0; shift ;;
    --deploy-duration) deploy_duration=$2; shift 2 ;;
    --drain-ms) drain_ms=$2; shift 2 ;;
    --attempts) attempts=$2; shift 2 ;;
    --max-others) max_others=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --publish) publish=1; shift ;;
    --keep-autogroup) keep_autogroup=1; shift ;;
    *) usage ;;
  esac
done
if ((quick)); then
  : "${rounds:=1}" "${duration:=8}" "${deploy_duration:=20}" "${loads:=polling,upgrade,polling_close}"
  warmup=2
else
  : "${rounds:=3}" "${duration:=15}" "${deploy_duration:=25}" "${loads:=polling,upgrade,polling_close}"
  warmup=4
fi
[[ "$workers" =~ ^[1-9][0-9]?$ && "$rounds" =~ ^[0-9]+$ && "$duration" =~ ^[0-9]+$ && "$clients" =~ ^[0-9]+$ &&
   "$loadgens" =~ ^[1-8]$ && "$attempts" =~ ^[1-9]$ && "$max_others" =~ ^[0-9]+$ &&
   "$deploy_duration" =~ ^[0-9]+$ && "$drain_ms" =~ ^[0-9]+$ ]] || usage
((rounds >= 1 && rounds <= 20 && duration >= 2 && clients >= 2 * loadgens && deploy_duration >= 12)) || usage
IFS=, read -r -a CONTENDERS <<<"$contenders"
IFS=, read -r -a LOADS <<<"$loads"
for c in "${CONTENDERS[@]}"; do
  [[ "$c" =~ ^(sio_steer|sio_steer_fork|sio_steer_bind|nginx_hash_keepalive|nginx_ip_hash|socketio_pm2|fork)$ ]] || usage
done
for l in "${LOADS[@]}"; do [[ "$l" =~ ^(polling|upgrade|polling_close)$ ]] || usage; done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it loads BPF programs)" >&2; exit 1; }

log() { echo "bench: $*" >&2; }
if [[ -z "${SIO_STEER_BENCH_NETNS:-}" ]]; then
  # what needs the network first; then the benchmark runs in a network namespace of its own, where
  # the machine's other traffic neither competes for its ports nor shows in its connection counts
  log "installing what is missing, building"
  scripts/install-deps.sh >&2
  if [[ -z "${SIO_STEER:-}" ]]; then SIO_STEER="$ROOT/$(scripts/build.sh)"; fi
  export SIO_STEER
  . scripts/node-env.sh
  . scripts/bench/lib.sh
  if [[ " ${CONTENDERS[*]} " == *" socketio_pm2 "* ]]; then
    socketio_pm2_install || log "@socket.io/pm2 could not be installed: socketio_pm2 is left out"
  fi
  SIO_STEER_BENCH_NETNS=1 exec unshare --net -- "$0" "${ARGS[@]}"
fi
ip link set lo up
. scripts/node-env.sh
. scripts/bench/lib.sh
BENCH_LOADGENS=$loadgens BENCH_BEHIND_NGINX=1
export BENCH_LOADGENS BENCH_BEHIND_NGINX
export SIO_DRAIN_MS="$drain_ms"
# every client over TLS, in its own /24
BENCH_LOAD_EXTRA="--insecure --src-stride 256"

out="${out:-$(mktemp -d /tmp/sio-steer-bench-nginx.XXXXXX)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
: >"$out/results.jsonl"
: >"$out/deploy.jsonl"
BENCH_TMP="$(mktemp -d /tmp/sio-steer-bench-tmp.XXXXXX)"
BENCH_PINS="/sys/fs/bpf/sio-steer-bench-$$" # bpffs names may not contain dots
mkdir -p "$BENCH_PINS" "$BENCH_TMP/locks"
export BENCH_TMP BENCH_PINS
STATS_PID=""
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
bench_scheduler_begin "$keep_autogroup"

bench_tls_cert "$BENCH_TMP"
siopm2_version="not installed"
if [[ " ${CONTENDERS[*]} " == *" socketio_pm2 "* ]]; then
  if [[ -f "$ROOT/scripts/bench/socketio-pm2/node_modules/.package-lock.json" ]] && socketio_pm2_install; then
    siopm2_version="$("$NODE24" -p "require('$BENCH_SIOPM2_DIR/@socket.io/pm2/package.json').version")"
  else
    log "@socket.io/pm2 could not be installed: socketio_pm2 is left out"
  fi
fi

machine="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/^Mem:/{print $2}') GiB, Linux $(uname -r)"
versions="Node $("$NODE24" --version), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(openssl version | cut -d' ' -f1-2), redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'), pm2 $("$NODE24" -p "require('$CHAT_DIR/node_modules/pm2/package.json').version"), @socket.io/pm2 $siopm2_version, socket.io 4.8.4"
log "machine: $machine; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
log "$versions"
log "scheduler: $BENCH_SCHEDULER"
jq -n --arg machine "$machine" --arg versions "$versions" --arg scheduler "$BENCH_SCHEDULER" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson quick "$quick" --argjson workers "$workers" --argjson rounds "$rounds" \
  --argjson duration "$duration" --argjson clients "$clients" --argjson loadgens "$loadgens" \
  --argjson deploy_duration "$deploy_duration" --argjson drain_ms "$drain_ms" \
  --argjson attempts "$attempts" --argjson max_others "$max_others" --arg contenders "$contenders" \
  '{machine: $machine, versions: $versions, scheduler: $scheduler, load_at_start: $load, quick: ($quick == 1), workers: $workers,
    rounds: $rounds, duration_s: $duration, clients: $clients, loadgens: $loadgens,
    deploy_duration_s: $deploy_duration, drain_ms: $drain_ms, attempts: $attempts,
    max_others_pct: $max_others, contenders: ($contenders | split(","))}' >"$out/run.json"

cc -O2 -Wall -o "$BENCH_TMP/bpf-stats" scripts/bench/bpf-stats.c
"$BENCH_TMP/bpf-stats" >"$BENCH_TMP/bpf-stats.out" 2>&1 &
STATS_PID=$!
redis_start

# --- throughput ------------------------------------------------------------------------------
start_all=$SECONDS
if ((throughput)); then
  log "${#CONTENDERS[@]} contenders, ${#LOADS[@]} loads each, $rounds round(s), $duration s of messaging per load, $clients clients from $loadgens load generators, over TLS"
  for ((r = 1; r <= rounds; r++)); do
    k=$(((r - 1) % ${#CONTENDERS[@]}))
    order=("${CONTENDERS[@]:k}" "${CONTENDERS[@]:0:k}")
    for c in "${order[@]}"; do
      n=$workers
      [[ "$c" == fork ]] && n=1
      log "round $r/$rounds: $c with $n worker(s) behind nginx [$((SECONDS - start_all)) s, load $(cut -d' ' -f1 /proc/loadavg)]"
      if ! contender_start "$c" "$n"; then
        log "$c did not start: skipped"
        contender_stop "$c"
        continue
      fi
      run_load polling "$BENCH_TMP/warmup" "$((clients / 2))" "$warmup" >/dev/null 2>&1 || true
      for kind in "${LOADS[@]}"; do measure "$c" "$n" "$kind" "$r"; done
      contender_stop "$c"
    done
  done
fi

# --- deploy under load -------------------------------------------------------------------------
# deploy_action ACTION: pm2 reload of the app, or SIGKILL of instance 0's worker
deploy_action() {
  case "$1" in
    reload) $PM2 reload chat >"$BENCH_TMP/reload.log" 2>&1 || log "pm2 reload: $(tail -n 2 "$BENCH_TMP/reload.log")" ;;
    sigkill)
      local victim
      victim="$(pm2_worker_pids | awk '$2 == 0 {print $1; exit}')"
      [[ -n "$victim" ]] || victim="$(pm2_worker_pids | awk '{print $1; exit}')"
      kill -9 "$victim"
      ;;
  esac
}

# deploy_once CONTENDER ACTION: one run; its JSON line to deploy.jsonl
deploy_once() {
  local c="$1" action="$2" n=$workers prefix t0 t1 g load
  [[ "$c" == fork ]] && n=1
  prefix="$out/raw/deploy-$c-$action"
  mkdir -p "$out/raw"
  log "deploy: $c with $n worker(s), $action under load [$((SECONDS - start_all)) s, load $(cut -d' ' -f1 /proc/loadavg)]"
  if ! contender_start "$c" "$n"; then
    log "$c did not start: skipped"
    contender_stop "$c"
    return 0
  fi
  run_load polling "$BENCH_TMP/warmup" "$((clients / 2))" "$warmup" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" flushall >/dev/null
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  run_load_start deploy "$prefix" "$clients" "$deploy_duration"
  sleep 6 # connected, and messaging for a few seconds
  t0=$(date +%s.%N)
  deploy_action "$action"
  t1=$(date +%s.%N)
  run_load_wait "$prefix"
  for ((g = 0; g < BENCH_LOADGENS; g++)); do
    jq -e .rate "$prefix.$g.json" >/dev/null 2>&1 || { log "load.js $g printed no summary: $(tail -n 3 "$prefix.$g.log")"; contender_stop "$c"; return 0; }
  done
  jq -sc --arg c "$c" --arg action "$action" --argjson n "$n" --arg load "$load" --arg loadend "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson took "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')" \
    '{contender: $c, action: $action, workers: $n, action_s: $took, load_average: {start: $load, end: $loadend},
      clients: (map(.clients) | add), clients_ok: (map(.clients_ok) | add),
      failed_requests: (map(.failed_requests) | add), http_400: (map(.http_400) | add),
      session_unknown_400: (map(.session_unknown_400) | add),
      http_errors: (map(.http_errors) | reduce .[] as $m ({}; reduce ($m | to_entries[]) as $e (.; .[$e.key] += $e.value))),
      resets: (map(.resets) | add), connect_errors: (map(.connect_errors) | add),
      disconnects: (map(.disconnects) | add), reconnects: (map(.reconnects) | add),
      acks_lost: (map(.acks_lost) | add), acks_expected: (map(.acks.expected) | add),
      max_gap_ms: (map(.max_gap_ms) | max), events_per_s: (map(.rate.events_per_s) | add)}' \
    "$prefix".[0-9]*.json >>"$out/deploy.jsonl"
  tail -n 1 "$out/deploy.jsonl" | jq -r '"bench:   \(.contender) \(.action) (took \(.action_s) s): failed requests \(.failed_requests) \(.http_errors), 400s \(.http_400), disconnects \(.disconnects), reconnects \(.reconnects), acks lost \(.acks_lost)/\(.acks_expected), longest without an ack \(.max_gap_ms) ms, clients OK \(.clients_ok)/\(.clients)"' >&2
  [[ -n "${PM2_HOME:-}" ]] && mkdir -p "$prefix.pm2-logs" && cp "$PM2_HOME"/logs/*.log "$prefix.pm2-logs/" 2>/dev/null || true
  [[ -f "$BENCH_TMP/attach.log" && "$c" == sio_steer* ]] && cp "$BENCH_TMP/attach.log" "$prefix.attach.log"
  contender_stop "$c"
}

if ((deploy)); then
  for c in "${CONTENDERS[@]}"; do
    deploy_once "$c" reload
    deploy_once "$c" sigkill
  done
fi
log "measured in $((SECONDS - start_all)) s"

# --- tables, plots, the JSON line ------------------------------------------------------------
"$NODE24" scripts/bench/report-nginx.js "$out" >"$out/summary.txt"
cat "$out/summary.txt" >&2
if command -v gnuplot >/dev/null; then
  gnuplot -e "dir='$out'" scripts/bench/plots-nginx.gp 2>"$out/gnuplot.log" || log "gnuplot failed: $(tail -n 3 "$out/gnuplot.log")"
  if ((publish)); then cp "$out"/bench-nginx-*.png docs/; log "plots copied to docs/"; fi
fi
log "results in $out"
cat "$out/summary.json"
