#!/usr/bin/env bash
# sio-steer against what users pick instead, on the same machine in the same run (scripts/bench.sh
# runs this). Every contender serves examples/chat/server.js with the same adapter, Redis, workers
# and clients; bench/lib.sh says how each is configured, and the tables print it beside its numbers.
#   direct (default)  clients -> the contender: sio_steer, nginx_hash_tuned (nginx, plain HTTP),
#                     socketio_sticky, fork
#   --behind-nginx    clients -> nginx terminating TLS -> the contender (the production path):
#                     sio_steer (`nginx-conf --key destination`), nginx_hash_tuned, nginx_ip_hash,
#                     socketio_pm2, nginx_hash_tutorial; then a deploy under load for each
#   also: sio_steer_fork, sio_steer_bind (behind nginx), fork, socketio_sticky, nginx_hash_tutorial
#
# The method: first the rate the machine sustains, per load (a closed loop on the --reference
# contender: clients send their next message once the last one is acked); then, per round, every
# contender in a rotating order, each load at fixed rates below it (--levels, % of it; open loop:
# every client sends a message each interval, whatever the server does). What each measurement
# keeps: the CPU of every process class over a window inside the messaging phase (workers, nginx,
# controller or router, PM2's daemon, Redis, the load generators, the rest of the machine; exact,
# from schedstat), the events delivered meanwhile, the latency percentiles. The report divides,
# compares each contender with the reference round by round, and says "within noise" where the
# rounds disagree.
#
#   scripts/bench.sh [--behind-nginx] [--quick] [--contenders a,b,...] [--reference NAME]
#       [--loads polling,upgrade,polling_close] [--levels 25,50,75[,max]] [--saturation LOAD=EVENTS,...]
#       [--rounds R] [--duration S] [--workers N] [--clients N] [--loadgens K] [--adapter streams|redis]
#       [--nginx-keepalive N] [--sticky-lb M] [--no-deploy] [--deploy-only] [--deploy-duration S]
#       [--deploy-interval MS] [--drain-ms MS] [--no-bpf] [--attempts N] [--max-others PCT]
#       [--out DIR] [--publish] [--keep-autogroup]
#   scripts/bench.sh --compare RUN_DIR_A RUN_DIR_B    do two runs agree within ±5 %?
#
# Full: 5 rounds, levels 25,50,75, polling and upgrade, 20 s per measurement, 200 clients from 2
# load.js, 60 s deploy runs. --quick: 1 round, level 50, 12 s, 45 s deploy runs. --saturation (events/s at 100 %, per load) skips the
# closed loop: a second run given the first's (its summary prints them) offers the same rates.
# `max` as a level: the closed loop itself, for every contender (throughput at saturation).
# Deploy (behind nginx): per contender, under the `deploy` load (half the clients long-polling, half
# on WebSocket, a message every --deploy-interval ms each), `pm2 reload` 6 s in, then in a second run
# one worker killed with SIGKILL: what the clients saw. Workers drain for --drain-ms (SIO_DRAIN_MS, 0).
# Direct runs also measure the BPF program's cost (scripts/bench-bpf.sh) unless --no-bpf.
# On a shared machine a measurement during which other jobs took more than --max-others % of a core
# (30) is taken again, up to --attempts (3), the least disturbed one kept.
# Results go to --out (default a new /tmp/sio-steer-bench.* folder): every measurement as a JSON
# line, the tables (summary.md), plots; --publish copies the plots to docs/. The last line printed
# is one JSON object (bench/report.js says what is in it). Needs root; loopback only, in a network
# namespace of its own. docs/benchmarks.md says what the numbers mean.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
ARGS=("$@")
if [[ "${1:-}" == --compare ]]; then
  (($# == 3)) || usage
  . scripts/node-env.sh
  exec "$NODE24" bench/report.js compare "$2" "$3"
fi
. bench/lib.sh
behind_nginx=0 quick=0 workers=2 rounds="" duration="" clients=200 loadgens=2 out="${BENCH_OUT:-}" publish=0 loads="" levels=""
attempts=3 max_others=30 keep_autogroup=0 no_deploy=0 deploy_only=0 deploy_duration="" deploy_interval=500 drain_ms=0
contenders="" reference="" saturation="" adapter=streams no_bpf=0 nginx_keepalive=1024 sticky_lb=least-connection
bench_parse_options "workers rounds duration clients loadgens contenders reference loads levels saturation adapter
  nginx-keepalive sticky-lb deploy-duration deploy-interval drain-ms attempts max-others out" \
  "behind-nginx quick no-deploy deploy-only no-bpf publish keep-autogroup" "$@"
[[ -n "${BENCH_OUT:-}" ]] && out=$BENCH_OUT # the second pass, in the network namespace
behind=$behind_nginx deploy=$((!no_deploy)) throughput=$((!deploy_only)) bpf=$((!no_bpf))
BENCH_NGINX_KEEPALIVE=$nginx_keepalive STICKY_LB=$sticky_lb
if ((behind)); then
  : "${contenders:=sio_steer,nginx_hash_tuned,nginx_ip_hash,socketio_pm2,nginx_hash_tutorial}"
  BENCH_FRONT=tls
else
  : "${contenders:=sio_steer,nginx_hash_tuned,socketio_sticky,fork}"
  BENCH_FRONT=none deploy=0
fi
if ((quick)); then
  : "${rounds:=1}" "${duration:=12}" "${levels:=50}" "${deploy_duration:=45}" "${loads:=polling,upgrade}"
  warmup=2 bpf_args=(--rounds 2 --clients 4000)
else
  : "${rounds:=5}" "${duration:=20}" "${levels:=25,50,75}" "${deploy_duration:=60}" "${loads:=polling,upgrade}"
  warmup=4 bpf_args=()
fi
IFS=, read -r -a CONTENDERS <<<"$contenders"
IFS=, read -r -a LOADS <<<"$loads"
IFS=, read -r -a LEVELS <<<"$levels"
: "${reference:=$([[ ",$contenders," == *,nginx_hash_tuned,* ]] && echo nginx_hash_tuned || echo "${CONTENDERS[0]}")}"
[[ "$workers" =~ ^[1-9][0-9]?$ && "$rounds" =~ ^[0-9]+$ && "$duration" =~ ^[0-9]+$ && "$clients" =~ ^[0-9]+$ &&
   "$loadgens" =~ ^[1-8]$ && "$attempts" =~ ^[1-9]$ && "$max_others" =~ ^[0-9]+$ && "$deploy_duration" =~ ^[0-9]+$ &&
   "$deploy_interval" =~ ^[1-9][0-9]*$ && "$drain_ms" =~ ^[0-9]+$ && "$BENCH_NGINX_KEEPALIVE" =~ ^[1-9][0-9]*$ &&
   "$adapter" =~ ^(streams|redis)$ && "$STICKY_LB" =~ ^(round-robin|least-connection|random)$ &&
   "$saturation" =~ ^([a-z_]+=[0-9]+(,[a-z_]+=[0-9]+)*)?$ ]] || usage
((rounds >= 1 && rounds <= 20 && duration >= 8 && clients >= 2 * loadgens && deploy_duration >= 12)) || usage
bench_known "${CONTENDERS[@]}" "$reference" || usage
[[ ",$contenders," == *",$reference,"* ]] || usage
for l in "${LOADS[@]}"; do [[ "$l" =~ ^(polling|upgrade|polling_close)$ ]] || usage; done
for l in "${LEVELS[@]}"; do [[ "$l" =~ ^([1-9][0-9]?|max)$ ]] || usage; done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it loads BPF programs)" >&2; exit 1; }

log() { echo "bench: $*" >&2; }
if [[ -z "${SIO_STEER_BENCH_NETNS:-}" ]]; then
  # what needs the network first (packages, the build, @socket.io/pm2), and the BPF program's cost;
  # then the benchmark itself in a network namespace of its own
  log "installing what is missing, building"
  scripts/install-deps.sh >&2
  if [[ -z "${SIO_STEER:-}" ]]; then SIO_STEER="$ROOT/$(scripts/build.sh)"; fi
  export SIO_STEER
  . scripts/node-env.sh
  if [[ " ${CONTENDERS[*]} " == *" socketio_pm2 "* ]]; then
    socketio_pm2_install || log "@socket.io/pm2 could not be installed: socketio_pm2 is left out"
  fi
  out="${out:-$(mktemp -d /tmp/sio-steer-bench.XXXXXX)}"
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"
  rm -f "$out/bpf.json"
  if ((bpf && !behind && throughput)); then
    log "BPF program cost: scripts/bench-bpf.sh ${bpf_args[*]}"
    scripts/bench-bpf.sh "${bpf_args[@]}" 2>"$out/bpf.log" | tee "$out/bpf.txt" >&2 || log "bench-bpf.sh failed (see $out/bpf.log)"
    tail -n 1 "$out/bpf.txt" | jq -e .bpf_ns >/dev/null 2>&1 && tail -n 1 "$out/bpf.txt" >"$out/bpf.json"
  fi
  export BENCH_OUT="$out"
fi
bench_netns "$ROOT/bench/run.sh" "${ARGS[@]}"
. scripts/node-env.sh
BENCH_LOADGENS=$loadgens SIO_DRAIN_MS=$drain_ms SIO_ADAPTER=$adapter
export BENCH_LOADGENS BENCH_FRONT BENCH_NGINX_KEEPALIVE STICKY_LB SIO_DRAIN_MS SIO_ADAPTER
: >"$out/results.jsonl"
: >"$out/calibration.jsonl"
: >"$out/deploy.jsonl"
bench_setup
[[ "$BENCH_FRONT" == tls ]] && bench_tls_cert "$BENCH_TMP"
siopm2_version="not installed"
if [[ " ${CONTENDERS[*]} " == *" socketio_pm2 "* ]]; then
  if [[ -f "$ROOT/bench/socketio-pm2/node_modules/.package-lock.json" ]] && socketio_pm2_install; then
    siopm2_version="$("$NODE24" -p "require('$BENCH_SIOPM2_DIR/@socket.io/pm2/package.json').version")"
  else
    log "@socket.io/pm2 could not be installed: socketio_pm2 is left out"
  fi
fi

# events one message brings (load.js: typing, dm, unread, 2 acks, and the activity broadcast to the
# rest of the sender's room), averaged over the clients of one load.js
per=$((clients / loadgens))
epm="$(awk -v n="$per" 'BEGIN { room = 20; t = 0; for (s = 0; s < n; s += room) { k = (n - s < room) ? n - s : room; t += k * (k - 1) }; printf "%.4f", 5 + t / n }')"
chat_pkg() { "$NODE24" -p "require('$CHAT_DIR/node_modules/$1/package.json').version"; }
machine="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/^Mem:/{print $2}') GiB, Linux $(uname -r)"
versions="Node $("$NODE24" --version), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(openssl version | cut -d' ' -f1-2), redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'), pm2 $(chat_pkg pm2), socket.io $(chat_pkg socket.io), @socket.io/sticky $(chat_pkg @socket.io/sticky), @socket.io/pm2 $siopm2_version"
adapter_text="Redis Streams adapter ($(chat_pkg @socket.io/redis-streams-adapter)) with connection state recovery"
[[ "$adapter" == redis ]] && adapter_text="Redis pub/sub adapter ($(chat_pkg @socket.io/redis-adapter)), no recovery"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || commit+="+changes"
log "machine: $machine; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
log "$versions; $adapter_text; scheduler: $BENCH_SCHEDULER"
jq -n --arg machine "$machine" --arg versions "$versions" --arg scheduler "$BENCH_SCHEDULER" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg command "scripts/bench.sh ${ARGS[*]}" --arg commit "$commit" --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --arg mode "$([[ $behind == 1 ]] && echo behind_nginx || echo direct)" --argjson quick "$quick" --argjson workers "$workers" \
  --argjson rounds "$rounds" --argjson duration "$duration" --argjson clients "$clients" --argjson loadgens "$loadgens" \
  --argjson deploy_duration "$deploy_duration" --argjson deploy_interval "$deploy_interval" --argjson drain_ms "$drain_ms" \
  --argjson attempts "$attempts" --argjson max_others "$max_others" --arg contenders "$contenders" --arg reference "$reference" \
  --arg loads "$loads" --arg levels "$levels" --arg adapter "$adapter_text" --argjson epm "$epm" --argjson ncpu "$(nproc)" \
  '{machine: $machine, versions: $versions, scheduler: $scheduler, load_at_start: $load, command: $command, commit: $commit,
    date: $date, mode: $mode, quick: ($quick == 1), workers: $workers, rounds: $rounds, duration_s: $duration, clients: $clients,
    loadgens: $loadgens, deploy_duration_s: $deploy_duration, deploy_interval_ms: $deploy_interval, drain_ms: $drain_ms,
    attempts: $attempts, max_others_pct: $max_others, contenders: ($contenders | split(",")), reference: $reference,
    loads: ($loads | split(",")), levels: ($levels | split(",")), adapter: $adapter, events_per_message: $epm, cpus: $ncpu}' >"$out/run.json"

