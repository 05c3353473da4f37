#!/usr/bin/env bash
# Reproduces the baseline without sio-steer: the chat under PM2 cluster x4 (reusePort, then plain
# listen) and under PM2 fork mode x1, each loaded by load.js. Prints one summary line per setup;
# the JSON results go to $OUT (default: a temp dir). Usage: examples/chat/baseline.sh [load.js flags]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../../scripts/node-env.sh"
trap node_env_cleanup EXIT
OUT="${OUT:-$(mktemp -d /tmp/sio-steer-baseline.XXXXXX)}"
mkdir -p "$OUT"
load_args=(--polling 200 --upgrade 200 --messages 5 --time-limit 30 "$@")

redis_start
run() { # name instances mode SIO_REUSEPORT
  local name="$1" n="$2" mode="$3" port
  port="$(free_port)"
  SIO_REUSEPORT="$4" pm2_start_cluster "$port" "$n" "$mode"
  pm2_worker_pids >"$OUT/$name.workers"
  ss -Hltnp "sport = :$port" >"$OUT/$name.ss"
  "$NODE24" "$here/load.js" --url "http://127.0.0.1:$port" "${load_args[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log"
  pm2_stop_cluster
  echo "== $name: $(wc -l <"$OUT/$name.ss") listener(s) on :$port"
  cat "$OUT/$name.ss" "$OUT/$name.log"
}
run cluster4-reuseport 4 cluster 1
run cluster4-plain 4 cluster 0
run fork1 1 fork 1
echo "results in $OUT"
