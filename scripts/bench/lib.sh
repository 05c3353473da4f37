# shellcheck shell=bash
# scripts/bench.sh's pieces, sourced after scripts/node-env.sh (scripts/bench/profile.sh and
# scripts/bench/behind-nginx.sh use them too).
#
# The four direct contenders, each serving examples/chat with the same server.js, the same Redis
# ($REDIS_URL) and N workers:
#   contender_start NAME N   start it; sets BENCH_URL (what the clients connect to),
#                            BENCH_PROXY_PIDS (nginx master and workers, the sticky primary, the
#                            sio-steer controller; empty for fork) and BENCH_WORKER_PIDS
#   contender_stop NAME      stop what contender_start started
#
# Behind nginx (scripts/bench.sh --behind-nginx): nginx terminating TLS on 127.0.0.1 in front of
#   sio_steer             PM2 cluster (reusePort), `sio-steer attach --key destination`, and the
#                         configuration `sio-steer nginx-conf --key destination` prints
#   sio_steer_fork        the same as sio_steer with PM2 fork mode (each instance listening with reusePort)
#   sio_steer_bind        PM2 cluster (reusePort), `sio-steer attach`, `sio-steer nginx-conf`'s default
#                         configuration (a proxy_bind source per client, no upstream keepalive)
#   nginx_hash_keepalive  PM2 fork mode, a port per worker, upstream hash $remote_addr consistent, keepalive 32
#   nginx_ip_hash         PM2 fork mode, a port per worker, upstream ip_hash, no keepalive
#   socketio_pm2          @socket.io/pm2 (scripts/bench/socketio-pm2): its God daemon routes (sticky) and
#                         relays broadcasts (cluster adapter); nginx proxies to its one port, no keepalive
#   fork                  PM2 fork mode, one worker, upstream keepalive 32
#   contender_start NGINX_NAME N   with BENCH_BEHIND_NGINX=1; BENCH_URL is then https://127.0.0.1:PORT,
#                         BENCH_PROXY_PIDS nginx plus the controller or router, BENCH_NGINX_PIDS nginx alone
#   Needs BENCH_TLS_CERT and BENCH_TLS_KEY (bench_tls_cert makes them), and for socketio_pm2
#   BENCH_SIOPM2 (its pm2 command line: socketio_pm2_install).
#
# The load and what it costs:
#   run_load KIND PREFIX CLIENTS SECONDS   $BENCH_LOADGENS load.js side by side against $BENCH_URL
#                                          (KIND: polling, upgrade, polling_close, or deploy: half
#                                          polling, half upgrading, for a deploy under load)
#   measure CONTENDER N LOAD ROUND         one measurement to $out/results.jsonl, again while other jobs
#                                          took more than $max_others % of a core ($attempts at most)
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

BENCH_CTL_PID="" BENCH_NGINX_PID="" BENCH_STICKY_PID="" BENCH_PORT="" BENCH_FRONT_PID="" BENCH_NGINX_PIDS=""

# bench_port: a free TCP port below the ephemeral range (32768-60999 here), so that no outgoing
# connection of the machine can take it meanwhile (bounded search)
bench_port() {
  local p tries
  for ((tries = 0; tries < 200; tries++)); do
    p=$((20000 + RANDOM % 12000))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}
# bench_ports N: the first of N consecutive free ports below the ephemeral range
bench_ports() {
  local n="$1" base k tries ok
  for ((tries = 0; tries < 100; tries++)); do
    base="$(bench_port)" || return 1
    ok=1
    for ((k = 1; k < n; k++)); do
      ss -Hltn "sport = :$((base + k))" | grep -q . && { ok=0; break; }
    done
    ((ok)) && { echo "$base"; return 0; }
  done
  return 1
}

