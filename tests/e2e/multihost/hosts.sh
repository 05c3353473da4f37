# shellcheck shell=bash
# Helpers of tests/e2e/multihost_test.sh (sourced after tests/e2e/lib.sh): network namespaces as
# hosts, each running what a production host runs (sio-steer attach with the packaged unit's
# options, a PM2 cluster of the chat, nginx from `sio-steer nginx-conf`), an edge with the front
# balancers (nftables, HAProxy), Redis, and the clients.
#
# Addresses: 198.18.0.0/15 (RFC 2544's benchmarking range), inside the test's namespaces only; no
# namespace has a route anywhere else.
#   clients   198.18.0.0/16, all local to the clients' namespace (a local route on lo)
#   edge      198.19.255.1 (to the clients), 198.19.1.1 (bridge br0, to the hosts and Redis),
#             nftables VIP 198.19.0.10:80 (DNAT), HAProxy on 198.19.0.20:80
#   hosts     198.19.1.11 .. 198.19.1.14: the workers on :5001, nginx on :8080
#   Redis     198.19.1.50:6379

MH_NS="mh$$"   # namespace names: unique to this run (in /run/netns, which other runs share)
MH_NAMESPACES=()
MH_PORT=5001   # the workers' port on every host (each host is its own namespace)
MH_NGINX_PORT=8080
MH_EDGE_ADDR=198.19.1.1
MH_NFT_VIP=198.19.0.10
MH_HAPROXY_VIP=198.19.0.20
MH_REDIS_ADDR=198.19.1.50
MH_REDIS_URL="redis://$MH_REDIS_ADDR:6379"
MH_REDIS_PID=""
declare -A MH_ATTACH_PID=() MH_NGINX_PID=()

host_addr() { echo "198.19.1.$((10 + ${1#h}))"; }

# in_ns NAME CMD...: CMD in namespace NAME (only the network namespace changes, not the mounts).
# In the background, call `nsenter "$(ns_net NAME)" -- CMD &` instead: then $! is CMD's pid (nsenter
# execs it), not that of a subshell running the function.
in_ns() { nsenter --net="/run/netns/$MH_NS$1" -- "${@:2}"; }
ns_net() { echo "--net=/run/netns/$MH_NS$1"; }

ns_add() {
  ip netns add "$MH_NS$1"
  MH_NAMESPACES+=("$MH_NS$1")
  in_ns "$1" ip link set lo up
}

# mh_network HOSTS...: the namespaces, links, addresses and routes.
mh_network() {
  local h a
  ns_add e
  ns_add c
  ns_add r
  in_ns e sysctl -qw net.ipv4.ip_forward=1
  in_ns e ip link add br0 type bridge
  in_ns e ip addr add "$MH_EDGE_ADDR/24" dev br0
  in_ns e ip link set br0 up
  in_ns e ip addr add "$MH_HAPROXY_VIP/32" dev lo
  # clients <-> edge
  ip link add c0 netns "${MH_NS}c" type veth peer name ec0 netns "${MH_NS}e"
  in_ns c ip addr add 198.19.255.2/30 dev c0
  in_ns c ip link set c0 up
  in_ns c ip route add local 198.18.0.0/16 dev lo   # every client address is local here
  in_ns c ip route add 198.19.0.0/16 via 198.19.255.1
  in_ns e ip addr add 198.19.255.1/30 dev ec0
  in_ns e ip link set ec0 up
  in_ns e ip route add 198.18.0.0/16 via 198.19.255.2
  # hosts and Redis on the edge's bridge
  for h in "$@" r; do
    [[ "$h" == r ]] && a="$MH_REDIS_ADDR" || { ns_add "$h"; a="$(host_addr "$h")"; }
    ip link add eth0 netns "$MH_NS$h" type veth peer name "e$h" netns "${MH_NS}e"
    in_ns e ip link set "e$h" master br0 up
    in_ns "$h" ip addr add "$a/24" dev eth0
    in_ns "$h" ip link set eth0 up
    in_ns "$h" ip route add 198.18.0.0/16 via "$MH_EDGE_ADDR"   # replies to clients via the edge
  done
}

mh_redis_start() {
  local i
  mkdir -p "$E2E_TMP/redis"
  nsenter "$(ns_net r)" -- redis-server --port 6379 --bind "$MH_REDIS_ADDR" --protected-mode no \
    --save '' --appendonly no --daemonize no \
    --dir "$E2E_TMP/redis" --logfile "$E2E_TMP/redis/redis.log" --maxclients 10000 >/dev/null 2>&1 &
  MH_REDIS_PID=$!
  E2E_BG_PIDS+=("$MH_REDIS_PID")
  for ((i = 0; i < 100; i++)); do
    [[ "$(in_ns r redis-cli -h "$MH_REDIS_ADDR" ping 2>/dev/null)" == PONG ]] && return 0
    sleep 0.1
  done
  e2e_fail "redis-server did not start: $(tail -n 3 "$E2E_TMP/redis/redis.log")"
}