start_all=$SECONDS
workers_of() { if [[ "$1" == fork ]]; then echo 1; else echo "$workers"; fi; }
# start CONTENDER: contender_start and a warm-up (JIT, connection pools), not measured; 1 if it did not start
start() {
  if ! contender_start "$1" "$(workers_of "$1")"; then
    log "$1 did not start: skipped"
    contender_stop
    return 1
  fi
  run_load polling "$BENCH_TMP/warmup" "$((clients / 2))" "$warmup" 0 >/dev/null 2>&1 || true
}

# --- the rate the machine sustains ---------------------------------------------------------------
declare -A SAT=()
for kv in ${saturation//,/ }; do SAT[${kv%%=*}]=${kv#*=}; done
if ((throughput)); then
  for kind in "${LOADS[@]}"; do
    [[ -n "${SAT[$kind]:-}" ]] && continue
    log "saturation, $kind: $reference in a closed loop [$((SECONDS - start_all)) s, load $(cut -d' ' -f1 /proc/loadavg)]"
    start "$reference" || { log "the reference did not start: no rates"; exit 1; }
    mkdir -p "$out/raw"
    measure_once "$reference" "$(workers_of "$reference")" "$kind" max 0 0 null "$out/raw/saturation-$kind" ||
      { log "no saturation measurement for $kind"; exit 1; }
    cat "$out/raw/saturation-$kind.record" >>"$out/calibration.jsonl"
    SAT[$kind]="$(jq -r '.events_per_s | floor' "$out/raw/saturation-$kind.record")"
    contender_stop
  done
fi
sat_arg=""
for kind in "${LOADS[@]}"; do
  if [[ -n "${SAT[$kind]:-}" ]]; then sat_arg+="${sat_arg:+,}$kind=${SAT[$kind]}"; fi
done
((throughput)) && log "100 % = $sat_arg events/s (to offer the same rates again: --saturation $sat_arg)"
jq --arg s "$sat_arg" '. + {saturation: ($s | split(",") | map(split("=") | {(.[0]): (.[1] | tonumber)}) | add)}' "$out/run.json" >"$out/run.json.new"
mv "$out/run.json.new" "$out/run.json"

# level_rate LOAD LEVEL: "INTERVAL_MS OFFERED_EVENTS_PER_S" (0 null: the closed loop)
level_rate() {
  [[ "$2" == max ]] && { echo "0 null"; return; }
  awk -v s="${SAT[$1]}" -v l="$2" -v n="$clients" -v e="$epm" \
    'BEGIN { i = int(n * 1000 * e / (s * l / 100) + 0.5); if (i < 1) i = 1; printf "%d %.0f\n", i, n * 1000 * e / i }'
}

# --- the rounds: every contender, every load, every level ------------------------------------------
# A contender none of whose clients got a session is broken, not slow: it is left out of the rest of
# the run (its measurement stays in the results, and the tables show it: 0 clients OK)
declare -A NO_SESSION=()
no_session() {
  [[ "$(tail -n 1 "$out/results.jsonl" 2>/dev/null | jq -r --arg c "$1" 'select(.contender == $c) | .clients_ok + .events_per_s')" == 0 ]] || return 1
  NO_SESSION[$1]=1
  log "  $1: no client got a session: left out of the rest of the run"
}
if ((throughput)); then
  log "${#CONTENDERS[@]} contenders × ${#LOADS[@]} loads × ${#LEVELS[@]} levels, $rounds round(s), $duration s each, $clients clients from $loadgens load generators"
  for ((r = 1; r <= rounds; r++)); do
    # rotate the order every round: none always runs first, or after the same one
    k=$(((r - 1) % ${#CONTENDERS[@]}))
    for c in "${CONTENDERS[@]:k}" "${CONTENDERS[@]:0:k}"; do
      [[ -n "${NO_SESSION[$c]:-}" ]] && continue
      log "round $r/$rounds: $c [$((SECONDS - start_all)) s, load $(cut -d' ' -f1 /proc/loadavg)]"
      start "$c" || continue
      for kind in "${LOADS[@]}"; do
        for level in "${LEVELS[@]}"; do
          read -r interval offered <<<"$(level_rate "$kind" "$level")"
          measure "$c" "$(workers_of "$c")" "$kind" "$level" "$r" "$interval" "$offered"
          no_session "$c" && break 2
        done
      done
      contender_stop
    done
  done
fi

# --- deploy under load (behind nginx) ------------------------------------------------------------
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
  local c="$1" action="$2" prefix="$out/raw/deploy-$1-$2" t0 t1 load started
  mkdir -p "$out/raw"
  log "deploy: $c, $action under load [$((SECONDS - start_all)) s, load $(cut -d' ' -f1 /proc/loadavg)]"
  start "$c" || return 0
  redis-cli -u "$REDIS_URL" flushall >/dev/null
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  started=$(date +%s.%N)
  run_load_start deploy "$prefix" "$clients" "$deploy_duration" "$deploy_interval"
  sleep 6 # connected, and messaging for a few seconds
  t0=$(date +%s.%N)
  deploy_action "$action"
  t1=$(date +%s.%N)
  if run_load_wait "$prefix"; then
    "$NODE24" bench/report.js deploy "$(jq -cn --arg c "$c" --arg action "$action" --argjson n "$(workers_of "$c")" \
      --arg settings "$BENCH_SETTINGS" --arg load "$load" --arg loadend "$(cut -d' ' -f1-3 /proc/loadavg)" \
      --argjson took "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')" \
      --argjson outlasted "$(awk -v s="$started" -v b="$t1" -v d="$deploy_duration" 'BEGIN { print (b - s > d ? "true" : "false") }')" \
      '{contender: $c, action: $action, workers: $n, settings: $settings, action_s: $took, outlasted_phase: $outlasted,
        load_average: {start: $load, end: $loadend}}')" \
      "${BENCH_LOAD_PREFIXES[@]}" >>"$out/deploy.jsonl"
    tail -n 1 "$out/deploy.jsonl" | jq -r '"bench:   \(.contender) \(.action) (took \(.action_s) s): failed requests \(.failed_requests) \(.http_errors), disconnects polling \(.disconnects_polling) upgrade \(.disconnects_upgrade), acks lost polling \(.acks_lost_polling) upgrade \(.acks_lost_upgrade), events missed \(.events_missed) duplicated \(.events_duplicated), longest without an ack \(.max_gap_ms) ms, clients OK \(.clients_ok)/\(.clients), unaffected \(.clients_unaffected)/\(.clients)"' >&2
  fi
  tail -n 1 "$out/deploy.jsonl" | jq -e '.outlasted_phase' >/dev/null 2>&1 &&
    log "  the $action outlasted the messaging phase: what it did after the phase is not counted (--deploy-duration longer)"
  [[ -n "${PM2_HOME:-}" ]] && mkdir -p "$prefix.pm2-logs" && cp "$PM2_HOME"/logs/*.log "$prefix.pm2-logs/" 2>/dev/null || true
  [[ -f "$BENCH_TMP/attach.log" && "$c" == sio_steer* ]] && cp "$BENCH_TMP/attach.log" "$prefix.attach.log"
  contender_stop
}
if ((deploy)); then
  for c in "${CONTENDERS[@]}"; do
    [[ -n "${NO_SESSION[$c]:-}" ]] && { log "deploy: $c left out (no client got a session)"; continue; }
    deploy_once "$c" reload
    deploy_once "$c" sigkill
  done
fi
log "measured in $((SECONDS - start_all)) s"

# --- tables, plots, the JSON line ------------------------------------------------------------------
"$NODE24" bench/report.js summary "$out" >&2
if command -v gnuplot >/dev/null; then
  gnuplot -e "dir='$out'" bench/plots.gp 2>"$out/gnuplot.log" || log "gnuplot failed: $(tail -n 3 "$out/gnuplot.log")"
  if ((publish)); then cp "$out"/bench-*.png docs/; log "plots copied to docs/"; fi
fi
log "results in $out"
cat "$out/summary.json"
