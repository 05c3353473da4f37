#!/usr/bin/env bash
# Where the CPU goes for one contender of scripts/bench.sh under its load: perf samples of the whole
# machine during the messaging phase (call graphs), split by process and by symbol, and for sio-steer
# the program's own bpf_stats; also, from /proc, the CPU seconds of each process group over the
# same window, the TCP connections each side accepted, and `ss -s`. For "why is this contender slower".
#
#   scripts/bench/profile.sh sio_steer|nginx_hash|socketio_sticky|fork [--workers N]
#       [--load polling|upgrade|polling_close] [--clients N] [--duration S] [--out DIR]
#   scripts/bench/profile.sh --behind-nginx sio_steer|sio_steer_bind|nginx_hash_keepalive|nginx_ip_hash|
#       socketio_pm2|fork [same options]     the contender behind nginx with TLS (scripts/bench.sh --behind-nginx)
#
# BENCH_SIO_EXEC_MODE=fork: sio-steer's workers in PM2 fork mode (each listening with reusePort)
# instead of cluster mode. Writes DIR/perf.data and DIR/profile.txt (printed too). Needs root and
# perf (linux-perf).
# On loopback, the kernel's TCP receive work of a connection runs in the *sender's* context, so a
# client's SYN and requests are partly charged to load.js, and nginx's upstream traffic to nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."
ORIG_ARGS=("$@")
behind=0
if [[ "${1:-}" == --behind-nginx ]]; then behind=1; shift; fi
c="${1:-}"
if ((behind)); then
  [[ "$c" =~ ^(sio_steer|sio_steer_fork|sio_steer_bind|nginx_hash_keepalive|nginx_ip_hash|socketio_pm2|fork)$ ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
else
  [[ "$c" =~ ^(sio_steer|nginx_hash|socketio_sticky|fork)$ ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
fi
shift
n=2 kind=polling clients=200 duration=10 out=""
while (($#)); do
  case "$1" in
    --workers) n=$2; shift 2 ;;
    --load) kind=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
done
[[ "$n" =~ ^[0-9]+$ && "$clients" =~ ^[0-9]+$ && "$duration" =~ ^[0-9]+$ && "$kind" =~ ^(polling|upgrade|polling_close)$ ]] ||
  { echo "profile: bad option" >&2; exit 2; }
((duration >= 6)) || { echo "profile: --duration at least 6" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "profile: run as root" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile: perf not found (apt-get install linux-perf)" >&2; exit 1; }

ROOT="$PWD"
SIO_STEER="${SIO_STEER:-$PWD/build/userspace/sio-steer}"
[[ "$c" != sio_steer* || -x "$SIO_STEER" ]] || SIO_STEER="$PWD/$(scripts/build.sh)"
export SIO_STEER
if [[ -z "${SIO_STEER_BENCH_NETNS:-}" ]]; then
  # npm ci (if needed) first; then a network namespace of its own: clean connection counts
  . scripts/node-env.sh
  if [[ "$c" == socketio_pm2 ]]; then . scripts/bench/lib.sh; socketio_pm2_install; fi
  SIO_STEER_BENCH_NETNS=1 exec unshare --net -- "$0" "${ORIG_ARGS[@]}"
fi
ip link set lo up
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
if ((behind)); then
  [[ "$c" == fork ]] && n=1
  BENCH_BEHIND_NGINX=1 BENCH_LOAD_EXTRA="--insecure --src-stride 256"
  export BENCH_BEHIND_NGINX
  bench_tls_cert "$BENCH_TMP"
  [[ "$c" == socketio_pm2 ]] && socketio_pm2_install
fi

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
god="$(cat "$PM2_HOME/pm2.pid" 2>/dev/null || true)"
cpu_groups() { # workers nginx controller/router redis pm2-god machine
  echo "$(cpu_s $BENCH_WORKER_PIDS) $(cpu_s ${BENCH_NGINX_PIDS:-}) $(cpu_s $(for p in $BENCH_PROXY_PIDS; do [[ " ${BENCH_NGINX_PIDS:-} " == *" $p "* ]] || echo "$p"; done)) $(cpu_s "$REDIS_PID") $(cpu_s $god) $(machine_busy_s)"
}
read -r -a c0 <<<"$(cpu_groups)"
accepted() { passive_opens; }
a0="$(accepted)"
# system calls (reads, writes: /proc/PID/io) and context switches of a process group
sys_calls() { local p r=0 w=0 x=0; for p in "$@"; do
    r=$((r + $(awk '/^syscr/ {print $2}' "/proc/$p/io" 2>/dev/null || echo 0)))
    w=$((w + $(awk '/^syscw/ {print $2}' "/proc/$p/io" 2>/dev/null || echo 0)))
    x=$((x + $(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done; echo "$r $w $x"; }
io_groups() { echo "$(sys_calls $BENCH_WORKER_PIDS) $(sys_calls ${BENCH_NGINX_PIDS:-}) $(sys_calls "$REDIS_PID")"; }
read -r -a s0 <<<"$(io_groups)"
perf record -a -g -F 499 -o "$out/perf.data" -- sleep $((duration - 4)) 2>"$out/perf-record.log" >/dev/null
read -r -a c1 <<<"$(cpu_groups)"
read -r -a s1 <<<"$(io_groups)"
a1="$(accepted)"
ss -s >"$out/ss-s.txt" 2>&1
# the workers' side of their established connections: what they sent and received, in how many segments
ss -tinH state established "( sport >= :${BENCH_PORT} and sport <= :$((BENCH_PORT + n - 1)) )" 2>/dev/null |
  awk '{ for (i = 1; i <= NF; i++) { split($i, kv, ":");
           if (kv[1] == "bytes_sent") bs += kv[2]; else if (kv[1] == "bytes_received") br += kv[2];
           else if (kv[1] == "data_segs_out") so += kv[2]; else if (kv[1] == "data_segs_in") si += kv[2] }
         if ($0 ~ /bytes_/) c++ }
       END { printf "%d connections; sent %d B in %d segments (%.0f B each), received %d B in %d segments (%.0f B each)\n",
             c, bs, so, so ? bs / so : 0, br, si, si ? br / si : 0 }' >"$out/worker-sockets.txt"
ss -Htn state established "( sport = :${BENCH_PORT} )" 2>/dev/null | wc -l >"$out/established-to-workers.txt"
wait "$LOAD_PID" || true
LOAD_PID=""
read -r -a b1 <<<"$(bpf_prog)"
{
  echo "== $c, $n worker(s), $kind load, $clients clients; perf: all CPUs, $((duration - 4)) s of messaging"
  echo "   worker pids: $BENCH_WORKER_PIDS   proxy/primary/controller pids: ${BENCH_PROXY_PIDS:-none}"
  for f in "$out"/load.*.json; do jq -r '"   load.js: \(.rate.events_per_s) events/s, \(.rate.requests_per_s) HTTP req/s, p99 \(.latency_ms.p99) ms, \(.tcp_connections) TCP connections, its own CPU \(.cpu_ms.user + .cpu_ms.system) ms (whole run)"' "$f"; done
  if [[ "$c" == sio_steer ]] && ((b1[1] > b0[1])); then
    echo "   steering program: $((b1[1] - b0[1])) runs, $(((b1[0] - b0[0]) / (b1[1] - b0[1]))) ns per run (bpf_stats)"
  fi
  echo
  echo "== CPU seconds over the $((duration - 4)) s window (/proc): workers ${c1[0]}-${c0[0]}, nginx ${c1[1]}-${c0[1]}, controller/router ${c1[2]}-${c0[2]}, redis ${c1[3]}-${c0[3]}, pm2 God ${c1[4]}-${c0[4]}, machine busy ${c1[5]}-${c0[5]}" |
    awk '{ while (match($0, /[0-9.]+-[0-9.]+/)) { split(substr($0, RSTART, RLENGTH), v, "-"); $0 = substr($0, 1, RSTART - 1) sprintf("%.2f", v[1] - v[2]) substr($0, RSTART + RLENGTH) } print }'
  echo "   TCP connections accepted in the benchmark's network namespace meanwhile (TcpPassiveOpens: by nginx and by the workers): $((a1 - a0)); established to the workers' port at the end: $(cat "$out/established-to-workers.txt")"
  echo "   system calls over the window (/proc/PID/io), reads / writes / context switches: workers $((s1[0] - s0[0])) / $((s1[1] - s0[1])) / $((s1[2] - s0[2])), nginx $((s1[3] - s0[3])) / $((s1[4] - s0[4])) / $((s1[5] - s0[5])), redis $((s1[6] - s0[6])) / $((s1[7] - s0[7])) / $((s1[8] - s0[8]))"
  echo "   ss -s: $(grep -E '^TCP:' "$out/ss-s.txt")"
  echo "   the workers' connections at the end of the window (ss -ti, over their lifetime): $(cat "$out/worker-sockets.txt")"
  echo
  echo "== samples by process (pid:comm), kernel and user"
  perf report -i "$out/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
  top_symbols() { # title pids
    [[ -n "$2" ]] || return 0
    echo
    echo "== top symbols of the $1 ($2)"
    perf report -i "$out/perf.data" --no-children --pid "$(echo $2 | tr -s ' ' ,)" --sort dso,sym --stdio -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -25 || true
  }
  top_symbols workers "$BENCH_WORKER_PIDS"
  top_symbols "proxy/primary/controller" "$BENCH_PROXY_PIDS"
  top_symbols redis "$REDIS_PID"
} | tee "$out/profile.txt"
contender_stop "$c"
