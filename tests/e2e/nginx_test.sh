#!/usr/bin/env bash
# End-to-end behind nginx: Socket.IO clients -> nginx (configured by `sio-steer nginx-conf`) -> the
# chat example under a PM2 cluster (Node 24, reusePort, Redis adapter), steered by sio-steer; and the
# same behind a CDN-style hop. Runs in a fresh network namespace; nginx is started here with its own
# prefix folder and stopped by pid.
#   tests/e2e/nginx_test.sh affinity|no-proxy-bind|keepalive|cdn|destination|destination-no-key|destination-reload
#     affinity       300 clients (half polling, half upgrading to WebSocket) through nginx: all OK,
#                    0 x 400, every worker used, no proxy warning in `sio-steer status`
#     no-proxy-bind  the same configuration without its proxy_bind line: every client lands on one
#                    worker (nginx is the only client sio-steer sees), and `status` warns about it
#     keepalive      the configuration with an upstream keepalive: "Session ID unknown" 400s (a parked
#                    connection, opened from one client's source, carries another client's requests)
#     cdn            a CDN stand-in in front (every request leaves from a random edge address, with
#                    the visitor in X-Forwarded-For): with --real-ip-header/--trusted all OK; without
#                    them, "Session ID unknown" 400s (the visitor's requests hop between workers)
#     destination    `nginx-conf --key destination` (upstream keepalive, one upstream per destination) and
#                    `attach --key destination`: 300 clients all OK, 0 x 400, every worker used, and the
#                    workers accepted far fewer connections than nginx proxied requests (kept alive)
#     destination-no-key  the same nginx configuration with the workers unsteered (the kernel's own
#                    reuseport hash): "Session ID unknown" 400s (kept-alive connections reach any worker)
#     destination-reload  `pm2 reload` under load in destination mode: 0 failed requests, 0 x 400 (each
#                    replaced worker hands its destinations over whole: sio-steer-drain)
if [[ -z "${SIO_STEER_E2E_NETNS:-}" ]]; then
  # npm ci (if node_modules is stale) needs the network: before leaving it
  . "$(dirname "$0")/../../scripts/node-env.sh" >/dev/null || exit 1
  SIO_STEER_E2E_NETNS=1 exec unshare --net -- bash "$0" "$@"
fi
ip link set lo up
. "$(dirname "$0")/lib.sh"

command -v nginx >/dev/null || e2e_fail "nginx is not installed (scripts/install-deps.sh)"
LOAD=(--polling 150 --upgrade 150 --messages 3 --interval 500 --time-limit 90 --src-base 127.2.0.0 --no-clients)
nginx_conf() { "$SIO_STEER" nginx-conf --upstream "127.0.0.1:$CHAT_PORT" "$@"; }

# A CDN stand-in: every request leaves from one of sixteen edge addresses, at random, and names the
# visitor in X-Forwarded-For, as a CDN's edges do. Sixteen, not four: with four, the attach's hash
# seed put every edge on one of 4 workers once in 64 runs, and no visitor could hop.
cdn_edges() {
  local i
  for i in $(seq 1 15); do printf '6.25%% 127.250.0.%d; ' "$i"; done
  printf '* 127.250.0.16;'
}
cdn_edge_conf() { # EDGE_PORT ORIGIN_PORT
  cat <<EOF
split_clients "\$request_id" \$cdn_edge { $(cdn_edges) }
map \$http_upgrade \$cdn_connection { default upgrade; "" close; }
server {
    listen 127.0.0.1:$1;
    location / {
        proxy_pass http://127.0.0.1:$2;
        proxy_bind \$cdn_edge;
        proxy_http_version 1.1;
        proxy_set_header Host \$host;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection \$cdn_connection;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_read_timeout 75s;
    }
}
EOF
}

# Clients per worker, from load.js's summary: "pid:clients ...".
spread() { jq -r '[.workers[] | "\(.pid):\(.clients)"] | join(" ")' "$1"; }

expect_all_ok() { # FILE WHAT
  local f="$1"
  e2e_log "$2: $(e2e_summary "$f"); clients per worker: $(spread "$f")"
  e2e_expect "$f" '.clients == 300 and .clients_ok == .clients' "$2: every client fully OK (one session, one worker, everything delivered)"
  e2e_expect "$f" '.http_400 == 0 and .session_unknown_400 == 0' "$2: 0 HTTP 400s"
  e2e_expect "$f" '.connect_errors == 0' "$2: 0 connect errors"
  e2e_expect "$f" '.clients_websocket == 150' "$2: every upgrading client ended on WebSocket (through nginx)"
  e2e_expect "$f" '.clients_single_worker == .clients' "$2: each client stayed on one worker"
  e2e_expect "$f" '(.workers | length) == 4 and all(.workers[]; .clients > 0)' "$2: every worker has clients"
}

expect_no_warning() {
  e2e_status --json >"$E2E_TMP/status.json"
  e2e_expect "$E2E_TMP/status.json" '.warnings == []' "no proxy warning in sio-steer status"
}

