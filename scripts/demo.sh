#!/usr/bin/env bash
# The demo: a Socket.IO chat under a PM2 cluster (4 workers, reusePort, Redis Streams adapter) on port 5001,
# the same client load without and then with sio-steer, the results side by side, then
# `sio-steer status`. Installs what is missing, builds, and stops everything it started.
#   scripts/demo.sh [--port 5001] [--workers 4] [--clients 200]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."

port=5001 workers=4 clients=200
while (($#)); do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    *) echo "usage: scripts/demo.sh [--port N] [--workers N] [--clients N per transport]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh: run as root (it installs packages and loads a BPF program); as another user: sudo scripts/demo.sh" >&2; exit 1; }
if ss -Hltn "sport = :$port" | grep -q .; then
  echo "demo: port $port is in use; pick another with --port" >&2
  exit 1
fi

echo "== installing what is missing, building"
scripts/install-deps.sh
SIO_STEER=$(scripts/build.sh)
. scripts/node-env.sh

pins=/sys/fs/bpf/sio-steer-demo
tmp=$(mktemp -d /tmp/sio-steer-demo.XXXXXX)
ctl=""
cleanup() {
  [ -n "$ctl" ] && kill "$ctl" 2>/dev/null && wait "$ctl" 2>/dev/null
  "$SIO_STEER" detach --port "$port" --pin-root "$pins" --lock-dir "$tmp" >/dev/null 2>&1 || true
  rmdir "$pins" 2>/dev/null || true
  node_env_cleanup
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== Redis, and PM2 cluster mode: $workers workers of examples/chat on :$port (Node $("$NODE24" --version))"
redis_start
# the app as most are: a request that reaches a worker without its session gets a 400 (the example's
# safety net, sio-steer-drain passing such a request on to the right worker, is off here)
SIO_PASS_ON=0 pm2_start_cluster "$port" "$workers"
ss -Hltnp "sport = :$port" | awk '{print "   listener " $4 "  " $6}'

load() {  # label, source base
  "$NODE24" "$CHAT_DIR/load.js" --url "http://127.0.0.1:$port" --polling "$clients" --upgrade "$clients" \
    --messages 4 --interval 2000 --time-limit 60 --src-base "$2" --no-clients 2>/dev/null | tail -n 1 >"$tmp/$1.json"
}

echo "== $((2 * clients)) Socket.IO clients ($clients long-polling, $clients upgrading to WebSocket), each from its own address, WITHOUT sio-steer"
load without 127.1.0.0
echo "== the same load WITH sio-steer attach --port $port"
mkdir -p "$pins"
"$SIO_STEER" attach --port "$port" --pin-root "$pins" --lock-dir "$tmp" >"$tmp/attach.log" 2>&1 &
ctl=$!
for _ in $(seq 100); do grep -q "following port" "$tmp/attach.log" && break; sleep 0.1; done
sed 's/^/   /' "$tmp/attach.log"
load with 127.2.0.0

row() { jq -r --arg l "$1" '[$l, "\(.clients_ok)/\(.clients)", .session_unknown_400, .connect_errors,
  "\(.acks.received)/\(.acks.expected)", "\(.broadcasts.received)/\(.broadcasts.expected)",
  (.latency_ms.p50 // "-"), (.latency_ms.p99 // "-"), ([.workers[] | select(.clients > 0)] | length)] | @tsv' "$2"; }
echo
{
  printf 'setup\tclients OK\t"Session ID unknown" 400s\tconnect errors\tacks\tbroadcasts\tp50 ms\tp99 ms\tworkers used\n'
  row "PM2 cluster, no steering" "$tmp/without.json"
  row "PM2 cluster + sio-steer" "$tmp/with.json"
} | column -t -s $'\t'
echo
echo "== sio-steer status --port $port"
"$SIO_STEER" status --port "$port" --pin-root "$pins"
