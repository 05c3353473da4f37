# shellcheck shell=bash
# The pieces of bench/run.sh (scripts/bench.sh) and bench/profile.sh, sourced after
# scripts/node-env.sh. Everything listens on loopback, in the network namespace the caller made.
#
# The contenders, each serving examples/chat/server.js with the same Redis adapter ($SIO_ADAPTER),
# the same Redis ($REDIS_URL) and N workers. With BENCH_FRONT=tls, nginx terminates TLS in front of
# every one of them (the production path); with BENCH_FRONT=none (direct), only the nginx
# contenders have an nginx, on plain HTTP, as their balancer:
#   sio_steer            PM2 cluster mode, every worker listening with reusePort, `sio-steer attach`;
#                        behind nginx: `attach --key destination` and the configuration
#                        `sio-steer nginx-conf --key destination` prints, as it prints it
#   sio_steer_fork       the same in PM2 fork mode (every instance listening with reusePort)
#   sio_steer_bind       behind nginx only: `nginx-conf`'s default (a proxy_bind source per client, no
#                        upstream keepalive) and `attach`'s default key
#   nginx_hash_tuned     PM2 fork mode, a port per worker; upstream hash $remote_addr consistent,
#                        max_fails=0 on each server, keepalive $BENCH_NGINX_KEEPALIVE (1024), keepalive_timeout
#                        4s (below Node's keepAliveTimeout, 5 s): what an nginx expert deploys
#   nginx_ip_hash        the same with ip_hash
#   nginx_hash_tutorial  hash $remote_addr consistent with keepalive 32 and nothing else: as tutorials write it
#   socketio_pm2         @socket.io/pm2 (bench/socketio-pm2): its God daemon owns the port and routes
#                        every connection to the worker of its session (@socket.io/sticky)
#   socketio_sticky      a Node cluster primary with @socket.io/sticky (examples/chat/sticky.js)
#   fork                 PM2 fork mode, one worker
# A router that hands each connection to a worker by its first request (socketio_pm2, socketio_sticky)
# cannot take kept-alive connections carrying several clients: nginx keeps none to it, as their
# documentation's nginx configuration does.
#
#   contender_start NAME N   start it; sets BENCH_URL, BENCH_ENTRY_PORT (the port the clients reach),
#                            BENCH_PORT and BENCH_PORTS (the workers' ports: BENCH_PORTS from BENCH_PORT on),
#                            BENCH_SETTINGS (how it is configured, for the tables) and the pids of
#                            each process class: BENCH_WORKER_PIDS, BENCH_NGINX_PIDS, BENCH_CTL_PIDS
#                            (sio-steer's controller, or the router: sticky primary, @socket.io/pm2's
#                            God daemon), BENCH_PM2_PIDS (PM2's daemon when it is not the router)
#   contender_stop           stop what contender_start started
#
# The load and what it costs:
#   run_load KIND PREFIX CLIENTS SECONDS INTERVAL_MS   $BENCH_LOADGENS load.js side by side against
#                            $BENCH_URL; INTERVAL_MS 0: closed loop (a client sends its next message
#                            once both acks are back), else open loop (a message every INTERVAL_MS
#                            per client, whatever the server does). KIND: polling, upgrade,
#                            polling_close, or deploy (half polling, half upgrading, reconnecting)
#   measure CONTENDER N LOAD LEVEL ROUND   one measurement to $out/results.jsonl (bench/report.js record)
#
# shellcheck disable=SC2154 # measure reads the caller's settings $clients, $duration, $out (the results folder), $attempts and
# $max_others. Needs: BENCH_TMP (a private temp folder), BENCH_PINS (a bpffs folder), SIO_STEER (the binary;
# SIO_STEER_ATTACH_ARGS: more `attach` options; SIO_STEER_NGINX_CONF_ARGS: more `nginx-conf` options,
# e.g. "--destinations 64 --keepalive 32"; SIO_STEER_NGINX_CONF_EDIT: a sed script applied to what it
# prints, to measure a change to it before making it), BENCH_FRONT, BENCH_LOADGENS, BENCH_NGINX_KEEPALIVE,
# STICKY_LB (@socket.io/sticky's loadBalancingMethod); for socketio_pm2 BENCH_SIOPM2 (socketio_pm2_install);
# behind nginx BENCH_TLS_CERT and BENCH_TLS_KEY (bench_tls_cert).

_bench_log() { echo "bench: $*" >&2; }