contender_start() {
  local name="$1" n="$2"
  BENCH_PROXY_PIDS="" BENCH_WORKER_PIDS="" BENCH_NGINX_PIDS=""
  if [[ "${BENCH_BEHIND_NGINX:-0}" == 1 ]]; then
    front_contender_start "$name" "$n"
    return
  fi
  case "$name" in
    sio_steer)
      BENCH_PORT="$(free_port)"
      # BENCH_SIO_EXEC_MODE=fork: PM2 fork mode instead, every instance listening with reusePort
      pm2_start_cluster "$BENCH_PORT" "$n" "${BENCH_SIO_EXEC_MODE:-cluster}" || return 1
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
  if [[ "${BENCH_BEHIND_NGINX:-0}" == 1 ]]; then
    front_contender_stop "$name"
    return
  fi
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
  if [[ -n "$BENCH_FRONT_PID" ]]; then front_nginx_stop; fi
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
# passive_opens: TCP connections accepted in this network namespace since boot (TcpPassiveOpens)
passive_opens() { nstat -asz TcpPassiveOpens 2>/dev/null | awk '$1 == "TcpPassiveOpens" {print $2; exit}' | grep . || echo 0; }
# bpf_prog: "run_time_ns run_cnt" of the pinned steering program (0 0 without one)
bpf_prog() {
  bpftool prog show pinned "$BENCH_PINS/$BENCH_PORT/program" -j 2>/dev/null |
    jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"' 2>/dev/null || echo "0 0"
}

# run_load KIND PREFIX CLIENTS SECONDS: $BENCH_LOADGENS load.js side by side, each its own source addresses
run_load() {
  run_load_start "$@"
  run_load_wait "$2"
}
# run_load_start KIND PREFIX CLIENTS SECONDS: the same, in the background (BENCH_LOAD_PIDS)
run_load_start() {
  local kind="$1" prefix="$2" n_clients="$3" secs="$4" g per
  per=$((n_clients / BENCH_LOADGENS))
  local flags=(--url "$BENCH_URL" --messages 0 --interval 0 --wait-ack --duration "$secs"
    --time-limit $((secs + 40)) --no-clients --ack-timeout 10)
  case "$kind" in
    polling) flags+=(--polling "$per" --upgrade 0 --keepalive) ;;
    polling_close) flags+=(--polling "$per" --upgrade 0) ;;
    upgrade) flags+=(--polling 0 --upgrade "$per") ;;
    deploy) flags+=(--polling $((per / 2)) --upgrade $((per - per / 2)) --keepalive --reconnect-attempts 1000) ;;
  esac
  # shellcheck disable=SC2206 # BENCH_LOAD_EXTRA: more load.js flags, word-split on purpose
  flags+=(${BENCH_LOAD_EXTRA:-})
  BENCH_LOAD_PIDS=()
  for ((g = 0; g < BENCH_LOADGENS; g++)); do
    "$NODE24" "$CHAT_DIR/load.js" "${flags[@]}" --src-base "127.$((20 + g)).0.1" --name-prefix "g$g-" --samples-out "$prefix.$g" \
      >"$prefix.$g.out" 2>"$prefix.$g.log" &
    BENCH_LOAD_PIDS+=($!)
  done
}
# run_load_wait PREFIX: until the load generators of run_load_start are done; their summaries to PREFIX.G.json
run_load_wait() {
  local prefix="$1" g
  for g in "${BENCH_LOAD_PIDS[@]}"; do wait "$g" || true; done
  BENCH_LOAD_PIDS=()
  for ((g = 0; g < BENCH_LOADGENS; g++)); do tail -n 1 "$prefix.$g.out" >"$prefix.$g.json"; done
}