scenario_affinity() {
  e2e_start_stack 4
  e2e_attach
  local port
  port="$(free_port)"
  nginx_conf --listen "127.0.0.1:$port" >"$E2E_TMP/origin.conf"
  nginx_start origin "$port"
  e2e_load "$E2E_TMP/through-nginx.json" --url "http://127.0.0.1:$port" "${LOAD[@]}"
  expect_all_ok "$E2E_TMP/through-nginx.json" "through nginx"
  expect_no_warning
}

scenario_no-proxy-bind() {
  e2e_start_stack 4
  e2e_attach
  local port
  port="$(free_port)"
  nginx_conf --listen "127.0.0.1:$port" | grep -v 'proxy_bind \$sio_steer_src;' >"$E2E_TMP/origin.conf"
  grep -q proxy_bind "$E2E_TMP/origin.conf" && e2e_fail "proxy_bind still in the configuration"
  nginx_start origin "$port"
  local f="$E2E_TMP/no-proxy-bind.json"
  e2e_load "$f" --url "http://127.0.0.1:$port" "${LOAD[@]}"
  e2e_log "through nginx without proxy_bind: $(e2e_summary "$f"); clients per worker: $(spread "$f")"
  e2e_expect "$f" '(.workers | length) == 1' "without proxy_bind every client lands on the same worker (the failure)"
  e2e_status --json >"$E2E_TMP/status.json"
  e2e_expect "$E2E_TMP/status.json" '.warnings | length == 1 and (.[0] | contains("127.0.0.1") and contains("sio-steer nginx-conf"))' \
    "sio-steer status warns that a proxy hides the clients and points to nginx-conf"
  e2e_log "status says: $(jq -r '.warnings[0]' "$E2E_TMP/status.json")"
}

scenario_keepalive() {
  # Why the configuration keeps no idle upstream connection: the same, with an upstream keepalive.
  # (The chat's safety net that passes a misrouted request on is off: what sio-steer does alone.)
  SIO_PASS_ON=0 e2e_start_stack 4
  e2e_attach
  local port
  port="$(free_port)"
  { echo "upstream sio_steer_workers { server 127.0.0.1:$CHAT_PORT; keepalive 32; }"
    nginx_conf --listen "127.0.0.1:$port" |
      sed -e "s|proxy_pass http://127.0.0.1:$CHAT_PORT;|proxy_pass http://sio_steer_workers;|" \
          -e 's|^    ""      close;|    ""      "";|'; } >"$E2E_TMP/keepalive.conf"
  grep -q 'proxy_pass http://sio_steer_workers;' "$E2E_TMP/keepalive.conf" || e2e_fail "could not add the upstream"
  nginx_start keepalive "$port"
  local f="$E2E_TMP/keepalive.json"
  e2e_load "$f" --url "http://127.0.0.1:$port" --polling 50 --upgrade 0 --messages 3 --interval 500 \
    --time-limit 20 --no-clients
  e2e_log "through nginx with upstream keepalive: $(e2e_summary "$f")"
  e2e_expect "$f" '.session_unknown_400 > 0' "with upstream keepalive, parked connections carry other clients: 'Session ID unknown' (the failure)"
}

scenario_cdn() {
  SIO_PASS_ON=0 e2e_start_stack 4 # sio-steer alone, no safety net in the app
  e2e_attach
  local edge origin
  edge="$(free_port)"
  origin="$(free_port)"
  while [[ "$origin" == "$edge" ]]; do origin="$(free_port)"; done

  # Without --real-ip-header, nginx takes the edge for the client: a visitor hops between workers.
  { nginx_conf --listen "127.0.0.1:$origin"; cdn_edge_conf "$edge" "$origin"; } >"$E2E_TMP/cdn-no-realip.conf"
  nginx_start cdn-no-realip "$edge"
  local f="$E2E_TMP/cdn-no-realip.json"
  e2e_load "$f" --url "http://127.0.0.1:$edge" --polling 50 --upgrade 0 --messages 3 --interval 500 \
    --time-limit 20 --src-base 127.3.0.0 --no-clients
  e2e_log "CDN hop, nginx without real_ip: $(e2e_summary "$f"); clients per worker: $(spread "$f")"
  e2e_expect "$f" '.session_unknown_400 > 0' "without --real-ip-header, visitors behind the CDN get 'Session ID unknown' (the failure)"
  nginx_stop
  "$SIO_STEER" sessions --port "$CHAT_PORT" --pin-root "$E2E_PINS" --flush >/dev/null

  { nginx_conf --listen "127.0.0.1:$origin" --real-ip-header X-Forwarded-For --trusted 127.250.0.0/16
    cdn_edge_conf "$edge" "$origin"; } >"$E2E_TMP/cdn.conf"
  nginx_start cdn "$edge"
  e2e_load "$E2E_TMP/cdn.json" --url "http://127.0.0.1:$edge" "${LOAD[@]}"
  expect_all_ok "$E2E_TMP/cdn.json" "behind the CDN hop"
}

# Connections the workers accepted (the program steered each one) and requests load.js made.
connections_steered() { e2e_status --json | jq '[.workers[].selections] | add'; }