mh_redis_stop() {
  local i
  kill "$MH_REDIS_PID" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$MH_REDIS_PID" 2>/dev/null || break; sleep 0.1; done
  wait "$MH_REDIS_PID" 2>/dev/null || true
}

# pm2 on host H (its own PM2_HOME): host_pm2 H ARGS...
host_pm2() {
  local h="$1"
  shift
  in_ns "$h" env PM2_HOME="$E2E_TMP/$h/pm2" $PM2 "$@"
}

host_worker_pids() { # H: "pid instance" of its online workers
  host_pm2 "$1" jlist 2>/dev/null | "$NODE24" -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      for (const p of JSON.parse(s || "[]"))
        if (p.pm2_env.status === "online" && p.pid) console.log(p.pid, p.pm2_env.NODE_APP_INSTANCE ?? p.pm_id);
    });'
}

host_listeners() { in_ns "$1" ss -Hltn "sport = :$MH_PORT" | wc -l; }

# sio-steer attach on host H, the way the packaged unit runs it (packaging/sio-steer@.service:
# `attach --port %i --wait-for-listeners 60 --config /etc/sio-steer/%i.conf`, the file being the
# packaged example), with this test's pin root and lock folder added to the file.
host_attach() {
  local h="$1" conf="$E2E_TMP/$1/$MH_PORT.conf" log="$E2E_TMP/$1/attach.log"
  { cat "$E2E_ROOT/packaging/sio-steer.conf"
    echo "pin-root = $E2E_PINS/$h"
    echo "lock-dir = $E2E_TMP/$h/locks"; } >"$conf"
  echo "--- attach started $(date +%T.%N)" >>"$log"
  nsenter "$(ns_net "$h")" -- "$SIO_STEER" attach --port "$MH_PORT" --wait-for-listeners 60 --config "$conf" >>"$log" 2>&1 &
  MH_ATTACH_PID[$h]=$!
  E2E_BG_PIDS+=("$!")
  echo "$!" >"$E2E_TMP/$h/attach.pid"   # for the parent, when a host comes up in a subshell
}

host_attach_stop() {
  local h="$1" pid="${MH_ATTACH_PID[$1]}" i
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  wait "$pid" 2>/dev/null || true
}

host_status() { in_ns "$1" "$SIO_STEER" status --port "$MH_PORT" --pin-root "$E2E_PINS/$1" "${@:2}"; }

# Waits (up to $2 s) until host H's controller follows N live workers in sync.
host_wait_steered() {
  local h="$1" n="$2" limit="${3:-60}" i
  for ((i = 0; i < limit * 5; i++)); do
    host_status "$h" --json 2>/dev/null | jq -e --argjson n "$n" '.in_sync and ([.workers[] | select(.live)] | length) == $n' >/dev/null && return 0
    sleep 0.2
  done
  host_status "$h" >&2 || true
  tail -n 20 "$E2E_TMP/$h/attach.log" >&2
  e2e_fail "$h: sio-steer does not follow $n live workers in sync after $limit s"
}

# host_pm2_start H N: the chat as a PM2 cluster of N on host H.
host_pm2_start() {
  local h="$1" n="$2"
  in_ns "$h" env PM2_HOME="$E2E_TMP/$h/pm2" PORT="$MH_PORT" INSTANCES="$n" REDIS_URL="$MH_REDIS_URL" \
    SIO_STEER_LOCK_DIR="$E2E_TMP/$h/locks" SIO_DRAIN_MS="$MH_DRAIN_MS" LISTEN_TIMEOUT=60000 \
    HOST_NAME="$h" SIO_SID_COOKIE=io SIO_ADAPTER="$MH_ADAPTER" SIO_STEER_PEER_DIR="$E2E_TMP/$h/peers" \
    $PM2 start "$CHAT_DIR/ecosystem.config.cjs" >"$E2E_TMP/$h/pm2-start.log" 2>&1 ||
    { cat "$E2E_TMP/$h/pm2-start.log" >&2; e2e_fail "$h: pm2 start failed"; }
}

host_wait_listeners() { # H N [limit s]
  local i
  for ((i = 0; i < ${3:-60} * 5; i++)); do
    (($(host_worker_pids "$1" | wc -l) >= $2 && $(host_listeners "$1") >= $2)) && return 0
    sleep 0.2
  done
  host_pm2 "$1" list >&2 || true
  e2e_fail "$1: $2 workers not listening on :$MH_PORT"
}