# measure_once CONTENDER N LOAD ROUND PREFIX: one measurement, its JSON line to PREFIX.record
measure_once() {
  local c="$1" n="$2" kind="$3" r="$4" prefix="$5" g ok=1
  redis-cli -u "$REDIS_URL" flushall >/dev/null
  local god="" w0 p0 r0 g0 m0 n0 o0 w1 p1 r1 g1 m1 n1 o1 b0 b1 t0 t1 load
  [[ -n "${PM2_HOME:-}" ]] && god="$(cat "$PM2_HOME/pm2.pid" 2>/dev/null || true)"
  [[ " $BENCH_PROXY_PIDS " == *" $god "* ]] && god="" # @socket.io/pm2: the God daemon is the router (proxy)
  read -r -a b0 <<<"$(bpf_prog)"
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  w0=$(cpu_s $BENCH_WORKER_PIDS) p0=$(cpu_s $BENCH_PROXY_PIDS) r0=$(cpu_s "$REDIS_PID") g0=$(cpu_s $god) m0=$(machine_busy_s)
  n0=$(cpu_s $BENCH_NGINX_PIDS) o0=$(passive_opens)
  t0=$(date +%s.%N)
  run_load "$kind" "$prefix" "$clients" "$duration"
  t1=$(date +%s.%N)
  w1=$(cpu_s $BENCH_WORKER_PIDS) p1=$(cpu_s $BENCH_PROXY_PIDS) r1=$(cpu_s "$REDIS_PID") g1=$(cpu_s $god) m1=$(machine_busy_s)
  n1=$(cpu_s $BENCH_NGINX_PIDS) o1=$(passive_opens)
  read -r -a b1 <<<"$(bpf_prog)"
  for ((g = 0; g < BENCH_LOADGENS; g++)); do
    jq -e .rate "$prefix.$g.json" >/dev/null 2>&1 || { ok=0; log "load.js $g printed no summary: $(tail -n 3 "$prefix.$g.log")"; }
  done
  ((ok)) || return 1
  local meta
  meta="$(jq -cn --arg c "$c" --argjson n "$n" --arg kind "$kind" --argjson r "$r" \
    --argjson wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')" \
    --argjson w "$(awk -v a="$w0" -v b="$w1" 'BEGIN{printf "%.2f", b - a}')" \
    --argjson p "$(awk -v a="$p0" -v b="$p1" 'BEGIN{printf "%.2f", b - a}')" \
    --argjson rd "$(awk -v a="$r0" -v b="$r1" 'BEGIN{printf "%.2f", b - a}')" \
    --argjson gd "$(awk -v a="$g0" -v b="$g1" 'BEGIN{printf "%.2f", b - a}')" \
    --argjson md "$(awk -v a="$m0" -v b="$m1" 'BEGIN{printf "%.2f", b - a}')" \
    --argjson nd "$(awk -v a="$n0" -v b="$n1" 'BEGIN{printf "%.2f", b - a}')" \
    --arg load "$load" --arg loadend "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson opens "$((o1 - o0))" \
    --argjson bns "$((b1[0] - b0[0]))" --argjson bcnt "$((b1[1] - b0[1]))" \
    '{contender: $c, workers: $n, load: $kind, round: $r, wall_s: $wall,
      cpu_s: {workers: $w, proxy: $p, nginx: $nd, redis: $rd, pm2_god: $gd, machine: $md},
      load_average: {start: $load, end: $loadend}, tcp_passive_opens: $opens,
      bpf: (if ($c | startswith("sio_steer")) then {run_cnt: $bcnt, run_time_ms: ($bns / 1e6),
            ns_per_run: (if $bcnt > 0 then ($bns / $bcnt | floor) else null end)} else null end)}')"
  "$NODE24" scripts/bench/record.js "$meta" $(for ((g = 0; g < BENCH_LOADGENS; g++)); do echo "$prefix.$g"; done) \
    >"$prefix.record"
}

