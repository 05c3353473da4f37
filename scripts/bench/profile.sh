#!/usr/bin/env bash
# Where the CPU goes for one contender of scripts/bench.sh under its load: perf samples of the whole
# machine during the messaging phase (call graphs), split by process and by symbol, and for sio-steer
# the program's own bpf_stats. For "why is this contender slower".
#
#   scripts/bench/profile.sh sio_steer|nginx_hash|socketio_sticky|fork [--workers N]
#       [--load polling|upgrade|polling_close] [--clients N] [--duration S] [--out DIR]
#
# Writes DIR/perf.data and DIR/profile.txt (printed too). Needs root and perf (linux-perf).
# On loopback, the kernel's TCP receive work of a connection runs in the *sender's* context, so a
# client's SYN and requests are partly charged to load.js, and nginx's upstream traffic to nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."
c="${1:-}"
[[ "$c" =~ ^(sio_steer|nginx_hash|socketio_sticky|fork)$ ]] || { sed -n '2,12p' "$0" >&2; exit 2; }
shift
n=2 kind=polling clients=200 duration=10 out=""
while (($#)); do
  case "$1" in
    --workers) n=$2; shift 2 ;;
    --load) kind=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
  esac
done
[[ "$n" =~ ^[0-9]+$ && "$clients" =~ ^[0-9]+$ && "$duration" =~ ^[0-9]+$ && "$kind" =~ ^(polling|upgrade|polling_close)$ ]] ||
  { echo "profile: bad option" >&2; exit 2; }
((duration >= 6)) || { echo "profile: --duration at least 6" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "profile: run as root" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile: perf not found (apt-get install linux-perf)" >&2; exit 1; }

SIO_STEER="${SIO_STEER:-$PWD/build/userspace/sio-steer}"
[[ "$c" != sio_steer || -x "$SIO_STEER" ]] || SIO_STEER="$PWD/$(scripts/build.sh)"
export SIO_STEER STICKY_LB="${STICKY_LB:-least-connection}" NGINX_UPSTREAM_KEEPALIVE="${NGINX_UPSTREAM_KEEPALIVE:-0}" BENCH_LOADGENS=2
. scripts/node-env.sh
. scripts/bench/lib.sh
out="${out:-$(mktemp -d /tmp/sio-steer-profile.XXXXXX)}"
mkdir -p "$out"
BENCH_TMP="$(mktemp -d /tmp/sio-steer-bench-tmp.XXXXXX)"
BENCH_PINS="/sys/fs/bpf/sio-steer-profile-$$"
mkdir -p "$BENCH_PINS" "$BENCH_TMP/locks"
STATS_PID="" LOAD_PID=""
cleanup() {
  if [[ -n "$LOAD_PID" ]]; then wait "$LOAD_PID" 2>/dev/null || true; fi
  contenders_cleanup
  if [[ -n "$STATS_PID" ]]; then kill "$STATS_PID" 2>/dev/null || true; wait "$STATS_PID" 2>/dev/null || true; fi
  redis_stop
  rmdir "$BENCH_PINS" 2>/dev/null || true
  rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -Wall -o "$BENCH_TMP/bpf-stats" scripts/bench/bpf-stats.c
"$BENCH_TMP/bpf-stats" >/dev/null 2>&1 &
STATS_PID=$!
redis_start
contender_start "$c" "$n"
run_load polling "$BENCH_TMP/warmup" $((clients / 2)) 2 >/dev/null 2>&1 || true
read -r -a b0 <<<"$(bpf_prog)"
run_load "$kind" "$out/load" "$clients" "$duration" &
LOAD_PID=$!
sleep 3 # clients connected, messaging under way
perf record -a -g -F 499 -o "$out/perf.data" -- sleep $((duration - 4)) 2>"$out/perf-record.log" >/dev/null
wait "$LOAD_PID" || true
LOAD_PID=""
read -r -a b1 <<<"$(bpf_prog)"
{
  echo "== $c, $n worker(s), $kind load, $clients clients; perf: all CPUs, $((duration - 4)) s of messaging"
  echo "   worker pids: $BENCH_WORKER_PIDS   proxy/primary/controller pids: ${BENCH_PROXY_PIDS:-none}"
  for f in "$out"/load.*.json; do jq -r '"   load.js: \(.rate.events_per_s) events/s, \(.rate.requests_per_s) HTTP req/s, p99 \(.latency_ms.p99) ms, \(.tcp_connections) TCP connections"' "$f"; done
  if [[ "$c" == sio_steer ]] && ((b1[1] > b0[1])); then
    echo "   steering program: $((b1[1] - b0[1])) runs, $(((b1[0] - b0[0]) / (b1[1] - b0[1]))) ns per run (bpf_stats)"
  fi
  echo
  echo "== samples by process (pid:comm), kernel and user"
  perf report -i "$out/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
  top_symbols() { # title pids
    [[ -n "$2" ]] || return 0
    echo
    echo "== top symbols of the $1 ($2)"
    perf report -i "$out/perf.data" --no-children --pid "$(echo $2 | tr ' ' ,)" --sort dso,sym --stdio -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -25 || true
  }
  top_symbols workers "$BENCH_WORKER_PIDS"
  top_symbols "proxy/primary/controller" "$BENCH_PROXY_PIDS"
  top_symbols redis "$REDIS_PID"
} | tee "$out/profile.txt"
contender_stop "$c"