BENCH_CONTENDERS="sio_steer sio_steer_fork sio_steer_bind nginx_hash_tuned nginx_ip_hash nginx_hash_tutorial socketio_pm2 socketio_sticky fork"
# bench_known NAME...: every NAME is one of the contenders
bench_known() { local c; for c in "$@"; do [[ " $BENCH_CONTENDERS " == *" $c "* ]] || return 1; done; }

# bench_parse_options "VALUED" "FLAGS" ARGS...: `--name VALUE` sets $name (dashes as underscores) for
# the names in VALUED, `--name` sets $name=1 for those in FLAGS; anything else calls the caller's usage
bench_parse_options() {
  local valued=" ${1//$'\n'/ } " flags=" ${2//$'\n'/ } " opt
  shift 2
  while (($#)); do
    opt="${1#--}"
    if [[ "$1" == --* && "$valued" == *" $opt "* && $# -ge 2 ]]; then
      printf -v "${opt//-/_}" '%s' "$2"
      shift 2
    elif [[ "$1" == --* && "$flags" == *" $opt "* ]]; then
      printf -v "${opt//-/_}" 1
      shift
    else
      usage
    fi
  done
}

# bench_netns SCRIPT ARGS...: SCRIPT ARGS again in a network namespace of its own, where the
# machine's other traffic neither competes for the ports nor shows in the connection counts (it does
# not return); inside it (the second time), loopback up and back to the caller
bench_netns() {
  if [[ -n "${SIO_STEER_BENCH_NETNS:-}" ]]; then ip link set lo up; return 0; fi
  SIO_STEER_BENCH_NETNS=1 exec unshare --net -- "$@"
}

# bench_wait TENTHS COMMAND...: until COMMAND succeeds, trying every 0.1 s, TENTHS times at most;
# a COMMAND that returns 2 ends the wait (what it waits for will not come)
bench_wait() {
  local i rc tries="$1"
  shift
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    rc=$?
    ((rc == 2)) && return 1
    sleep 0.1
  done
  return 1
}

# children PID: the direct children of a process (nginx's workers, the sticky primary's workers)
children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' | tr '\n' ' '; }

_listeners_at_least() { (($(ss -Hltn "sport = :$1" 2>/dev/null | wc -l) >= $2)); }
# wait_listening PORT [COUNT]: until COUNT listeners are on PORT (10 s at most)
wait_listening() { bench_wait 100 _listeners_at_least "$1" "${2:-1}" || { _bench_log "nothing listening on :$1 after 10 s"; return 1; }; }

# bench_port: a free TCP port below the ephemeral range (32768-60999 here), so that no outgoing
# connection can take it meanwhile (bounded search)
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

# _stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL (only processes this script started)
_stop_pid() {
  local pid="$1" i
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# --- nginx -------------------------------------------------------------------------------------

# bench_tls_cert DIR: a self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost
bench_tls_cert() {
  local dir="$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  BENCH_TLS_CERT="$dir/cert.pem" BENCH_TLS_KEY="$dir/key.pem"
}

BENCH_NGINX_PID=""
# nginx_start CONF: nginx (a worker process per core) with CONF in its http {}; CONF has the
# server {} listening on $BENCH_ENTRY_PORT. Sets BENCH_NGINX_PID and BENCH_NGINX_PIDS.
nginx_start() {
  local conf="$1" dir="$BENCH_TMP/nginx"
  rm -rf "$dir" && mkdir -p "$dir"
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
  BENCH_NGINX_PID=$!
  wait_listening "$BENCH_ENTRY_PORT" || return 1
  sleep 0.3 # workers forked
  BENCH_NGINX_PIDS="$BENCH_NGINX_PID $(children "$BENCH_NGINX_PID")"
}

nginx_stop() {
  local kids p
  [[ -n "$BENCH_NGINX_PID" ]] || return 0
  kids="$(children "$BENCH_NGINX_PID")"
  _stop_pid "$BENCH_NGINX_PID"
  for p in $kids; do _stop_pid "$p"; done
  BENCH_NGINX_PID=""
}

# _listen: the listen line of the server {} (TLS behind nginx, plain HTTP direct)
_listen() {
  if [[ "$BENCH_FRONT" == tls ]]; then
    printf '        listen 127.0.0.1:%s ssl;\n        ssl_certificate %s;\n        ssl_certificate_key %s;\n' \
      "$BENCH_ENTRY_PORT" "$BENCH_TLS_CERT" "$BENCH_TLS_KEY"
  else
    printf '        listen 127.0.0.1:%s;\n' "$BENCH_ENTRY_PORT"
  fi
}

# _proxy_conf UPSTREAM_LINES KEEPALIVE(0|1): an upstream {} "nodes" with those lines and a server {}
# proxying Socket.IO to it, the Socket.IO documentation's location; with keepalive, "Connection" is
# cleared for plain requests (else nginx would close every upstream connection after one request)
_proxy_conf() {
  local conn='"upgrade"'
  if [[ "$2" == 1 ]]; then
    echo '    map $http_upgrade $bench_connection { default upgrade; "" ""; }'
    conn='$bench_connection'
  fi
  printf '    upstream nodes {\n%s    }\n    server {\n' "$1"
  _listen
  cat <<CONF
        location / {
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header Host \$host;
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection $conn;
            proxy_read_timeout 75s;
        }
    }
CONF
}

# _upstream_settings CONF: the first upstream {} of CONF on one line, for the tables
_upstream_settings() {
  awk '/^ *upstream /{on=1} on{print} on && /}/{exit}' "$1" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'
}

# --- the contenders ----------------------------------------------------------------------------

# socketio_pm2_install: @socket.io/pm2 at the version of bench/socketio-pm2/package-lock.json
# (npm ci, once); sets BENCH_SIOPM2 (its pm2 on $NODE24) and BENCH_SIOPM2_DIR (its node_modules)
socketio_pm2_install() {
  local dir="$ROOT/bench/socketio-pm2" stamp
  stamp="$dir/node_modules/.package-lock.json"
  if [[ ! -f "$stamp" || "$dir/package-lock.json" -nt "$stamp" ]]; then
    _bench_log "npm ci in $dir (@socket.io/pm2)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || return 1
    touch "$stamp"
  fi
  BENCH_SIOPM2_DIR="$dir/node_modules"
  BENCH_SIOPM2="$NODE24 $BENCH_SIOPM2_DIR/@socket.io/pm2/bin/pm2"
}

BENCH_CTL_PID="" BENCH_STICKY_PID="" BENCH_PM2_SAVED=""
# _attach [ARGS]: a following `sio-steer attach` on $BENCH_PORT; returns once it follows
_attach() {
  # shellcheck disable=SC2086 # SIO_STEER_ATTACH_ARGS: extra options, word-split on purpose
  "$SIO_STEER" attach --port "$BENCH_PORT" --pin-root "$BENCH_PINS" --lock-dir "$BENCH_TMP/locks" "$@" \
    ${SIO_STEER_ATTACH_ARGS:-} >"$BENCH_TMP/attach.log" 2>&1 &
  BENCH_CTL_PID=$!
  bench_wait 100 _following && return 0
  cat "$BENCH_TMP/attach.log" >&2
  return 1
}
# _following: the controller follows the port, or is gone (then bench_wait stops asking)
_following() { grep -q "following port" "$BENCH_TMP/attach.log" && return 0; ! kill -0 "$BENCH_CTL_PID" 2>/dev/null && return 2; return 1; }

_pm2_pids() { BENCH_WORKER_PIDS="$(pm2_worker_pids | cut -d' ' -f1 | tr '\n' ' ')" BENCH_PM2_PIDS="$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)"; }

# _port_per_worker N SUFFIX: PM2 fork mode, instance i on its own port base + i; sets BENCH_SERVERS,
# the upstream's server lines, with SUFFIX after each address
_port_per_worker() {
  local n="$1" base k
  base="$(bench_ports "$n")" || return 1
  PORT_PER_INSTANCE=1 SIO_REUSEPORT=0 pm2_start_cluster "$base" "$n" fork || return 1
  BENCH_PORT="$base" BENCH_PORTS="$n" BENCH_SERVERS=""
  for ((k = 0; k < n; k++)); do
    wait_listening $((base + k)) || return 1
    BENCH_SERVERS+="        server 127.0.0.1:$((base + k))$2;"$'\n'
  done
}

contender_start() {
  local name="$1" n="$2" conf="$BENCH_TMP/contender.conf" servers key first mode
  BENCH_WORKER_PIDS="" BENCH_NGINX_PIDS="" BENCH_CTL_PIDS="" BENCH_PM2_PIDS="" BENCH_SETTINGS="" BENCH_PORT="" BENCH_PORTS=1
  BENCH_ENTRY_PORT="$(bench_port)" || return 1
  export SIO_STEER_LOCK_DIR="$BENCH_TMP/locks" SIO_STEER_KEY=address
  local front_kept_alive=0 front_to="" # the one port nginx proxies to, for the non-nginx contenders behind nginx
  case "$name" in
    sio_steer | sio_steer_fork | sio_steer_bind)
      [[ "$name" == sio_steer_bind && "$BENCH_FRONT" != tls ]] && { _bench_log "sio_steer_bind runs behind nginx only"; return 1; }
      mode=cluster key=address first=127.0.0.1
      [[ "$name" == sio_steer_fork ]] && mode=fork
      [[ "$BENCH_FRONT" == tls && "$name" != sio_steer_bind ]] && key=destination first=127.1.0.1
      BENCH_PORT="$BENCH_ENTRY_PORT"
      [[ "$BENCH_FRONT" == tls ]] && { BENCH_PORT="$(bench_port)" || return 1; }
      SIO_STEER_KEY="$key" pm2_start_cluster "$BENCH_PORT" "$n" "$mode" || return 1
      _attach --key "$key" || return 1
      _pm2_pids
      BENCH_CTL_PIDS="$BENCH_CTL_PID"
      BENCH_SETTINGS="PM2 $mode mode ×$n, reusePort; sio-steer attach --key $key${SIO_STEER_ATTACH_ARGS:+ $SIO_STEER_ATTACH_ARGS}"
      if [[ "$BENCH_FRONT" == tls ]]; then
        # shellcheck disable=SC2086 # SIO_STEER_NGINX_CONF_ARGS: extra options, word-split on purpose
        "$SIO_STEER" nginx-conf --key "$key" --listen "127.0.0.1:$BENCH_ENTRY_PORT" --upstream "$first:$BENCH_PORT" \
          --ssl-certificate "$BENCH_TLS_CERT" --ssl-certificate-key "$BENCH_TLS_KEY" ${SIO_STEER_NGINX_CONF_ARGS:-} >"$conf" || return 1
        if [[ -n "${SIO_STEER_NGINX_CONF_EDIT:-}" ]]; then
          sed -i -e "$SIO_STEER_NGINX_CONF_EDIT" "$conf" || return 1
          BENCH_SETTINGS+="; the generated configuration edited with sed '$SIO_STEER_NGINX_CONF_EDIT'"
        fi
        nginx_start "$conf" || return 1
        if [[ "$key" == destination ]]; then
          BENCH_SETTINGS+="; nginx: sio-steer nginx-conf --key destination${SIO_STEER_NGINX_CONF_ARGS:+ $SIO_STEER_NGINX_CONF_ARGS}: $(grep -c '^upstream ' "$conf") upstreams like \`$(_upstream_settings "$conf")\`"
        else
          BENCH_SETTINGS+="; nginx: sio-steer nginx-conf (proxy_bind \$sio_steer_src, no upstream keepalive)"
        fi
      fi
      ;;
    nginx_hash_tuned | nginx_ip_hash | nginx_hash_tutorial)
      local balance='hash $remote_addr consistent' tail
      [[ "$name" == nginx_ip_hash ]] && balance=ip_hash
      if [[ "$name" == nginx_hash_tutorial ]]; then
        _port_per_worker "$n" "" || return 1
        tail="        keepalive 32;"
      else
        _port_per_worker "$n" " max_fails=0" || return 1
        tail="        keepalive $BENCH_NGINX_KEEPALIVE;"$'\n'"        keepalive_timeout 4s;"
      fi
      _proxy_conf "        $balance;"$'\n'"$BENCH_SERVERS$tail"$'\n' 1 >"$conf"
      nginx_start "$conf" || return 1
      _pm2_pids
      BENCH_SETTINGS="PM2 fork mode ×$n, a port per worker; nginx \`$(_upstream_settings "$conf")\`"
      ;;
    socketio_pm2)
      [[ -n "${BENCH_SIOPM2:-}" ]] || { _bench_log "socketio_pm2: @socket.io/pm2 is not installed"; return 1; }
      BENCH_PORT="$BENCH_ENTRY_PORT"
      [[ "$BENCH_FRONT" == tls ]] && { BENCH_PORT="$(bench_port)" || return 1; }
      BENCH_PM2_SAVED="$PM2"
      PM2="$BENCH_SIOPM2"
      # The God daemon listens on PM2_PORT and hands each connection to the worker of its sid; the
      # workers use the @socket.io/sticky of @socket.io/pm2 (its God speaks that version's protocol).
      PM2_PORT="$BENCH_PORT" SIO_REUSEPORT=0 SIO_STICKY=1 SIO_STICKY_MODULE="$BENCH_SIOPM2_DIR/@socket.io/sticky" \
        pm2_start_cluster "$BENCH_PORT" "$n" cluster || return 1
      _pm2_pids
      BENCH_CTL_PIDS="$BENCH_PM2_PIDS" BENCH_PM2_PIDS="" # the God daemon is the router
      BENCH_SETTINGS="@socket.io/pm2 ×$n: its God daemon routes every connection (@socket.io/sticky setupWorker in the workers)"
      front_to="$BENCH_PORT"
      ;;
    socketio_sticky)
      BENCH_PORT="$BENCH_ENTRY_PORT"
      [[ "$BENCH_FRONT" == tls ]] && { BENCH_PORT="$(bench_port)" || return 1; }
      PORT="$BENCH_PORT" INSTANCES="$n" STICKY_LB="$STICKY_LB" "$NODE24" "$CHAT_DIR/sticky.js" >"$BENCH_TMP/sticky.log" 2>&1 &
      BENCH_STICKY_PID=$!
      wait_listening "$BENCH_PORT" || { cat "$BENCH_TMP/sticky.log" >&2; return 1; }
      BENCH_CTL_PIDS="$BENCH_STICKY_PID" BENCH_WORKER_PIDS="$(children "$BENCH_STICKY_PID")"
      BENCH_SETTINGS="Node cluster ×$n, @socket.io/sticky setupMaster (loadBalancingMethod $STICKY_LB) in the primary, setupWorker in the workers"
      front_to="$BENCH_PORT"
      ;;
    fork)
      BENCH_PORT="$BENCH_ENTRY_PORT"
      [[ "$BENCH_FRONT" == tls ]] && { BENCH_PORT="$(bench_port)" || return 1; }
      SIO_REUSEPORT=0 pm2_start_cluster "$BENCH_PORT" 1 fork || return 1
      _pm2_pids
      BENCH_SETTINGS="PM2 fork mode ×1"
      front_to="$BENCH_PORT" front_kept_alive=1
      ;;
    *) _bench_log "unknown contender $name"; return 1 ;;
  esac
  if [[ -n "$front_to" && "$BENCH_FRONT" == tls ]]; then
    servers="        server 127.0.0.1:$front_to;"$'\n'
    ((front_kept_alive)) && servers+="        keepalive $BENCH_NGINX_KEEPALIVE;"$'\n'"        keepalive_timeout 4s;"$'\n'
    _proxy_conf "$servers" "$front_kept_alive" >"$conf"
    nginx_start "$conf" || return 1
    BENCH_SETTINGS+="; nginx \`$(_upstream_settings "$conf")\`"
  fi
  [[ "$BENCH_FRONT" == tls ]] && BENCH_SETTINGS+=", TLS"
  local scheme=http
  [[ "$BENCH_FRONT" == tls ]] && scheme=https
  BENCH_URL="$scheme://127.0.0.1:$BENCH_ENTRY_PORT"
}