# measure CONTENDER N LOAD ROUND: measure_once, again (up to --attempts in all) while other jobs on
# the machine took more than --max-others % of one core meanwhile; keeps the least disturbed one
measure() {
  local c="$1" n="$2" kind="$3" r="$4" a best="" best_others="" others prefix
  mkdir -p "$out/raw"
  for ((a = 1; a <= attempts; a++)); do
    prefix="$out/raw/$c-n$n-$kind-r$r-a$a"
    measure_once "$c" "$n" "$kind" "$r" "$prefix" || continue
    others="$(jq -r '100 * .other_cpu_s / .wall_s | floor' "$prefix.record")"
    if [[ -z "$best" ]] || ((others < best_others)); then best="$prefix.record" best_others="$others"; fi
    if ((others <= max_others)); then break; fi
    if ((a < attempts)); then
      log "  other jobs used $others % of a core meanwhile (> $max_others): measuring again"
      sleep 3
    fi
  done
  [[ -n "$best" ]] || { log "  $c N=$n $kind: no measurement"; return 0; }
  jq -c --argjson a "$((a > attempts ? attempts : a))" '. + {attempts: $a}' "$best" >>"$out/results.jsonl"
  tail -n 1 "$out/results.jsonl" | jq -r '"bench:   \(.contender) N=\(.workers) \(.load): \(.events_per_s) events/s, \(.requests_per_s) HTTP req/s, p50 \(.p50_ms) ms p99 \(.p99_ms) ms, 400s \(.errors), clients ok \(.clients_ok)/\(.clients), per worker \(.clients_per_worker), CPU workers \(.cpu_s.workers) s proxy \(.cpu_s.proxy) s load.js \(.loadgen_cpu_s) s others \(.other_cpu_s) s in \(.wall_s) s, \(.events_per_server_cpu_s) events per server CPU-s"' >&2
}


# --- behind nginx ------------------------------------------------------------------------------

# bench_tls_cert DIR: a self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost
bench_tls_cert() {
  local dir="$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  BENCH_TLS_CERT="$dir/cert.pem" BENCH_TLS_KEY="$dir/key.pem"
}

# socketio_pm2_install: @socket.io/pm2 at the version of scripts/bench/socketio-pm2/package-lock.json
# (npm ci, once); sets BENCH_SIOPM2 (its pm2 on $NODE24) and BENCH_SIOPM2_DIR (its node_modules)
socketio_pm2_install() {
  local dir="$ROOT/scripts/bench/socketio-pm2" stamp
  stamp="$dir/node_modules/.package-lock.json"
  if [[ ! -f "$stamp" || "$dir/package-lock.json" -nt "$stamp" ]]; then
    _bench_log "npm ci in $dir (@socket.io/pm2)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || return 1
    touch "$stamp"
  fi
  BENCH_SIOPM2_DIR="$dir/node_modules"
  BENCH_SIOPM2="$NODE24 $BENCH_SIOPM2_DIR/@socket.io/pm2/bin/pm2"
}

# front_nginx_start CONF: nginx (one worker process per core, TLS on 127.0.0.1:$BENCH_FRONT_PORT, set
# by CONF's own server {}) with CONF in its http {}; sets BENCH_FRONT_PID and BENCH_NGINX_PIDS
front_nginx_start() {
  local conf="$1" dir="$BENCH_TMP/front"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
# the same for every contender: Debian's defaults where nothing else is said, TLS session cache,
# access_log off (nginx's best case)
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_timeout 65;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 1h;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $conf;
}
CONF
  nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" || { cat "$dir/error.log" >&2; return 1; }
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  BENCH_FRONT_PID=$!
  wait_listening "$BENCH_FRONT_PORT" || return 1
  sleep 0.3 # workers forked
  BENCH_NGINX_PIDS="$BENCH_FRONT_PID $(children "$BENCH_FRONT_PID")"
}

front_nginx_stop() {
  local kids p
  [[ -n "$BENCH_FRONT_PID" ]] || return 0
  kids="$(children "$BENCH_FRONT_PID")"
  _stop_pid "$BENCH_FRONT_PID"
  for p in $kids; do _stop_pid "$p"; done
  BENCH_FRONT_PID=""
}

# The location directives of the hand-written contenders: the Socket.IO documentation's (Connection
# "upgrade" on every request when the upstream keeps nothing alive; cleared for a kept-alive one).
_front_location() { # CONNECTION_VALUE
  cat <<CONF
    server {
        listen 127.0.0.1:$BENCH_FRONT_PORT ssl;
        ssl_certificate $BENCH_TLS_CERT;
        ssl_certificate_key $BENCH_TLS_KEY;
        location / {
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header Host \$host;
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection $1;
            proxy_read_timeout 75s;
        }
    }
CONF
}

