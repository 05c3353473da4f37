#!/usr/bin/env bash
# Where the CPU goes for one contender of bench/run.sh under one load: perf samples of the whole
# machine during the messaging phase (call graphs), split by process and by symbol; for sio-steer the
# program's own bpf_stats; from /proc over the same window, the CPU of each process class (as
# bench/run.sh counts it), system calls and context switches, the TCP connections accepted, `ss -s`.
# For "why does this contender cost more per event".
#
#   bench/profile.sh [--behind-nginx] CONTENDER [--workers N] [--load polling|upgrade|polling_close]
#       [--interval MS] [--clients N] [--duration S] [--out DIR]
#
# CONTENDER: one of bench/lib.sh's. --interval: each client's message interval (open loop; 0, the
# default: closed loop). SIO_STEER_NGINX_CONF_ARGS / SIO_STEER_ATTACH_ARGS vary sio-steer's
# configuration. Writes DIR/perf.data and DIR/profile.txt (printed too). Needs root and perf
# (linux-perf). On loopback the kernel's TCP receive work runs in the *sender's* context: a client's
# requests are partly charged to load.js, nginx's upstream traffic to nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
ORIG_ARGS=("$@")
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
. bench/lib.sh
BENCH_FRONT=none
if [[ "${1:-}" == --behind-nginx ]]; then BENCH_FRONT=tls; shift; fi
c="${1:-}"
bench_known "$c" || usage
shift
workers=2 load=polling interval=0 clients=200 duration=12 out=""
bench_parse_options "workers load interval clients duration out" "" "$@"
n=$workers kind=$load
[[ "$n" =~ ^[0-9]+$ && "$clients" =~ ^[0-9]+$ && "$duration" =~ ^[0-9]+$ && "$interval" =~ ^[0-9]+$ &&
   "$kind" =~ ^(polling|upgrade|polling_close)$ ]] || usage
