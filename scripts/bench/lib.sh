# shellcheck shell=bash
# scripts/bench.sh's pieces, sourced after scripts/node-env.sh (scripts/bench/profile.sh uses them too).
#
# The four contenders, each serving examples/chat with the same server.js, the same Redis
# ($REDIS_URL) and N workers:
#   contender_start NAME N   start it; sets BENCH_URL (what the clients connect to),
#                            BENCH_PROXY_PIDS (nginx master and workers, the sticky primary, the
#                            sio-steer controller; empty for fork) and BENCH_WORKER_PIDS
#   contender_stop NAME      stop what contender_start started
#
# The load and what it costs:
#   run_load KIND PREFIX CLIENTS SECONDS   $BENCH_LOADGENS load.js side by side against $BENCH_URL
#   cpu_s PID...  machine_busy_s  bpf_prog
#
# Needs: BENCH_TMP (a private temp folder), BENCH_PINS (a bpffs folder), SIO_STEER (the binary;
# SIO_STEER_ATTACH_ARGS: more `attach` options, e.g. "--resync-interval 60000"),
# STICKY_LB (@socket.io/sticky's loadBalancingMethod), NGINX_UPSTREAM_KEEPALIVE (0: none, the
# Socket.IO docs' configuration; N: `keepalive N` in the upstream).

_bench_log() { echo "bench: $*" >&2; }

# children PID: the direct children of a process (nginx's workers, the sticky primary's workers)
children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' | tr '\n' ' '; }

# wait_listening PORT [COUNT]: until COUNT listeners are on 127.0.0.1 or [::] PORT (10 s at most)
wait_listening() {
  local port="$1" want="${2:-1}" i
  for ((i = 0; i < 100; i++)); do
    (($(ss -Hltn "sport = :$port" 2>/dev/null | wc -l) >= want)) && return 0
    sleep 0.1
  done
  _bench_log "nothing listening on :$port after 10 s"
  return 1
}

# free_ports N: the first of N consecutive free ports (bounded search)
free_ports() {
  local n="$1" base k tries ok
  for ((tries = 0; tries < 50; tries++)); do
    base="$(free_port)"
    ((base + n < 65535)) || continue
    ok=1
    for ((k = 1; k < n; k++)); do
      ss -Hltn "sport = :$((base + k))" | grep -q . && { ok=0; break; }
    done
    ((ok)) && { echo "$base"; return 0; }
  done
  return 1
}

BENCH_CTL_PID="" BENCH_NGINX_PID="" BENCH_STICKY_PID="" BENCH_PORT=""

contender_start() {
  local name="$1" n="$2"
  BENCH_PROXY_PIDS="" BENCH_WORKER_PIDS=""
  case "$name" in
    sio_steer)
      BENCH_PORT="$(free_port)"
      pm2_start_cluster "$BENCH_PORT" "$n" cluster || return 1
      # shellcheck disable=SC2086 # SIO_STEER_ATTACH_ARGS: extra options, word-split on purpose
      "$SIO_STEER" attach --port "$BENCH_PORT" --pin-root "$BENCH_PINS" --lock-dir "$BENCH_TMP/locks" \
        ${SIO_STEER_ATTACH_ARGS:-} >"$BENCH_TMP/attach.log" 2>&1 &
      BENCH_CTL_PID=$!
      local i
      for ((i = 0; i < 100; i++)); do
        grep -q "following port" "$BENCH_TMP/attach.log" && break
        kill -0 "$BENCH_CTL_PID" 2>/dev/null || break
        sleep 0.1
      done
      grep -q "following port" "$BENCH_TMP/attach.log" || { cat "$BENCH_TMP/attach.log" >&2; return 1; }
      BENCH_PROXY_PIDS="$BENCH_CTL_PID"
      BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')"
      ;;
    nginx_hash)
      # PM2 fork mode, instance i on its own port base + i, and nginx in front hashing on the client
      # address, configured as the Socket.IO documentation shows ("Using multiple nodes").
      local base k servers="" dir="$BENCH_TMP/nginx" ka="" conn='"upgrade"'
      base="$(free_ports "$n")" || return 1
      PORT_PER_INSTANCE=1 SIO_REUSEPORT=0 pm2_start_cluster "$base" "$n" fork || return 1
      for ((k = 0; k < n; k++)); do
        wait_listening $((base + k)) || return 1
        servers+="        server 127.0.0.1:$((base + k));"$'\n'
      done
      BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')"
      BENCH_PORT="$(free_port)"
      if ((NGINX_UPSTREAM_KEEPALIVE > 0)); then
        # idle connections to the workers need "Connection: " cleared for plain requests
        ka="        keepalive $NGINX_UPSTREAM_KEEPALIVE;"
        conn='$bench_connection'
      fi
      rm -rf "$dir" && mkdir -p "$dir"
      cat >"$dir/nginx.conf" <<CONF
