#!/usr/bin/env bash
# End-to-end: the chat example under a real PM2 cluster (Node 24, reusePort), Redis adapter, real
# Socket.IO clients from hundreds of loopback addresses, with and without sio-steer.
#   tests/e2e/pm2_test.sh affinity|reload|reload-busy|scale|kill|restart|plain-listen
. "$(dirname "$0")/lib.sh"

# A load that lasts long enough for something to happen in the middle of it.
LONG=(--polling 100 --upgrade 100 --messages 24 --interval 500 --time-limit 120)

# Clients that were on `pid` when the load began (their first session's worker).
clients_of() { jq "[.per_client[] | select(.pids[0] == $2)] | length" "$1"; }

scenario_affinity() {
  # The app as most are: a request for a session another worker holds gets a 400 (sio-steer-drain's
  # safety net that passes it on is off), so the steering alone is what is tested.
  SIO_PASS_ON=0 e2e_start_stack 4
  e2e_load "$E2E_TMP/without.json" --polling 100 --upgrade 100 --messages 3 --time-limit 25 --no-clients
  e2e_log "without sio-steer: $(e2e_summary "$E2E_TMP/without.json")"
  e2e_expect "$E2E_TMP/without.json" '.session_unknown_400 > 0' "without sio-steer, polling fails with 'Session ID unknown' (the failure being fixed)"

  e2e_attach
  # A chat's pace (a message every 5 s per client, rooms of 5) rather than a flood: latency is measured, not
  # saturation (that is scripts/bench.sh's job); the load generator shares the 2 cores.
  e2e_load "$E2E_TMP/with.json" --polling 200 --upgrade 200 --messages 3 --interval 5000 --room-size 5 --time-limit 120 \
    --src-base 127.2.0.0 --no-clients
  e2e_log "with sio-steer: $(e2e_summary "$E2E_TMP/with.json")"
  local f="$E2E_TMP/with.json"
  e2e_expect "$f" '.clients == 400 and .clients_ok == .clients' "every client fully OK (one session, one worker, everything delivered)"
  e2e_expect "$f" '.http_400 == 0 and .session_unknown_400 == 0' "0 HTTP 400s"
  e2e_expect "$f" '.connect_errors == 0' "0 connect errors"
  e2e_expect "$f" '.acks.received == .acks.expected and .dms.received == .dms.expected' "every ack and direct message"
  e2e_expect "$f" '.broadcasts.received == .broadcasts.expected' "every broadcast to every client"
  e2e_expect "$f" '.clients_websocket == 200' "every default client upgraded to WebSocket"
  e2e_expect "$f" '.latency_ms.p99 < 1000' "delivery latency p99 under 1 s"
  e2e_expect "$f" '(.workers | length) == 4 and all(.workers[]; .clients > 0)' "every worker has clients (all cores in use)"
}

# pm2 reload under load. A stopping worker hands each long-polling session to its successor (the
# new worker of its instance) and closes each WebSocket right after an ack, for Socket.IO to
# recover on the successor (packages/sio-steer-drain). First the failure this fixes: the same
# reload with the stop most apps have (httpServer.close(); io.close()).
# 200 clients of each kind with Socket.IO's default client options, an acked message every 200 ms
# each (a dm and a room post every 400 ms), pm2 reload of the 4 workers in the middle. An ack is
# waited for up to 60 s: one that does not come is lost, not late.
RELOAD_LOAD=(--polling 200 --upgrade 200 --interval 400 --room-size 5 --duration 25 --time-limit 150 --ack-timeout 60)

reload_under_load() {
  local f="$1"
  e2e_load_bg "$f" "${RELOAD_LOAD[@]}" --src-base "$2"
  sleep 6
  e2e_log "pm2 reload chat"
  $PM2 reload chat >"$E2E_TMP/reload.out" 2>&1 || { cat "$E2E_TMP/reload.out" >&2; e2e_fail "pm2 reload failed"; }
  wait "$E2E_LOAD_PID"
  e2e_log "during pm2 reload: $(e2e_summary "$f")"
  jq -r '"  per transport: polling unaffected \(.clients_unaffected_polling)/\(.polling), disconnects \(.disconnects_polling), acks lost \(.acks_lost_polling); upgrade unaffected \(.clients_unaffected_upgrade)/\(.upgrade), disconnects \(.disconnects_upgrade), recovered \(.recovered), acks lost \(.acks_lost_upgrade); handed over \(.handovers); events missed \(.events_missed), duplicated \(.events_duplicated); longest gap \(.max_gap_ms) ms"' "$f" >&2
}

# CPU-bound processes beside the workers for a busy host, each bounded in time, stopped by pid.
start_hogs() {
  local i
  for ((i = 0; i < $1; i++)); do
    timeout 300 sh -c 'while :; do :; done' &
    E2E_BG_PIDS+=($!)
  done
  e2e_log "$1 CPU hogs running beside the workers"
}