((duration >= 8)) || { echo "profile: --duration at least 8" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "profile: run as root" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile: perf not found (apt-get install linux-perf)" >&2; exit 1; }
[[ "$c" == fork ]] && n=1

SIO_STEER="${SIO_STEER:-$PWD/build/userspace/sio-steer}"
[[ "$c" != sio_steer* || -x "$SIO_STEER" ]] || SIO_STEER="$PWD/$(scripts/build.sh)"
export SIO_STEER
if [[ -z "${SIO_STEER_BENCH_NETNS:-}" ]]; then
  . scripts/node-env.sh # npm ci (if needed) while the network is there
  if [[ "$c" == socketio_pm2 ]]; then socketio_pm2_install; fi
fi
bench_netns "$ROOT/bench/profile.sh" "${ORIG_ARGS[@]}"
. scripts/node-env.sh
BENCH_LOADGENS=2 BENCH_NGINX_KEEPALIVE="${BENCH_NGINX_KEEPALIVE:-1024}" STICKY_LB="${STICKY_LB:-least-connection}"
export BENCH_FRONT BENCH_LOADGENS BENCH_NGINX_KEEPALIVE STICKY_LB
out="${out:-$(mktemp -d /tmp/sio-steer-profile.XXXXXX)}"
mkdir -p "$out"
bench_setup
[[ "$BENCH_FRONT" == tls ]] && bench_tls_cert "$BENCH_TMP"
[[ "$c" == socketio_pm2 ]] && socketio_pm2_install
contender_start "$c" "$n"
run_load polling "$BENCH_TMP/warmup" $((clients / 2)) 2 0 >/dev/null 2>&1 || true
run_load_start "$kind" "$out/load" "$clients" "$duration" "$interval"
wait_connected "$BENCH_ENTRY_PORT" $((clients * 9 / 10)) || true
settle="$(awk -v i="$interval" 'BEGIN { printf "%.2f", 2.5 + i / 1000 }')"
sleep "$settle" # messaging under way
# perf's window ends well before the phase does (perf takes a moment to stop): the load generators
# are still there for the last sample
window="$(awk -v d="$duration" -v s="$settle" 'BEGIN { w = int(d - s - 3); print (w < 2 ? 2 : w) }')"
read -r -a b0 <<<"$(bpf_prog)"
read -r -a c0 <<<"$(cpu_sample)"
o0="$(nstat -asz TcpPassiveOpens 2>/dev/null | awk '$1 == "TcpPassiveOpens" {print $2}')"
# system calls (reads, writes: /proc/PID/io) and context switches of a process class
sys_calls() { local p r=0 w=0 x=0; for p in "$@"; do
    r=$((r + $(awk '/^syscr/ {print $2}' "/proc/$p/io" 2>/dev/null || echo 0)))
    w=$((w + $(awk '/^syscw/ {print $2}' "/proc/$p/io" 2>/dev/null || echo 0)))
    x=$((x + $(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done; echo "$r $w $x"; }
# shellcheck disable=SC2086 # pid lists
io_classes() { echo "$(sys_calls $BENCH_WORKER_PIDS) $(sys_calls $BENCH_NGINX_PIDS) $(sys_calls "$REDIS_PID")"; }
read -r -a s0 <<<"$(io_classes)"
perf record -a -g -F 499 -o "$out/perf.data" -- sleep "$window" 2>"$out/perf-record.log" >/dev/null
read -r -a c1 <<<"$(cpu_sample)"
read -r -a s1 <<<"$(io_classes)"
o1="$(nstat -asz TcpPassiveOpens 2>/dev/null | awk '$1 == "TcpPassiveOpens" {print $2}')"
read -r -a b1 <<<"$(bpf_prog)"
ss -s >"$out/ss-s.txt" 2>&1
run_load_wait "$out/load" || true
{
  echo "== $c, $n worker(s), $kind load, $clients clients, interval ${interval} ms; perf: all CPUs, $window s of messaging"
  echo "   settings: $BENCH_SETTINGS"
  for f in "$out"/load.*.json; do jq -r '"   load.js: \(.rate.events_per_s) events/s, \(.rate.requests_per_s) HTTP req/s, p99 \(.latency_ms.p99) ms, \(.tcp_connections) TCP connections"' "$f"; done
  if ((b1[1] > b0[1])); then echo "   steering program: $((b1[1] - b0[1])) runs, $(((b1[0] - b0[0]) / (b1[1] - b0[1]))) ns per run (bpf_stats)"; fi
  k=1
  line="   CPU seconds over the window (schedstat):"
  for name in workers nginx controller/router pm2 redis load.js machine; do
    line+=" $name $(awk -v a="${c0[k]}" -v b="${c1[k]}" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')"
    k=$((k + 1))
  done
  echo "$line"
  echo "   TCP connections accepted in the namespace meanwhile (by nginx and the workers): $((${o1:-0} - ${o0:-0}))"
  echo "   reads / writes / context switches: workers $((s1[0] - s0[0])) / $((s1[1] - s0[1])) / $((s1[2] - s0[2])), nginx $((s1[3] - s0[3])) / $((s1[4] - s0[4])) / $((s1[5] - s0[5])), redis $((s1[6] - s0[6])) / $((s1[7] - s0[7])) / $((s1[8] - s0[8]))"
  echo "   ss -s: $(grep -E '^TCP:' "$out/ss-s.txt")"
  echo
  echo "== samples by process (pid:comm), kernel and user"
  perf report -i "$out/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
  top_symbols() { # title pids
    [[ -n "${2// /}" ]] || return 0
    echo
    echo "== top symbols of the $1 ($2)"
    perf report -i "$out/perf.data" --no-children --pid "$(echo $2 | tr -s ' ' ,)" --sort dso,sym --stdio -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -25 || true
  }
  top_symbols workers "$BENCH_WORKER_PIDS"
  top_symbols nginx "$BENCH_NGINX_PIDS"
  top_symbols "controller or router" "$BENCH_CTL_PIDS"
} | tee "$out/profile.txt"
