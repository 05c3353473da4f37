# shellcheck shell=bash
# Shared by the end-to-end tests: the real stack (Redis, PM2 cluster of the chat example on Node 24,
# sio-steer) on loopback, with a private PM2_HOME, pin root and lock folder, all removed on exit.
#   . tests/e2e/lib.sh        then: e2e_start_stack [instances]; e2e_attach; e2e_load ARGS...;
#                             nginx_start NAME PORT (with $E2E_TMP/NAME.conf)
# SIO_STEER: the binary (default build/userspace/sio-steer). E2E_KEEP=DIR: copy the results and the
# workers' PM2 logs there at the end.
set -euo pipefail

E2E_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SIO_STEER="${SIO_STEER:-$E2E_ROOT/build/userspace/sio-steer}"
. "$E2E_ROOT/scripts/node-env.sh"

E2E_TMP="$(mktemp -d /tmp/sio-steer-e2e.XXXXXX)"
E2E_PINS="/sys/fs/bpf/sio-steer-e2e-$$"   # bpffs names may not contain dots
E2E_LOCKS="$E2E_TMP/locks"
export SIO_STEER_LOCK_DIR="$E2E_LOCKS"  # where the workers find sio-steer's control socket
export SIO_STEER_PEER_DIR="$E2E_TMP/peers"  # where the workers find each other (sio-steer-drain)
E2E_CTL_PID=""
E2E_BG_PIDS=()
mkdir -p "$E2E_PINS"

e2e_cleanup() {
  local rc=$?
  local p
  for p in "${E2E_BG_PIDS[@]}" $E2E_CTL_PID; do kill "$p" 2>/dev/null || true; done
  for p in "${E2E_BG_PIDS[@]}" $E2E_CTL_PID; do wait "$p" 2>/dev/null || true; done
  if [[ -n "${CHAT_PORT:-}" && -d "$E2E_PINS/$CHAT_PORT" ]]; then
    "$SIO_STEER" detach --port "$CHAT_PORT" --pin-root "$E2E_PINS" --lock-dir "$E2E_LOCKS" >/dev/null 2>&1 || true
  fi
  if [[ -n "${E2E_KEEP:-}" && -n "${REDIS_PORT:-}" ]]; then  # and the Redis stream of broadcasts
    mkdir -p "$E2E_KEEP" && redis-cli -p "$REDIS_PORT" XRANGE socket.io - + >"$E2E_KEEP/stream.txt" 2>/dev/null || true
  fi
  if [[ -n "${E2E_KEEP:-}" ]]; then  # keep the results and the workers' logs for a look
    mkdir -p "$E2E_KEEP" && cp -r "$E2E_TMP/." "$E2E_KEEP/" && cp -r "${PM2_HOME:-/nonexistent}/logs" "$E2E_KEEP/pm2-logs" 2>/dev/null &&
      cp "$PM2_HOME/pm2.log" "$E2E_KEEP/pm2-logs/daemon.log" 2>/dev/null || true
  fi
  node_env_cleanup
  rm -rf "$E2E_PINS" "$E2E_TMP"
  return $rc
}
trap e2e_cleanup EXIT

e2e_log() { echo "e2e: $*" >&2; }
e2e_fail() { echo "e2e: FAIL: $*" >&2; exit 1; }

# Redis and a PM2 cluster of the chat example on a free port ($CHAT_PORT).
e2e_start_stack() {
  redis_start
  pm2_start_cluster "$(free_port)" "${1:-4}" || e2e_fail "the PM2 cluster did not start"
  e2e_log "PM2 cluster of ${1:-4} on :$CHAT_PORT"
}

# A following `sio-steer attach` in the background; returns once the workers are in the map.
e2e_attach() {
  "$SIO_STEER" attach --port "$CHAT_PORT" --pin-root "$E2E_PINS" --lock-dir "$E2E_LOCKS" "$@" \
    >"$E2E_TMP/attach.log" 2>&1 &
  E2E_CTL_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q "following port" "$E2E_TMP/attach.log" && return 0
    kill -0 "$E2E_CTL_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$E2E_TMP/attach.log" >&2
  e2e_fail "sio-steer attach did not start following"
}

# nginx, with its own prefix folder, stopped by pid (and by the cleanup, with the other background pids).
NGINX_PID=""

# nginx_main_conf DIR SITE: DIR/nginx.conf, one foreground process with its files in DIR, SITE in its http {}.
nginx_main_conf() {
  local dir="$1" site="$2"
  cat >"$dir/nginx.conf" <<EOF
master_process off;
daemon off;
worker_rlimit_nofile 16384;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $site;
}
EOF
}

# nginx_start NAME PORT: nginx with $E2E_TMP/NAME.conf in its http {}, on 127.0.0.1:PORT.
nginx_start() {
  local name="$1" port="$2" dir="$E2E_TMP/nginx-$1" i
  mkdir -p "$dir"
  nginx_main_conf "$dir" "$E2E_TMP/$name.conf"
  nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ||
    { cat "$dir/error.log" >&2; e2e_fail "nginx -t refused the configuration $name"; }
  e2e_log "ok: nginx -t accepts $name"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  NGINX_PID=$!
  E2E_BG_PIDS+=("$NGINX_PID")
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$dir/error.log" >&2
  e2e_fail "nginx ($name) is not listening on $port"
}

nginx_stop() {
  [[ -n "$NGINX_PID" ]] || return 0
  kill "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=""
}

e2e_status() { "$SIO_STEER" status --port "$CHAT_PORT" --pin-root "$E2E_PINS" "$@"; }

# Runs load.js against the cluster; its JSON summary goes to the file named by $1.
e2e_load() {
  local out="$1"
  shift
  "$NODE24" "$CHAT_DIR/load.js" --url "http://127.0.0.1:$CHAT_PORT" "$@" 2>"$out.log" | tail -n 1 >"$out"
  [[ -s "$out" ]] || { cat "$out.log" >&2; e2e_fail "load.js printed no summary"; }
}

# Starts e2e_load in the background; wait for it with `wait $E2E_LOAD_PID`.
e2e_load_bg() {
  e2e_load "$@" &
  E2E_LOAD_PID=$!
  E2E_BG_PIDS+=("$E2E_LOAD_PID")
}

# jq -e over a JSON file: fails the test with the expression and the summary when false.
e2e_expect() {
  local file="$1" expr="$2" what="$3"
  if ! jq -e "$expr" "$file" >/dev/null; then
    jq -c 'del(.per_client)' "$file" >&2
    # and a few of the clients something went wrong for, with what they saw
    jq -c '[.per_client[]? | select(.events_duplicated + .events_missed + .http_400 + .resets + .connect_errors > 0 or .disconnects > 1)] | .[:4][]' "$file" >&2 || true
    e2e_fail "$what  [jq: $expr]"
  fi
  e2e_log "ok: $what"
}

# One line of numbers for the log: OK clients, 400s, latency.
e2e_summary() {
  jq -r '"clients_ok=\(.clients_ok)/\(.clients) session_unknown_400=\(.session_unknown_400) http_400=\(.http_400) resets=\(.resets) connect_errors=\(.connect_errors) acks=\(.acks.received)/\(.acks.expected) broadcasts=\(.broadcasts.received)/\(.broadcasts.expected) p50=\(.latency_ms.p50)ms p99=\(.latency_ms.p99)ms"' "$1"
}