# nginx on host H, configured by `sio-steer nginx-conf` to believe the edge's X-Forwarded-For.
host_nginx_start() {
  local h="$1" dir="$E2E_TMP/$1/nginx" i
  mkdir -p "$dir"
  "$SIO_STEER" nginx-conf --listen "$(host_addr "$h"):$MH_NGINX_PORT" --upstream "127.0.0.1:$MH_PORT" \
    --real-ip-header X-Forwarded-For --trusted "$MH_EDGE_ADDR/32" >"$dir/site.conf"
  nginx_main_conf "$dir" "$dir/site.conf"
  in_ns "$h" nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" || e2e_fail "$h: nginx -t refused the configuration"
  nsenter "$(ns_net "$h")" -- nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  MH_NGINX_PID[$h]=$!
  E2E_BG_PIDS+=("$!")
  echo "$!" >"$E2E_TMP/$h/nginx.pid"
  for ((i = 0; i < 100; i++)); do
    in_ns "$h" bash -c "exec 3<>/dev/tcp/$(host_addr "$h")/$MH_NGINX_PORT" 2>/dev/null && return 0
    sleep 0.05
  done
  e2e_fail "$h: nginx is not listening"
}

# host_up H N: a whole host: controller (waiting for listeners, as at boot), PM2 cluster of N, nginx.
host_up() {
  local h="$1" n="$2"
  mkdir -p "$E2E_TMP/$h/locks" "$E2E_TMP/$h/pm2" "$E2E_PINS/$h"
  mkdir -m 0700 -p "$E2E_TMP/$h/peers"   # the drain module's peer folder: one per host, as on real hosts
  host_attach "$h"
  host_pm2_start "$h" "$n"
  host_wait_listeners "$h" "$n"
  host_wait_steered "$h" "$n"
  host_nginx_start "$h"
}

host_down() { # stops PM2 (its private PM2_HOME) and detaches; for the cleanup
  local h="$1" god i
  god="$(cat "$E2E_TMP/$h/pm2/pm2.pid" 2>/dev/null || true)"
  host_pm2 "$h" kill >/dev/null 2>&1 || true
  if [[ -n "$god" ]]; then
    for ((i = 0; i < 50; i++)); do kill -0 "$god" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$god" 2>/dev/null || true
  fi
  [[ -n "${MH_ATTACH_PID[$h]:-}" ]] && host_attach_stop "$h"
  if [[ -d "$E2E_PINS/$h/$MH_PORT" ]]; then
    in_ns "$h" "$SIO_STEER" detach --port "$MH_PORT" --pin-root "$E2E_PINS/$h" --lock-dir "$E2E_TMP/$h/locks" >/dev/null 2>&1 || true
  fi
}

# --- the edge ------------------------------------------------------------------------------------

declare -A MH_NFT_STATE=()   # host -> ready | drain | out | down | absent (multihost/nft.js)

nft_apply() { # [--init]
  local args=() h
  for h in "${!MH_NFT_STATE[@]}"; do args+=("$h=$(host_addr "$h")=${MH_NFT_STATE[$h]}"); done
  "$NODE24" "$E2E_ROOT/tests/e2e/multihost/nft.js" --vip "$MH_NFT_VIP" --port 80 --target-port "$MH_PORT" \
    "$@" "${args[@]}" >"$E2E_TMP/nft.rules" 2>>"$E2E_TMP/nft.log"
  in_ns e nft -f "$E2E_TMP/nft.rules" || { cat "$E2E_TMP/nft.rules" >&2; e2e_fail "nft refused the ruleset"; }
  e2e_log "nftables: $(tail -n 1 "$E2E_TMP/nft.log") (${MH_NFT_STATE[*]@K})"
}

# The edge's health check for nftables (kube-proxy's readiness, here a TCP connect to the workers'
# port every 0.5 s): host H is down after 2 failures in a row, ready after 2 successes.
nft_probe() { in_ns e bash -c "exec 3<>/dev/tcp/$(host_addr "$1")/$MH_PORT" 2>/dev/null; }
nft_follow_health() { # H up|down: waits (up to 20 s) for the probe to say so, then applies
  local h="$1" want="$2" ok=0 i
  for ((i = 0; i < 40 && ok < 2; i++)); do
    if nft_probe "$h"; then [[ $want == up ]] && ok=$((ok + 1)) || ok=0; else [[ $want == down ]] && ok=$((ok + 1)) || ok=0; fi
    ((ok < 2)) && sleep 0.5
  done
  ((ok >= 2)) || e2e_fail "the edge's health check never saw $h $want"
  [[ $want == up ]] && MH_NFT_STATE[$h]=ready || MH_NFT_STATE[$h]=down
  nft_apply
}