# Debian's defaults where the Socket.IO example says nothing: one worker per core, keepalive_timeout
# 65 s towards the clients; access_log off (nginx's best case).
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_timeout 65;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    map \$http_upgrade \$bench_connection { default upgrade; "" ""; }
    upstream nodes {
        hash \$remote_addr consistent;
$servers$ka
    }
    server {
        listen 127.0.0.1:$BENCH_PORT;
        location / {
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header Host \$host;
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection $conn;
        }
    }
}
CONF
      nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" || { cat "$dir/error.log" >&2; return 1; }
      nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
      BENCH_NGINX_PID=$!
      wait_listening "$BENCH_PORT" || return 1
      sleep 0.2 # workers forked
      BENCH_PROXY_PIDS="$BENCH_NGINX_PID $(children "$BENCH_NGINX_PID")"
      ;;
    socketio_sticky)
      BENCH_PORT="$(free_port)"
      PORT="$BENCH_PORT" INSTANCES="$n" STICKY_LB="$STICKY_LB" "$NODE24" "$CHAT_DIR/sticky.js" \
        >"$BENCH_TMP/sticky.log" 2>&1 &
      BENCH_STICKY_PID=$!
      wait_listening "$BENCH_PORT" || { cat "$BENCH_TMP/sticky.log" >&2; return 1; }
      BENCH_PROXY_PIDS="$BENCH_STICKY_PID"
      BENCH_WORKER_PIDS="$(children "$BENCH_STICKY_PID")"
      ;;
    fork)
      BENCH_PORT="$(free_port)"
      pm2_start_cluster "$BENCH_PORT" 1 fork || return 1
      BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')"
      ;;
    *) _bench_log "unknown contender $name"; return 1 ;;
  esac
  BENCH_URL="http://127.0.0.1:$BENCH_PORT"
}

# stop PID: SIGTERM, wait up to 5 s, then SIGKILL (only processes this script started)
_stop_pid() {
  local pid="$1" i
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

contender_stop() {
  local name="$1" p kids
  case "$name" in
    sio_steer)
      _stop_pid "$BENCH_CTL_PID"
      BENCH_CTL_PID=""
      "$SIO_STEER" detach --port "$BENCH_PORT" --pin-root "$BENCH_PINS" --lock-dir "$BENCH_TMP/locks" >/dev/null 2>&1 || true
      pm2_stop_cluster
      ;;
    nginx_hash)
      kids="$(children "${BENCH_NGINX_PID:-0}")"
      _stop_pid "$BENCH_NGINX_PID"
      for p in $kids; do _stop_pid "$p"; done
      BENCH_NGINX_PID=""
      pm2_stop_cluster
      ;;
    socketio_sticky)
      kids="$(children "${BENCH_STICKY_PID:-0}")"
      _stop_pid "$BENCH_STICKY_PID" # stops its workers first
      for p in $kids; do kill -9 "$p" 2>/dev/null || true; done
      BENCH_STICKY_PID=""
      ;;
    fork) pm2_stop_cluster ;;
  esac
  BENCH_PROXY_PIDS="" BENCH_WORKER_PIDS=""
}

# stop whatever is still running (EXIT trap): load generators, then the contenders
BENCH_LOAD_PIDS=()
contenders_cleanup() {
  local p
  for p in "${BENCH_LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BENCH_LOAD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$BENCH_CTL_PID" ]]; then contender_stop sio_steer; fi
  if [[ -n "$BENCH_NGINX_PID" ]]; then contender_stop nginx_hash; fi
  if [[ -n "$BENCH_STICKY_PID" ]]; then contender_stop socketio_sticky; fi
  pm2_stop_cluster || true
}

# --- the load and what it costs ----------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
# cpu_s PID...: user + system CPU seconds of these processes (gone ones count 0)
cpu_s() {
  local p t=0 v
  for p in "$@"; do
    v="$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')" || v=0
    t=$((t + ${v:-0}))
  done
  awk -v t="$t" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}
# machine_busy_s: CPU seconds the whole machine spent busy (all CPUs, /proc/stat: not idle, not iowait)
machine_busy_s() {
  awk -v hz="$CLK_TCK" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
# bpf_prog: "run_time_ns run_cnt" of the pinned steering program (0 0 without one)
bpf_prog() {
  bpftool prog show pinned "$BENCH_PINS/$BENCH_PORT/program" -j 2>/dev/null |
    jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"' 2>/dev/null || echo "0 0"
}

# run_load KIND PREFIX CLIENTS SECONDS: $BENCH_LOADGENS load.js side by side, each its own source addresses
run_load() {
  local kind="$1" prefix="$2" n_clients="$3" secs="$4" g per
  per=$((n_clients / BENCH_LOADGENS))
  local flags=(--url "$BENCH_URL" --messages 0 --interval 0 --wait-ack --duration "$secs"
    --time-limit $((secs + 40)) --no-clients --ack-timeout 10)
  case "$kind" in
    polling) flags+=(--polling "$per" --upgrade 0 --keepalive) ;;
    polling_close) flags+=(--polling "$per" --upgrade 0) ;;
    upgrade) flags+=(--polling 0 --upgrade "$per") ;;
  esac
  BENCH_LOAD_PIDS=()
  for ((g = 0; g < BENCH_LOADGENS; g++)); do
    "$NODE24" "$CHAT_DIR/load.js" "${flags[@]}" --src-base "127.$((20 + g)).0.1" --name-prefix "g$g-" --samples-out "$prefix.$g" \
      >"$prefix.$g.out" 2>"$prefix.$g.log" &
    BENCH_LOAD_PIDS+=($!)
  done
  for g in "${BENCH_LOAD_PIDS[@]}"; do wait "$g" || true; done
  BENCH_LOAD_PIDS=()
  for ((g = 0; g < BENCH_LOADGENS; g++)); do tail -n 1 "$prefix.$g.out" >"$prefix.$g.json"; done
}