expect_reload_unnoticed() {
  local f="$1"
  e2e_expect "$f" '.http_400 == 0 and .failed_requests == 0 and .resets == 0' "0 failed requests: no HTTP 400, no error status, no reset"
  e2e_expect "$f" '.connect_errors == 0' "0 connect errors"
  e2e_expect "$f" '.handovers >= 150' "long-polling sessions were handed over (the reload was tested)"
  e2e_expect "$f" '.disconnects_polling == 0 and .acks_lost_polling == 0 and .clients_unaffected_polling == .polling' \
    "every long-polling client: not disconnected, no ack lost, nothing missed (its session moved with it)"
  e2e_expect "$f" 'all(.per_client[] | select(.kind == "upgrade"); .disconnects <= 1 and .recovered == .disconnects)' \
    "every WebSocket client reconnected at most once, and got its session back (id, rooms, missed events)"
  e2e_expect "$f" '.events_missed == 0 and .events_duplicated == 0' "every event the server took reached every recipient, once"
  e2e_expect "$f" 'all(.per_client[]; (.instances | length) < 2 or .instances[0] == .instances[1])' \
    "a client that moved went to its own instance's replacement (the successor)"
  # Not asserted (cannot be, with default client options): a message a WebSocket client sent while
  # its close was on the way is lost with its ack (Socket.IO's client drops the acks of a closed session).
  e2e_log "acks lost by WebSocket clients across their reconnect: $(jq .acks_lost_upgrade "$f") of $(jq .acks.expected "$f")"
  grep -q "worker socket went" "$E2E_TMP/attach.log" || e2e_fail "the controller logged no replaced socket"
}

scenario_reload() {
  local f
  SIO_STOP=close e2e_start_stack 4
  e2e_attach
  f="$E2E_TMP/reload-close.json"
  e2e_load_bg "$f" --polling 100 --upgrade 100 --messages 24 --interval 500 --time-limit 45
  sleep 3
  e2e_log "pm2 reload chat, the old workers stopping with io.close()"
  SIO_STOP=graceful $PM2 reload chat --update-env >"$E2E_TMP/reload.out" 2>&1 ||
    { cat "$E2E_TMP/reload.out" >&2; e2e_fail "pm2 reload failed"; }
  wait "$E2E_LOAD_PID"
  e2e_log "during pm2 reload, io.close(): $(e2e_summary "$f")"
  e2e_expect "$f" '.http_400 + .resets > 0 and .disconnects > 0' "a reload with io.close() fails requests and disconnects clients (the failure being fixed)"

  reload_under_load "$E2E_TMP/reload.json" 127.2.0.0
  expect_reload_unnoticed "$E2E_TMP/reload.json"
}

# The same on a busy host: 4 CPU-bound processes beside the 4 workers on 2 cores.
scenario_reload-busy() {
  e2e_start_stack 4
  e2e_attach
  start_hogs 4
  local f="$E2E_TMP/reload-busy.json"
  reload_under_load "$f" 127.3.0.0
  # What a busy host keeps, asserted: no failed request, every long-polling session handed over
  # without a disconnect or a lost ack, every WebSocket client back with its session on its first
  # reconnect.
  e2e_expect "$f" '.http_400 == 0 and .failed_requests == 0 and .resets == 0' "0 failed requests: no HTTP 400, no error status, no reset"
  e2e_expect "$f" '.connect_errors == 0' "0 connect errors"
  e2e_expect "$f" '.handovers >= 150' "long-polling sessions were handed over (the reload was tested)"
  e2e_expect "$f" '.disconnects_polling == 0 and .acks_lost_polling == 0' "every long-polling client: not disconnected, no ack lost"
  e2e_expect "$f" 'all(.per_client[] | select(.kind == "upgrade"); .disconnects >= 1 and .recovered >= 1)' \
    "every WebSocket client got its session back on its first reconnect"
  # Reported, not asserted until a longer series on a busy host shows none: a WebSocket client
  # reconnecting twice, and then an event missed or doubled. Seen when a starved successor's
  # upgradeTimeout ended an upgrade it had probed (socket.io-client's polling then sits paused until
  # a ping timeout: sio-steer-drain's lib/upgrade.js), and when a drain gave up on a controller whose
  # answer it read late (lib/control.js); an upgrade relayed through the stopping worker would too.
  e2e_log "not asserted on a busy host: WebSocket clients reconnecting twice $(jq '[.per_client[] | select(.kind == "upgrade" and .disconnects > 1)] | length' "$f"), events missed $(jq .events_missed "$f"), duplicated $(jq .events_duplicated "$f")"
}