# _attach [ARGS]: a following `sio-steer attach` on $BENCH_PORT; returns once it follows
_attach() {
  # shellcheck disable=SC2086 # SIO_STEER_ATTACH_ARGS: extra options, word-split on purpose
  "$SIO_STEER" attach --port "$BENCH_PORT" --pin-root "$BENCH_PINS" --lock-dir "$BENCH_TMP/locks" "$@" \
    ${SIO_STEER_ATTACH_ARGS:-} >"$BENCH_TMP/attach.log" 2>&1 &
  BENCH_CTL_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q "following port" "$BENCH_TMP/attach.log" && return 0
    kill -0 "$BENCH_CTL_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$BENCH_TMP/attach.log" >&2
  return 1
}

BENCH_PM2_SAVED=""
front_contender_start() {
  local name="$1" n="$2" conf="$BENCH_TMP/contender.conf" base k servers=""
  BENCH_FRONT_PORT="$(bench_port)" || return 1
  export SIO_STEER_LOCK_DIR="$BENCH_TMP/locks" SIO_STEER_KEY=address
  case "$name" in
    sio_steer | sio_steer_bind | sio_steer_fork)
      BENCH_PORT="$(bench_port)" || return 1
      local key=address first=127.0.0.1 mode="${BENCH_SIO_EXEC_MODE:-cluster}"
      [[ "$name" != sio_steer_bind ]] && key=destination first=127.1.0.1
      # sio_steer_fork (or BENCH_SIO_EXEC_MODE=fork): PM2 fork mode, every instance listening with reusePort
      [[ "$name" == sio_steer_fork ]] && mode=fork
      SIO_STEER_KEY="$key" pm2_start_cluster "$BENCH_PORT" "$n" "$mode" || return 1
      _attach --key "$key" || return 1
      BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')"
      "$SIO_STEER" nginx-conf --key "$key" --listen "127.0.0.1:$BENCH_FRONT_PORT" --upstream "$first:$BENCH_PORT" \
        --ssl-certificate "$BENCH_TLS_CERT" --ssl-certificate-key "$BENCH_TLS_KEY" >"$conf" || return 1
      front_nginx_start "$conf" || return 1
      BENCH_PROXY_PIDS="$BENCH_NGINX_PIDS $BENCH_CTL_PID"
      ;;
    nginx_hash_keepalive | nginx_ip_hash)
      base="$(bench_ports "$n")" || return 1
      PORT_PER_INSTANCE=1 SIO_REUSEPORT=0 pm2_start_cluster "$base" "$n" fork || return 1
      for ((k = 0; k < n; k++)); do
        wait_listening $((base + k)) || return 1
        servers+="        server 127.0.0.1:$((base + k));"$'\n'
      done
      BENCH_PORT="$base"
      BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')"
      if [[ "$name" == nginx_hash_keepalive ]]; then
        { echo '    map $http_upgrade $bench_connection { default upgrade; "" ""; }'
          printf '    upstream nodes {\n        hash $remote_addr consistent;\n%s        keepalive 32;\n    }\n' "$servers"
          _front_location '$bench_connection'; } >"$conf"
      else
        { printf '    upstream nodes {\n        ip_hash;\n%s    }\n' "$servers"
          _front_location '"upgrade"'; } >"$conf"
      fi
      front_nginx_start "$conf" || return 1
      BENCH_PROXY_PIDS="$BENCH_NGINX_PIDS"
      ;;
    socketio_pm2)
      [[ -n "${BENCH_SIOPM2:-}" ]] || { _bench_log "socketio_pm2: @socket.io/pm2 is not installed"; return 1; }
      BENCH_PORT="$(bench_port)" || return 1
      BENCH_PM2_SAVED="$PM2"
      PM2="$BENCH_SIOPM2"
      # The God daemon listens on PM2_PORT and hands each connection to the worker of its sid; the
      # workers use the sticky and cluster-adapter versions of @socket.io/pm2 (its God speaks theirs).
      PM2_PORT="$BENCH_PORT" SIO_REUSEPORT=0 SIO_STICKY=1 \
        SIO_STICKY_MODULE="$BENCH_SIOPM2_DIR/@socket.io/sticky" \
        SIO_CLUSTER_ADAPTER="$BENCH_SIOPM2_DIR/@socket.io/cluster-adapter" \
        pm2_start_cluster "$BENCH_PORT" "$n" cluster || return 1
      BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')"
      { printf '    upstream nodes {\n        server 127.0.0.1:%s;\n    }\n' "$BENCH_PORT"
        _front_location '"upgrade"'; } >"$conf"
      front_nginx_start "$conf" || return 1
      BENCH_PROXY_PIDS="$BENCH_NGINX_PIDS $(cat "$PM2_HOME/pm2.pid")"
      ;;
    fork)
      BENCH_PORT="$(bench_port)" || return 1
      SIO_REUSEPORT=0 pm2_start_cluster "$BENCH_PORT" 1 fork || return 1
      BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')"
      { echo '    map $http_upgrade $bench_connection { default upgrade; "" ""; }'
        printf '    upstream nodes {\n        server 127.0.0.1:%s;\n        keepalive 32;\n    }\n' "$BENCH_PORT"
        _front_location '$bench_connection'; } >"$conf"
      front_nginx_start "$conf" || return 1
      BENCH_PROXY_PIDS="$BENCH_NGINX_PIDS"
      ;;
    *) _bench_log "unknown contender $name"; return 1 ;;
  esac
  BENCH_URL="https://127.0.0.1:$BENCH_FRONT_PORT"
}