contender_stop() {
  local kids p
  nginx_stop
  if [[ -n "$BENCH_CTL_PID" ]]; then
    _stop_pid "$BENCH_CTL_PID"
    BENCH_CTL_PID=""
    "$SIO_STEER" detach --port "$BENCH_PORT" --pin-root "$BENCH_PINS" --lock-dir "$BENCH_TMP/locks" >/dev/null 2>&1 || true
  fi
  if [[ -n "$BENCH_STICKY_PID" ]]; then
    kids="$(children "$BENCH_STICKY_PID")"
    _stop_pid "$BENCH_STICKY_PID" # stops its workers first
    for p in $kids; do kill -9 "$p" 2>/dev/null || true; done
    BENCH_STICKY_PID=""
  fi
  pm2_stop_cluster
  if [[ -n "$BENCH_PM2_SAVED" ]]; then PM2="$BENCH_PM2_SAVED" BENCH_PM2_SAVED=""; fi
  BENCH_WORKER_PIDS="" BENCH_NGINX_PIDS="" BENCH_CTL_PIDS="" BENCH_PM2_PIDS=""
}

# --- the load ----------------------------------------------------------------------------------

BENCH_LOAD_PIDS=() BENCH_LOAD_PREFIXES=()
# run_load_start KIND PREFIX CLIENTS SECONDS INTERVAL_MS: the load generators, in the background
run_load_start() {
  local kind="$1" prefix="$2" n_clients="$3" secs="$4" interval="$5" g per
  per=$((n_clients / BENCH_LOADGENS))
  local flags=(--url "$BENCH_URL" --messages 0 --duration "$secs" --time-limit $((secs + 40)) --no-clients --ack-timeout 10)
  if ((interval == 0)); then flags+=(--interval 0 --wait-ack); else flags+=(--interval "$interval"); fi
  case "$kind" in
    polling) flags+=(--polling "$per" --upgrade 0 --keepalive) ;;
    polling_close) flags+=(--polling "$per" --upgrade 0) ;;
    upgrade) flags+=(--polling 0 --upgrade "$per") ;;
    deploy) flags+=(--polling $((per / 2)) --upgrade $((per - per / 2)) --keepalive --reconnect-attempts 1000) ;;
  esac
  # every client from its own loopback address, in its own /24 (ip_hash keys on the /24)
  flags+=(--src-stride 256)
  [[ "$BENCH_FRONT" == tls ]] && flags+=(--insecure)
  BENCH_LOAD_PIDS=() BENCH_LOAD_PREFIXES=()
  for ((g = 0; g < BENCH_LOADGENS; g++)); do
    BENCH_LOAD_PREFIXES+=("$prefix.$g")
    "$NODE24" "$CHAT_DIR/load.js" "${flags[@]}" --src-base "127.$((20 + g)).0.1" --name-prefix "g$g-" --samples-out "$prefix.$g" \
      >"$prefix.$g.out" 2>"$prefix.$g.log" &
    BENCH_LOAD_PIDS+=($!)
  done
}
# run_load_wait PREFIX: until the load generators are done; their summaries to PREFIX.G.json
# (1 if one printed none); BENCH_LOAD_PREFIXES: PREFIX.G of each
run_load_wait() {
  local prefix="$1" g ok=0
  for g in "${BENCH_LOAD_PIDS[@]}"; do wait "$g" || true; done
  BENCH_LOAD_PIDS=()
  for ((g = 0; g < BENCH_LOADGENS; g++)); do
    tail -n 1 "$prefix.$g.out" >"$prefix.$g.json"
    jq -e .rate "$prefix.$g.json" >/dev/null 2>&1 || { ok=1; _bench_log "load.js $g printed no summary: $(tail -n 3 "$prefix.$g.log")"; }
  done
  return "$ok"
}
run_load() { run_load_start "$@" && run_load_wait "$2"; }