scenario_scale() {
  e2e_start_stack 4
  e2e_attach
  e2e_load_bg "$E2E_TMP/scale.json" "${LONG[@]}"
  sleep 3
  e2e_log "pm2 scale chat +2"
  $PM2 scale chat +2 >"$E2E_TMP/scale.out" 2>&1 || { cat "$E2E_TMP/scale.out" >&2; e2e_fail "pm2 scale failed"; }
  wait "$E2E_LOAD_PID"
  local f="$E2E_TMP/scale.json"
  e2e_log "during pm2 scale +2: $(e2e_summary "$f")"
  e2e_expect "$f" '.clients_ok == .clients and .disconnects == 0' "no live session moved: every client kept its one session"

  e2e_load "$E2E_TMP/after.json" --polling 150 --upgrade 150 --messages 2 --interval 1000 --src-base 127.3.0.0 --time-limit 60
  e2e_log "new clients after the scale: $(e2e_summary "$E2E_TMP/after.json")"
  e2e_expect "$E2E_TMP/after.json" '.clients_ok == .clients and .session_unknown_400 == 0' "new clients all OK"
  e2e_expect "$E2E_TMP/after.json" '(.workers | length) == 6 and all(.workers[]; .clients > 0)' "new clients reach the 2 new workers too"
}

scenario_kill() {
  e2e_start_stack 4
  e2e_attach
  e2e_load_bg "$E2E_TMP/kill.json" "${LONG[@]}"
  sleep 4
  local victim
  victim=$(pm2_worker_pids | awk '$2 == 1 {print $1}')
  [[ -n "$victim" ]] || e2e_fail "no worker with instance 1"
  e2e_log "SIGKILL worker $victim (instance 1)"
  kill -9 "$victim"
  wait "$E2E_LOAD_PID"
  local f="$E2E_TMP/kill.json"
  e2e_log "with a worker killed: $(e2e_summary "$f")"
  # (Their broadcasts from the killed worker's clients may be short: messages in flight there died.)
  e2e_expect "$f" "[.per_client[] | select(.pids[0] != $victim)] | all(.sessions == 1 and (.pids | length) == 1 and .disconnects == 0 and .session_unknown == 0 and .connect_errors == 0)" \
    "clients of the other workers kept their one session: no disconnect, no 400, no error"
  e2e_expect "$f" "[.per_client[] | select(.pids[0] == $victim)] | length > 0" "the killed worker had clients"
  e2e_expect "$f" "[.per_client[] | select(.pids[0] == $victim)] | all((.pids | length) == 2)" \
    "each of its clients reconnected once, to one live worker"
  e2e_expect "$f" "[.per_client[] | select(.pids[0] == $victim)] | all(.connect_errors == 0)" \
    "its clients reconnected without a connect error (their 400s are the requests in flight when it died)"
}

scenario_restart() {
  e2e_start_stack 4
  e2e_attach
  e2e_load "$E2E_TMP/before.json" --polling 50 --upgrade 50 --messages 2 --interval 500 --no-clients
  e2e_log "pm2 restart chat (every worker at once)"
  $PM2 restart chat >"$E2E_TMP/restart.out" 2>&1 || e2e_fail "pm2 restart failed"
  local i
  for ((i = 0; i < 100; i++)); do
    e2e_status --json | jq -e '.in_sync and (.workers | map(select(.live)) | length) == 4' >/dev/null && break
    sleep 0.1
  done
  e2e_status
  e2e_status --json | jq -e '.in_sync' >/dev/null || e2e_fail "steering did not come back in sync after pm2 restart"
  e2e_load "$E2E_TMP/after.json" --polling 150 --upgrade 150 --messages 3 --interval 1000 --time-limit 60 --no-clients
  e2e_log "after pm2 restart: $(e2e_summary "$E2E_TMP/after.json")"
  e2e_expect "$E2E_TMP/after.json" '.clients_ok == .clients and .session_unknown_400 == 0' "clients work after the restart"
}

scenario_plain-listen() {
  redis_start
  SIO_REUSEPORT=0 pm2_start_cluster "$(free_port)" 4 || e2e_fail "the PM2 cluster did not start"
  local rc=0
  "$SIO_STEER" attach --once --port "$CHAT_PORT" --pin-root "$E2E_PINS" --lock-dir "$E2E_LOCKS" \
    >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
  cat "$E2E_TMP/err" >&2
  [[ $rc == 4 ]] || e2e_fail "attach exited $rc, not 4 (not steerable)"
  grep -q "one listener without SO_REUSEPORT, owned by pid .*God" "$E2E_TMP/err" || e2e_fail "the message does not name PM2's God daemon"
  grep -q "reusePort: true" "$E2E_TMP/err" || e2e_fail "the message does not say to listen with reusePort"
  grep -q "Node >= 22.12" "$E2E_TMP/err" || e2e_fail "the message does not name the Node version"
  [[ -z "$(ls -A "$E2E_PINS")" ]] || e2e_fail "a refused attach left pins behind"
  e2e_log "ok: plain listen() refused with what to change"
}

case "${1:-}" in
  affinity | reload | reload-busy | scale | kill | restart | plain-listen) "scenario_$1" ;;
  *) echo "usage: $0 affinity|reload|reload-busy|scale|kill|restart|plain-listen" >&2; exit 2 ;;
esac
e2e_log "PASS: $1"