front_contender_stop() {
  local name="$1"
  front_nginx_stop
  if [[ -n "$BENCH_CTL_PID" ]]; then
    _stop_pid "$BENCH_CTL_PID"
    BENCH_CTL_PID=""
    "$SIO_STEER" detach --port "$BENCH_PORT" --pin-root "$BENCH_PINS" --lock-dir "$BENCH_TMP/locks" >/dev/null 2>&1 || true
  fi
  pm2_stop_cluster
  if [[ -n "$BENCH_PM2_SAVED" ]]; then PM2="$BENCH_PM2_SAVED" BENCH_PM2_SAVED=""; fi
  BENCH_PROXY_PIDS="" BENCH_WORKER_PIDS="" BENCH_NGINX_PIDS=""
}

# The scheduler's autogroups (kernel.sched_autogroup_enabled, on in Debian's kernels): the CPU is
# shared fairly between sessions, then between the processes of a session. PM2 cluster mode's workers
# are children of the PM2 daemon in its session, so all of them together weigh one share; PM2 fork
# mode's workers each start a session of their own and weigh one share each; nginx, Redis and the
# load generators one each. On a machine the load saturates, that alone decides who gets the CPU
# (docs/benchmarks.md, "Behind nginx"). The benchmarks weigh every process by itself (autogroups off
# while they run, restored after) unless --keep-autogroup. Only processes started meanwhile are
# affected: the kernel picks a task's group when it forks.
bench_scheduler_begin() { # keep(0|1)
  BENCH_AUTOGROUP_WAS="$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo absent)"
  BENCH_SCHEDULER="autogroups $([[ "$BENCH_AUTOGROUP_WAS" == 1 ]] && echo on || echo off) on this host"
  if [[ "$1" == 0 && "$BENCH_AUTOGROUP_WAS" == 1 ]]; then
    echo 0 >/proc/sys/kernel/sched_autogroup_enabled
    BENCH_SCHEDULER="autogroups off for the run (on on this host): every process weighs by itself"
  fi
}
bench_scheduler_end() {
  if [[ "${BENCH_AUTOGROUP_WAS:-}" == 1 ]]; then echo 1 >/proc/sys/kernel/sched_autogroup_enabled; fi
  return 0
}

# What both benchmarks leave behind, undone on exit, failed or not: the contenders and their
# processes, the stats sampler, Redis, the pin folder, the temporary files, the scheduler setting.
bench_cleanup() {
  contenders_cleanup
  if [[ -n "${STATS_PID:-}" ]]; then kill "$STATS_PID" 2>/dev/null || true; wait "$STATS_PID" 2>/dev/null || true; fi
  redis_stop
  rmdir "$BENCH_PINS" 2>/dev/null || true
  rm -rf "$BENCH_TMP"
  bench_scheduler_end
}