# wait_connected PORT WANT: until WANT connections are established on PORT (the clients' sessions
# are up), 30 s at most
_established_at_least() { (($(ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l) >= $2)); }
wait_connected() { bench_wait 300 _established_at_least "$1" "$2"; }

# --- what it costs -------------------------------------------------------------------------------

CLK_TCK="$(getconf CLK_TCK)"
# cpu_sample: "clock workers nginx controller pm2 redis loadgen machine", ns: the CPU time of each
# process class, summed over their threads (/proc/PID/task/*/schedstat: exact, where /proc/PID/stat
# counts 10 ms ticks; a process gone counts 0), and of the whole machine (all CPUs busy: /proc/stat,
# not idle, not iowait). One awk for all of it: forks are slow on a busy machine.
cpu_sample() {
  local map="" files=() class pids p now="$EPOCHREALTIME"
  for class in workers nginx controller pm2 redis loadgen; do
    case $class in
      workers) pids="$BENCH_WORKER_PIDS" ;; nginx) pids="$BENCH_NGINX_PIDS" ;; controller) pids="$BENCH_CTL_PIDS" ;;
      pm2) pids="$BENCH_PM2_PIDS" ;; redis) pids="${REDIS_PID:-}" ;; loadgen) pids="${BENCH_LOAD_PIDS[*]}" ;;
    esac
    for p in $pids; do map+="$p=$class " files+=(/proc/"$p"/task/*/schedstat); done
  done
  # grep -H: "FILE:LINE" for every file it can read, past the ones gone meanwhile
  grep -H '' "${files[@]}" /proc/stat /dev/null 2>/dev/null | awk -v hz="$CLK_TCK" -v now="${now/./}" -v map="$map" '
    BEGIN { n = split(map, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], x, "="); class[x[1]] = x[2] } }
    /^\/proc\/stat:cpu / { sub(/^[^:]*:/, ""); m = ($2 + $3 + $4 + $7 + $8 + $9) * 1e9 / hz; next }
    /^\/proc\/[0-9]+\/task\// { split($0, f, "/"); sub(/^[^:]*:/, ""); s[class[f[3]]] += $1 }
    END { printf "%.0f000 %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n", now, s["workers"], s["nginx"], s["controller"], s["pm2"], s["redis"], s["loadgen"], m }'
}
# sleep_until EPOCH: sleep until that time (seconds since the epoch, fractions allowed), if it is ahead
sleep_until() { sleep "$(awk -v t="$1" -v n="$EPOCHREALTIME" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')"; }
# tcp_sample: "accepted held": TCP connections accepted in this network namespace so far
# (TcpPassiveOpens: by nginx and by the workers), and connections the workers hold now
tcp_sample() {
  local last=$((BENCH_PORT + BENCH_PORTS - 1))
  echo "$(nstat -asz TcpPassiveOpens 2>/dev/null | awk '$1 == "TcpPassiveOpens" { print $2; exit }' | grep . || echo 0)" \
    "$(ss -Htn state established "( sport >= :$BENCH_PORT and sport <= :$last )" 2>/dev/null | wc -l)"
}
# bpf_prog: "run_time_ns run_cnt" of the pinned steering program (0 0 without one)
bpf_prog() {
  bpftool prog show pinned "$BENCH_PINS/$BENCH_PORT/program" -j 2>/dev/null |
    jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"' 2>/dev/null || echo "0 0"
}

# measure_once CONTENDER N LOAD LEVEL ROUND INTERVAL_MS OFFERED PREFIX: one measurement, its JSON line
# to PREFIX.record. The CPU of every process class is read over a window inside the messaging phase
# (after the clients connected and started sending, before the phase ends), so connecting,
# handshakes and the drain at the end count for no one.
measure_once() {
  local c="$1" n="$2" kind="$3" level="$4" r="$5" interval="$6" offered="$7" prefix="$8" settle a b b0 b1 k0 k1 t0 load connected=1 secs
  redis-cli -u "$REDIS_URL" flushall >/dev/null
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  # load.js starts the phase once every client has its session and, for upgrading clients, its
  # WebSocket (2 s at most), and each client sends its first message within one interval; the phase
  # ends $secs s after it started, no sooner than $secs s from now. $secs: $duration, longer where
  # the interval is so long (a low rate: a slow machine's 100 %) that the window would be under 5 s
  settle="$(awk -v i="$interval" 'BEGIN { printf "%.2f", 2.5 + i / 1000 }')"
  secs="$(awk -v d="$duration" -v s="$settle" 'BEGIN { m = s + 1.5 + 5; m = (m == int(m)) ? m : int(m) + 1; print (d > m ? d : m) }')"
  run_load_start "$kind" "$prefix" "$clients" "$secs" "$interval"
  wait_connected "$BENCH_ENTRY_PORT" $((clients * 9 / 10)) || connected=0
  t0="$EPOCHREALTIME"
  sleep_until "$(awk -v t="$t0" -v s="$settle" 'BEGIN { printf "%.3f", t + s }')"
  read -r -a b0 <<<"$(bpf_prog)"
  read -r -a k0 <<<"$(tcp_sample)"
  a="$(cpu_sample)"
  sleep_until "$(awk -v t="$t0" -v d="$secs" 'BEGIN { printf "%.3f", t + d - 1.5 }')"
  b="$(cpu_sample)"
  read -r -a k1 <<<"$(tcp_sample)"
  read -r -a b1 <<<"$(bpf_prog)"
  run_load_wait "$prefix" || return 1
  local i before after
  read -r -a before <<<"$a"
  read -r -a after <<<"$b"
  for ((i = 0; i < 8; i++)); do
    ((after[i] >= before[i])) || { _bench_log "  a process class's CPU time went down (a process or thread gone in the window): measurement dropped"; return 1; }
  done
  (((after[0] - before[0]) >= 2000000000)) || { _bench_log "  window under 2 s (the phase started late; samples: $a / $b): measurement dropped"; return 1; }
  local meta
  meta="$(jq -cn --arg c "$c" --argjson n "$n" --arg kind "$kind" --arg level "$level" --argjson r "$r" \
    --argjson interval "$interval" --argjson offered "$offered" --arg settings "$BENCH_SETTINGS" \
    --arg a "$a" --arg b "$b" --arg load "$load" --arg loadend "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson connected "$connected" --argjson settle "$settle" \
    --argjson bns "$((b1[0] - b0[0]))" --argjson bcnt "$((b1[1] - b0[1]))" \
    --argjson opens "$((k1[0] - k0[0]))" --argjson held "${k1[1]}" \
    '($a | split(" ") | map(tonumber)) as $x | ($b | split(" ") | map(tonumber)) as $y |
     def d($i): (($y[$i] - $x[$i]) / 1e9 * 1000 | round) / 1000;
     {contender: $c, workers: $n, load: $kind, level: $level, round: $r, interval_ms: $interval,
      offered_events_per_s: $offered, settings: $settings, window_s: d(0), window_start_s: $settle,
      clients_connected_before_window: ($connected == 1),
      cpu_s: {workers: d(1), nginx: d(2), controller: d(3), pm2: d(4), redis: d(5), loadgen: d(6), machine: d(7)},
      load_average: {start: $load, end: $loadend}, tcp_accepted_in_window: $opens, worker_connections: $held,
      bpf: (if $bcnt > 0 then {run_cnt: $bcnt, run_time_ms: ($bns / 1e6), ns_per_run: ($bns / $bcnt | floor)} else null end)}')"
  "$NODE24" "$ROOT/bench/report.js" record "$meta" "${BENCH_LOAD_PREFIXES[@]}" >"$prefix.record"
}

# measure CONTENDER N LOAD LEVEL ROUND INTERVAL_MS OFFERED: measure_once, again (up to $attempts in
# all) while other jobs took more than $max_others % of one core meanwhile; keeps the least disturbed
measure() {
  local c="$1" n="$2" kind="$3" level="$4" r="$5" a best="" best_others="" others prefix
  mkdir -p "$out/raw"
  for ((a = 1; a <= attempts; a++)); do
    prefix="$out/raw/$c-$kind-$level-r$r-a$a"
    measure_once "$c" "$n" "$kind" "$level" "$r" "$6" "$7" "$prefix" || continue
    others="$(jq -r '100 * .cpu_s.others / .window_s | floor' "$prefix.record")"
    if [[ -z "$best" ]] || ((others < best_others)); then best="$prefix.record" best_others="$others"; fi
    ((others <= max_others)) && break
    if ((a < attempts)); then _bench_log "  other jobs used $others % of a core meanwhile (> $max_others): measuring again"; sleep 3; fi
  done
  [[ -n "$best" ]] || { _bench_log "  $c $kind $level: no measurement"; return 0; }
  jq -c --argjson a "$((a > attempts ? attempts : a))" '. + {attempts: $a}' "$best" >>"$out/results.jsonl"
  tail -n 1 "$out/results.jsonl" | jq -r '"bench:   \(.contender) \(.load) \(.level): \(.events_per_s) events/s (offered \(.offered_events_per_s // "closed loop")), server \(.server_us_per_event) µs/event (workers \(.us_per_event.workers), nginx \(.us_per_event.nginx), controller \(.us_per_event.controller)), p50 \(.p50_ms) p99 \(.p99_ms) ms, 400s \(.errors), clients ok \(.clients_ok)/\(.clients), load.js \(.loadgen_share_pct) % of the machine, others \(.cpu_s.others) s in \(.window_s) s"' >&2
}

# --- the machine ---------------------------------------------------------------------------------

# The scheduler's autogroups (kernel.sched_autogroup_enabled, on in Debian's kernels): the CPU is
# shared fairly between sessions, then between the processes of a session. PM2 cluster mode's workers
# are children of the PM2 daemon in its session, so all of them together weigh one share; PM2 fork
# mode's workers each start a session of their own and weigh one share each. On a saturated machine
# that alone decides who gets the CPU (docs/pm2.md, "On a busy host"). The benchmarks weigh every
# process by itself (autogroups off while they run, restored after) unless --keep-autogroup. Only
# processes started meanwhile are affected: the kernel picks a task's group when it forks.
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

# What a benchmark leaves behind, undone on exit, failed or not: the load generators, the
# contender, the stats sampler, Redis, the pin folder, the temporary files, the scheduler setting.
STATS_PID=""
bench_cleanup() {
  local p
  for p in "${BENCH_LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BENCH_LOAD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  contender_stop
  if [[ -n "$STATS_PID" ]]; then kill "$STATS_PID" 2>/dev/null || true; wait "$STATS_PID" 2>/dev/null || true; fi
  redis_stop
  rmdir "$BENCH_PINS" 2>/dev/null || true
  rm -rf "$BENCH_TMP"
  bench_scheduler_end
}

# bench_setup: the temp folder, pins, cleanup trap, scheduler, bpf_stats on, Redis (after
# scripts/node-env.sh; $keep_autogroup)
bench_setup() {
  BENCH_TMP="$(mktemp -d /tmp/sio-steer-bench-tmp.XXXXXX)"
  BENCH_PINS="/sys/fs/bpf/sio-steer-bench-$$" # bpffs names may not contain dots
  mkdir -p "$BENCH_PINS" "$BENCH_TMP/locks"
  export BENCH_TMP BENCH_PINS
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  bench_scheduler_begin "${keep_autogroup:-0}"
  cc -O2 -Wall -o "$BENCH_TMP/bpf-stats" "$ROOT/bench/bpf-stats.c"
  "$BENCH_TMP/bpf-stats" >"$BENCH_TMP/bpf-stats.out" 2>&1 &
  STATS_PID=$!
  redis_start
}