haproxy_start() { # HOSTS...: all declared; the ones not in MH_HAPROXY_ENABLED start disabled
  local cfg="$E2E_TMP/haproxy/haproxy.cfg" h i
  mkdir -p "$E2E_TMP/haproxy"
  {
    cat <<EOF
global
    maxconn 8000
    stats socket $E2E_TMP/haproxy/admin.sock mode 600 level admin
    log stderr format short local0 notice
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 75s
    timeout server 75s
    timeout tunnel 1h
frontend chat
    bind $MH_HAPROXY_VIP:80
    default_backend hosts
backend hosts
    # A new client (a handshake) goes by a consistent hash of its address; every request of a
    # session goes to the host that answered its handshake, drained or not: HAProxy learns it from
    # the sid in the handshake's cookie (the chat's SIO_SID_COOKIE=io), and matches ?sid=.
    balance source
    hash-type consistent
EOF
    if [[ "${MH_HAPROXY_STICK:-1}" == 1 ]]; then cat <<EOF
    stick-table type string len 64 size 200k expire 1h
    stick store-response res.cook(io)
    stick match urlp(sid)
EOF
    fi
    cat <<EOF
    option forwardfor
    # health: the chat's /health through the host's nginx (nginx alone answering is not enough),
    # with time to answer on a busy host: with the default (timeout = inter, 500 ms) HAProxy took
    # loaded but live hosts out, and the stick table sent their sessions' requests to other hosts
    # (400s); 3 s was still too short at a load average of 20 on 2 cores
    option httpchk
    timeout check 5s
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host chat
    http-check expect status 200
EOF
    for h in "$@"; do
      echo "    server $h $(host_addr "$h"):$MH_NGINX_PORT id ${h#h} check inter 1s fall 3 rise 2$([[ " $MH_HAPROXY_ENABLED " == *" $h "* ]] || echo ' disabled')"
    done
    # The same hosts in TCP mode, straight to the workers' port: HAProxy's own connections hide the
    # client's address (the failure the HTTP mode + nginx-conf --real-ip-header avoids).
    echo "frontend chat_tcp"
    echo "    mode tcp"
    echo "    bind $MH_HAPROXY_VIP:81"
    echo "    default_backend hosts_tcp"
    echo "backend hosts_tcp"
    echo "    mode tcp"
    echo "    balance source"
    echo "    hash-type consistent"
    for h in $MH_HAPROXY_ENABLED; do echo "    server $h $(host_addr "$h"):$MH_PORT id ${h#h}"; done
  } >"$cfg"
  haproxy -c -q -f "$cfg" || e2e_fail "haproxy -c refused the configuration"
  nsenter "$(ns_net e)" -- haproxy -f "$cfg" -db >"$E2E_TMP/haproxy/haproxy.log" 2>&1 &
  E2E_BG_PIDS+=("$!")
  for ((i = 0; i < 100; i++)); do
    in_ns e bash -c "exec 3<>/dev/tcp/$MH_HAPROXY_VIP/80" 2>/dev/null && return 0
    sleep 0.05
  done
  e2e_fail "haproxy is not listening"
}

# A command on HAProxy's admin socket (its runtime API); prints the answer.
haproxy_cmd() {
  "$NODE24" -e 'const s = require("net").connect(process.argv[1]); s.end(process.argv[2] + "\n"); s.pipe(process.stdout);' \
    "$E2E_TMP/haproxy/admin.sock" "$1"
}

haproxy_server_state() { # H: UP, DOWN, MAINT, DRAIN ... (the `show stat` status column)
  haproxy_cmd "show stat" | awk -F, -v s="$1" '$1 == "hosts" && $2 == s { print $18 }'
}

haproxy_wait_state() { # H STATE [limit s]
  local i
  for ((i = 0; i < ${3:-20} * 5; i++)); do
    [[ "$(haproxy_server_state "$1")" == "$2" ]] && return 0
    sleep 0.2
  done
  e2e_fail "HAProxy: server $1 is $(haproxy_server_state "$1"), not $2"
}

# --- the clients ---------------------------------------------------------------------------------

# clients_start NAME URL BASE: one clients.js process in the clients' namespace.
clients_start() {
  local name="$1" url="$2" base="$3"
  nsenter "$(ns_net c)" -- "$NODE24" "$E2E_ROOT/tests/e2e/multihost/clients.js" --ctl "$E2E_TMP/$name.sock" --name "$name" \
    --url "$url" --base "$base" --polling "$MH_CLIENTS_PER_KIND" --upgrade "$MH_CLIENTS_PER_KIND" \
    --websocket "$MH_CLIENTS_PER_KIND" --late "$MH_LATE" --interval "$MH_INTERVAL_MS" --time-limit 900 \
    2>"$E2E_TMP/$name.log" &
  E2E_BG_PIDS+=("$!")
}

ctl() { # NAME PATH [curl args]: a request to a clients.js process
  curl -sSf --max-time 90 --unix-socket "$E2E_TMP/$1.sock" "http://clients$2" "${@:3}"
}