scenario_destination() {
  SIO_STEER_KEY=destination e2e_start_stack 4
  e2e_attach --key destination
  local port f="$E2E_TMP/destination.json"
  port="$(free_port)"
  nginx_conf --listen "127.0.0.1:$port" --key destination --destinations 64 >"$E2E_TMP/destination.conf"
  nginx_start destination "$port"
  e2e_load "$f" --url "http://127.0.0.1:$port" "${LOAD[@]}" --keepalive
  expect_all_ok "$f" "through nginx, --key destination"
  expect_no_warning
  local conns requests
  conns="$(connections_steered)"
  requests="$(jq .rate.requests_total "$f")"
  e2e_log "nginx proxied $requests requests over $conns connections to the workers (kept alive)"
  [[ "$conns" =~ ^[0-9]+$ && "$requests" =~ ^[0-9]+$ ]] || e2e_fail "could not count connections and requests"
  ((conns * 3 < requests)) || e2e_fail "upstream connections were not reused: $conns connections for $requests requests"
  e2e_log "ok: upstream connections reused ($conns for $requests requests)"
  "$SIO_STEER" sessions --port "$CHAT_PORT" --pin-root "$E2E_PINS" --json >"$E2E_TMP/sessions.json"
  e2e_expect "$E2E_TMP/sessions.json" \
    'length > 0 and length <= 64 and all(.[]; .client | test("^127\\.0\\.0\\.([1-9]|[1-5][0-9]|6[0-4])$"))' \
    "the recorded sessions are the destinations (127.0.0.1 ... 127.0.0.64), not clients"
}

scenario_destination-no-key() {
  # The same nginx configuration, the workers on the kernel's own reuseport hash: a kept-alive
  # connection, and each new one, reaches whichever worker. (The app's safety net is off.)
  SIO_PASS_ON=0 SIO_STEER_KEY=destination e2e_start_stack 4
  local port f="$E2E_TMP/destination-no-key.json"
  port="$(free_port)"
  nginx_conf --listen "127.0.0.1:$port" --key destination --destinations 64 >"$E2E_TMP/destination.conf"
  nginx_start destination "$port"
  e2e_load "$f" --url "http://127.0.0.1:$port" --polling 50 --upgrade 0 --messages 3 --interval 500 \
    --time-limit 20 --no-clients --keepalive
  e2e_log "destination configuration without sio-steer: $(e2e_summary "$f")"
  e2e_expect "$f" '.session_unknown_400 > 0' "without --key destination steering, 'Session ID unknown' (the failure)"
}

scenario_destination-reload() {
  SIO_STEER_KEY=destination e2e_start_stack 4
  e2e_attach --key destination
  local port f="$E2E_TMP/destination-reload.json"
  port="$(free_port)"
  nginx_conf --listen "127.0.0.1:$port" --key destination --destinations 64 >"$E2E_TMP/destination.conf"
  nginx_start destination "$port"
  e2e_load_bg "$f" --url "http://127.0.0.1:$port" --polling 100 --upgrade 100 --messages 24 --interval 500 \
    --time-limit 120 --keepalive --src-base 127.2.0.0
  sleep 3
  e2e_log "pm2 reload chat under load, through nginx, --key destination"
  $PM2 reload chat >"$E2E_TMP/reload.out" 2>&1 || { cat "$E2E_TMP/reload.out" >&2; e2e_fail "pm2 reload failed"; }
  wait "$E2E_LOAD_PID"
  e2e_log "during pm2 reload, --key destination: $(e2e_summary "$f"); failed requests $(jq -c '[.failed_requests, .http_errors]' "$f")"
  e2e_expect "$f" '.failed_requests == 0 and .http_400 == 0 and .resets == 0' "0 failed requests: no error status, no reset"
  e2e_expect "$f" '.connect_errors == 0' "0 connect errors"
  e2e_expect "$f" 'all(.per_client[]; (.instances | length) < 2 or .instances[0] == .instances[1])' \
    "a client that moved went to its own instance's replacement (the successor)"
  e2e_expect "$f" '.handovers > 0 and .disconnects_polling == 0 and .acks_lost_polling == 0' \
    "long-polling sessions were handed over through nginx: none disconnected, no ack lost"
  e2e_expect "$f" '.events_missed == 0 and .events_duplicated == 0' "every event the server took reached every recipient, once"
  grep -h "stopped:" "$PM2_HOME"/logs/*.log | sed 's/^/e2e:   /' >&2 || true
  grep -qh "destinations released: [1-9]" "$PM2_HOME"/logs/*.log ||
    e2e_fail "no worker released a destination to its successor"
}

case "${1:-}" in
  affinity | no-proxy-bind | keepalive | cdn | destination | destination-no-key | destination-reload) "scenario_$1" ;;
  *) echo "usage: $0 affinity|no-proxy-bind|keepalive|cdn|destination|destination-no-key|destination-reload" >&2; exit 2 ;;
esac
nginx_stop
e2e_log "PASS: $1"
