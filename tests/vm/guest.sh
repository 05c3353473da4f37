#!/usr/bin/env bash
# The guest side of scripts/vm-test.sh: runs in the VM under systemd (sio-steer-vm-test.service),
# as root, once per boot. Boot 1 installs the .deb and the PM2 service and runs the checks; then it
# reboots the VM, and boot 2 checks that steering came back, purges the package and runs
# integration_tests. Each check writes pass or fail to /vm-results/checks/NAME (the host reads them);
# details go to the console, which the host records.
set -euo pipefail
R=/vm-results
. "$R/env"   # SRC BUILD DEB QUICK
export HOME=/root
. "$SRC/scripts/node-env.sh"  # NODE24, PM2, CHAT_DIR (node_modules come from the machine, read-only)
PORT=5001
APP=app  # the user PM2 runs the workers as
UNIT="sio-steer@$PORT"
PINS="/sys/fs/bpf/sio-steer/$PORT"
WORKERS=2  # PM2 instances: 2 are enough to see a client go astray, and TCG is slow
phase="$(cat "$R/phase" 2>/dev/null || echo 1)"
WORK="$R/boot$phase"  # load.js summaries and logs, kept with the results
mkdir -p "$WORK"

log() { echo "vm-guest: $*"; }
# expect DESCRIPTION COMMAND...: logs ok or FAIL; returns the command's status.
expect() {
  local what="$1"
  shift
  if "$@"; then log "ok: $what"; else log "FAIL: $what"; return 1; fi
}
# check NAME FUNCTION: runs the function with errexit off (each step is checked by expect).
check() {
  local name="$1" fn="$2" started=$SECONDS
  log "--- $name"
  if "$fn"; then echo pass >"$R/checks/$name"; else echo fail >"$R/checks/$name"; fi
  log "--- $name: $(cat "$R/checks/$name") ($((SECONDS - started)) s)"
}
# bounded waits: until SECONDS COMMAND...
until_ok() {
  local limit="$1" i
  shift
  for ((i = 0; i < limit * 5; i++)); do "$@" && return 0; sleep 0.2; done
  return 1
}
main_pid() { systemctl show -p MainPID --value "$UNIT"; }
n_restarts() { systemctl show -p NRestarts --value "$UNIT"; }
is_active() { [[ "$(systemctl is-active "$1")" == active ]]; }
# all_listen: every PM2 worker listens on the port
all_listen() { (($(ss -Hltn "sport = :$PORT" | wc -l) == WORKERS)); }
# restarted_after N: systemd restarted the unit since NRestarts was N, and it is up again
restarted_after() { [[ "$(n_restarts)" -gt "$1" ]] && systemctl is-active -q "$UNIT"; }
# status_says TEXT: the unit's STATUS= line (sd_notify) holds TEXT
status_says() { [[ "$(systemctl show -p StatusText --value "$UNIT")" == *"$1"* ]]; }
as_app() { runuser -u "$APP" -- env HOME="/home/$APP" PM2_HOME="/home/$APP/.pm2" "$@"; }

# load NAME ARGS...: load.js from its own loopback addresses; its JSON summary in $WORK/NAME.json.
load() {
  local name="$1"
  shift
  "$NODE24" "$CHAT_DIR/load.js" --url "http://127.0.0.1:$PORT" "$@" 2>"$WORK/$name.log" | tail -n 1 >"$WORK/$name.json"
  jq -c 'del(.per_client, .workers)' "$WORK/$name.json" 2>/dev/null || { tail -n 5 "$WORK/$name.log"; return 1; }
}
load_bg() { load "$@" & LOAD_PID=$!; }
jq_ok() { jq -e "$2" "$WORK/$1.json" >/dev/null; }
# ≥ 100 clients, half of them staying on long-polling (the ones a wrong worker answers with 400), at
# a chat's pace: under TCG a flood would time sessions out, which is not what is tested here
CLIENTS=(--polling 50 --upgrade 50 --interval 2000 --room-size 5 --ack-timeout 60 --time-limit 100)
STICKY=("${CLIENTS[@]}" --messages 2)
# long enough for a restart, a kill or a reload to happen in the middle of it
LONG=("${CLIENTS[@]}" --messages 6)
# Sticky: every client's requests all reached one worker, and no 400 (what a wrong worker answers).
# Not required: every message delivered in time (under TCG a session sometimes times out and
# reconnects, to the same worker).
sticky_ok() {
  expect "$1: every client on one worker ($(jq -r '"\(.clients_single_worker)/\(.clients)"' "$WORK/$1.json"))" \
    jq_ok "$1" '.clients >= 100 and .clients_connected == .clients and .clients_single_worker == .clients' &&
    expect "$1: 0 HTTP 400" jq_ok "$1" '.http_400 == 0 and .session_unknown_400 == 0'
}
no_moves() {
  expect "$1: 0 clients moved ($(jq '[.per_client[] | select((.pids | length) > 1)] | length' "$WORK/$1.json") moved)" \
    jq_ok "$1" '.clients >= 100 and all(.per_client[]; (.pids | length) == 1)' &&
    expect "$1: 0 HTTP 400" jq_ok "$1" '.http_400 == 0 and .session_unknown_400 == 0'
}

# doc_block HEADING: the ```sh block under "## HEADING" in docs/systemd.md; run_doc HEADING runs it
# as written (bash -e), so that the document and what the VM tests are one text.
doc_block() {
  awk -v h="## $1" '$0 == h { f = 1; next } f && /^## / { exit }
    f && $0 == "```sh" { b = 1; next } b && $0 == "```" { exit } b { print }' "$SRC/docs/systemd.md"
}
run_doc() {
  local cmds
  cmds="$(doc_block "$1")"
  [[ -n "$cmds" ]] || { log "docs/systemd.md has no sh block under '## $1'"; return 1; }
  log "docs/systemd.md, '$1':"
  sed 's/^/    /' <<<"$cmds"
  bash -euo pipefail -c "$cmds"
}

# ---- boot 1: the production path of docs/systemd.md

check_dpkg_install() {
  expect "dpkg -i $(basename "$DEB")" dpkg -i "$DEB" &&
    expect "dpkg says installed" bash -c "dpkg-query -W -f='\${Status}' sio-steer | grep -q 'install ok installed'" &&
    expect "the unit is known to systemd" bash -c "systemctl cat $UNIT >/dev/null" &&
    expect "/etc/sio-steer exists" test -d /etc/sio-steer &&
    expect "the alert rules, which promtool accepts" promtool check rules "$RULES" &&
    expect "the drain module's tarball, $DRAIN" test -f "$DRAIN" &&
    expect "npm install of it into an app, which then loads it" drain_installs
}
RULES=/usr/share/sio-steer/prometheus/sio-steer.rules.yml
DRAIN="/usr/share/sio-steer/sio-steer-drain-$(dpkg-deb -f "$DEB" Version).tgz"
# As docs/pm2.md says: npm install of the packaged tarball (offline: the VM has no network), and
# the module loads in the app with the version of the package.
drain_installs() {
  local app="$WORK/drain-app"
  mkdir -p "$app" && echo '{"name":"app","version":"1.0.0","private":true}' >"$app/package.json" &&
    (cd "$app" && npm install --offline --no-audit --no-fund --loglevel=error "$DRAIN") &&
    (cd "$app" && "$NODE24" -e '
      const d = require("sio-steer-drain");
      const v = require("sio-steer-drain/package.json").version;
      if (typeof d.gracefulStop !== "function" || v !== process.argv[1]) { console.error(v); process.exit(1); }' \
      "$(dpkg-deb -f "$DEB" Version)")
}

# PM2 as the app user, made PM2's own systemd service (pm2-app.service), as docs/systemd.md says;
# pm2 and Node 24 where a host would have them (npm install -g pm2, Node in /usr/local/bin).
pm2_service() {
  id "$APP" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$APP"
  ln -sf "$NODE24" /usr/local/bin/node
  ln -sf "$CHAT_DIR/node_modules/pm2/bin/pm2" /usr/local/bin/pm2
  # 2 s drain (the example's default is 10 s) keeps the reload check short; under TCG a worker
  # takes more than PM2's default 10 s to listen
  (cd "$CHAT_DIR" && export PORT INSTANCES=$WORKERS SIO_DRAIN_MS=2000 LISTEN_TIMEOUT=60000 &&
    run_doc "PM2 as a systemd service too") >"$WORK/pm2-service.log" 2>&1 || { cat "$WORK/pm2-service.log"; return 1; }
  expect "pm2-$APP.service runs PM2" is_active "pm2-$APP" &&
    expect "its PM2 runs on Node 24" bash -c "systemctl show -p Environment --value pm2-$APP | grep -q 'PATH=/usr/local/bin'" &&
    expect "$WORKERS workers listen on :$PORT under pm2-$APP.service" until_ok 180 all_listen
}

check_unit_start() {
  expect "redis-server.service is up" until_ok 30 is_active redis-server || return 1
  pm2_service || return 1
  expect "docs/systemd.md, One instance per port" run_doc "One instance per port" || { journalctl -u "$UNIT" --no-pager | tail; return 1; }
  expect "status: steering $WORKERS worker sockets, in sync" status_says "steering $WORKERS worker sockets, in sync"
}

check_sticky() {
  load sticky --src-base 127.2.0.0 "${STICKY[@]}"
  sticky_ok sticky
}

# ProtectSystem=strict and friends, applied by the real systemd: the controller's mount namespace
# has / read-only, /sys/fs/bpf and /run/sio-steer writable, its own /tmp.
check_hardening() {
  local pid ok=0
  systemd-analyze security "$UNIT" --no-pager >"$WORK/security.log" 2>&1 || true
  tail -n 1 "$WORK/security.log" | tee "$R/security.txt"
  pid="$(main_pid)"
  expect "the controller runs (pid $pid)" test "$pid" -gt 0 || return 1
  in_unit() { nsenter -t "$pid" -m -- "$@" 2>/dev/null; }
  for path in /etc/vm-probe /usr/vm-probe /var/lib/vm-probe /root/vm-probe /home/vm-probe; do
    expect "cannot write $path" bash -c "! nsenter -t $pid -m -- touch $path 2>/dev/null" || ok=1
    rm -f "$path"
  done
  expect "can write /run/sio-steer" in_unit touch /run/sio-steer/vm-probe || ok=1
  in_unit rm -f /run/sio-steer/vm-probe || true
  expect "can write /sys/fs/bpf" in_unit mkdir /sys/fs/bpf/vm-probe || ok=1
  in_unit rmdir /sys/fs/bpf/vm-probe || true
  in_unit touch /tmp/vm-probe || true
  expect "its /tmp is private" test ! -e /tmp/vm-probe || ok=1
  expect "NoNewPrivileges, seccomp filter" bash -c "grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$pid/status && grep -q '^Seccomp:[[:space:]]*2' /proc/$pid/status" || ok=1
  # CAP_DAC_READ_SEARCH 2, CAP_NET_ADMIN 12, CAP_SYS_PTRACE 19, CAP_PERFMON 38, CAP_BPF 39
  expect "capability bounding set: exactly the 5" bash -c "grep -q '^CapBnd:[[:space:]]*000000c000081004$' /proc/$pid/status" || ok=1
  return $ok
}

check_journal_per_change() {
  local since victim lines
  since="$(date '+%Y-%m-%d %H:%M:%S')"
  sleep 1
  victim="$(pm2_worker_pids_app | awk '$2 == 1 { print $1 }')"
  expect "a worker of instance 1" test -n "$victim" || return 1
  kill -9 "$victim"
  until_ok 120 all_listen && sleep 5
  journalctl -u "$UNIT" --since "$since" --no-pager -o cat | tee "$WORK/journal.log"
  lines="$(grep -c 'worker socket went' "$WORK/journal.log" || true)"
  expect "one 'worker socket went' line for the one killed worker ($lines)" test "$lines" = 1 || return 1
  lines="$(grep -c 'worker socket came' "$WORK/journal.log" || true)"
  expect "one line for its replacement ($lines)" test "$lines" = 1
}
pm2_worker_pids_app() {
  as_app $PM2 jlist 2>/dev/null | jq -r '.[] | select(.pm2_env.status == "online" and .pid > 0) | "\(.pid) \(.pm2_env.NODE_APP_INSTANCE // .pm_id)"'
}

check_reload_no_failures() {
  load_bg reload --src-base 127.3.0.0 "${LONG[@]}"
  sleep 12
  log "pm2 reload chat (as $APP), the old workers draining"
  expect "pm2 reload chat" as_app $PM2 reload chat >"$WORK/reload.out" 2>&1 || { cat "$WORK/reload.out"; wait "$LOAD_PID"; return 1; }
  wait "$LOAD_PID" || true
  expect "reload: 0 failed requests (no 400, no reset, no connect error)" jq_ok reload '.clients >= 100 and .http_400 == 0 and .resets == 0 and .connect_errors == 0'
}

check_restart_no_moves() {
  local before
  before="$(main_pid)"
  load_bg restart --src-base 127.4.0.0 "${LONG[@]}"
  sleep 12
  expect "systemctl restart $UNIT" systemctl restart "$UNIT" || { wait "$LOAD_PID"; return 1; }
  expect "a new controller" test "$(main_pid)" != "$before"
  wait "$LOAD_PID" || true
  no_moves restart
}

check_kill9_restart() {
  local before restarts
  before="$(main_pid)"
  restarts="$(n_restarts)"
  load_bg kill9 --src-base 127.5.0.0 "${LONG[@]}"
  sleep 12
  log "kill -9 $before (the controller)"
  kill -9 "$before"
  expect "systemd restarted it (Restart=on-failure, 5 s)" until_ok 30 restarted_after "$restarts" || { wait "$LOAD_PID"; return 1; }
  wait "$LOAD_PID" || true
  no_moves kill9
}

# WatchdogSec= in a drop-in, as docs/systemd.md says: a controller that pings stays up past it; a
# stopped one (SIGSTOP) is killed and restarted. TimeoutAbortSec: a stopped process does not die of
# the watchdog's SIGABRT, so systemd's SIGKILL comes after it (90 s by default).
check_watchdog() {
  local restarts pid
  mkdir -p "/etc/systemd/system/$UNIT.service.d"
  printf '[Service]\nWatchdogSec=6s\nTimeoutAbortSec=3s\n' >"/etc/systemd/system/$UNIT.service.d/watchdog.conf"
  systemctl daemon-reload
  expect "restart with WatchdogSec=6s" systemctl restart "$UNIT" || return 1
  restarts="$(n_restarts)"
  pid="$(main_pid)"
  sleep 15
  expect "still the same controller 15 s later: it pings (WATCHDOG=1)" test "$(main_pid)" = "$pid" -a "$(n_restarts)" = "$restarts" || return 1
  log "kill -STOP $pid"
  kill -STOP "$pid"
  expect "a hung controller is restarted" until_ok 60 restarted_after "$restarts" || return 1
  expect "journal: watchdog timeout" bash -c "journalctl -u $UNIT --no-pager | grep -qi 'watchdog timeout'"
  expect "in sync again" until_ok 30 status_says "in sync"
}

check_stop_keeps_steering() {
  expect "systemctl stop $UNIT" systemctl stop "$UNIT" || return 1
  expect "inactive" bash -c "! systemctl is-active -q $UNIT" &&
    expect "pins stay in $PINS" test -d "$PINS" || return 1
  load stopped --src-base 127.6.0.0 "${STICKY[@]}"
  sticky_ok stopped || return 1
  expect "systemctl start $UNIT (adopts)" systemctl start "$UNIT" &&
    expect "journal: adopted" bash -c "journalctl -u $UNIT -n 20 --no-pager -o cat | grep -q 'adopted port $PORT'"
}

# ---- boot 2: after the reboot

check_reboot_reattach() {
  expect "pm2-$APP.service came up at boot" until_ok 120 is_active "pm2-$APP" || return 1
  expect "$UNIT came up at boot" until_ok 120 is_active "$UNIT" || { journalctl -b -u "$UNIT" --no-pager | tail; return 1; }
  journalctl -b -u "$UNIT" --no-pager -o short-monotonic | tee "$WORK/boot-journal.log" | head -n 20
  log "waited for PM2's workers at boot: $(grep -c 'waiting up to' "$WORK/boot-journal.log" || true) time(s)"
  expect "no failed start before PM2's workers listened (the unit waits for them: --wait-for-listeners)" \
      bash -c "! grep -q 'status=3/' $WORK/boot-journal.log" &&
    expect "attached afresh (the pins did not survive the reboot)" grep -q "attached to port $PORT" "$WORK/boot-journal.log" &&
    expect "not adopted" bash -c "! grep -q 'adopted port' $WORK/boot-journal.log" &&
    expect "steering $WORKERS worker sockets, in sync" until_ok 60 status_says "steering $WORKERS worker sockets, in sync" || return 1
  load rebooted --src-base 127.7.0.0 "${STICKY[@]}"
  sticky_ok rebooted
}

# Removed, whichever way: no unit, no pins, no socket, no process, the program off the workers' group.
removed() {
  local ok=0
  expect "no unit file" test ! -e /lib/systemd/system/sio-steer@.service || ok=1
  expect "$UNIT is not running, its unit not found" \
    bash -c "! systemctl is-active -q $UNIT && [[ \$(systemctl show -p LoadState --value $UNIT) == not-found ]]" || ok=1
  expect "no pins" test ! -e "$PINS" || ok=1
  expect "no control socket" test ! -e "/run/sio-steer/$PORT.sock" || ok=1
  expect "no sio-steer process" bash -c "! pgrep -x sio-steer" || ok=1
  expect "no /usr/bin/sio-steer" test ! -e /usr/bin/sio-steer || ok=1
  # the kernel frees the program once it is off the group and unpinned (the last reference)
  expect "no steering program in the kernel" until_ok 30 bash -c "! bpftool prog show | grep -q 'sk_reuseport  name steer'" || ok=1
  expect "the workers still listen" all_listen || ok=1
  return $ok
}

# docs/systemd.md's "Removing the package, keeping its configuration": apt remove while the unit
# runs and steers; then the package is installed and started again, for the purge.
check_remove_keeps_config() {
  expect "docs/systemd.md, Removing the package, keeping its configuration" \
    run_doc "Removing the package, keeping its configuration" || return 1
  local ok=0
  removed || ok=1
  expect "dpkg keeps its configuration (config-files)" bash -c "dpkg-query -W -f='\${Status}' sio-steer | grep -q 'deinstall ok config-files'" || ok=1
  expect "/etc/sio-steer/$PORT.conf stays" test -f "/etc/sio-steer/$PORT.conf" || ok=1
  expect "the app still answers" curl -sf -m 10 -o /dev/null "http://127.0.0.1:$PORT/health" || ok=1
  # back, for the purge: the enabled instance comes back with the package
  expect "dpkg -i again" dpkg -i "$DEB" >/dev/null &&
    expect "$UNIT is still enabled" bash -c "systemctl is-enabled -q $UNIT" &&
    expect "systemctl start $UNIT" systemctl start "$UNIT" &&
    expect "in sync again" until_ok 60 status_says "steering $WORKERS worker sockets, in sync" || ok=1
  return $ok
}

# docs/systemd.md's "Removing it" (a purge): removed, the configuration too.
check_purge_clean() {
  expect "docs/systemd.md, Removing it" run_doc "Removing it" || return 1
  local ok=0
  removed || ok=1
  expect "systemd knows no sio-steer unit" bash -c "! systemctl list-unit-files 'sio-steer@*' --no-legend | grep -q . && ! systemctl list-units --all 'sio-steer@*' --no-legend | grep -q ." || ok=1
  expect "no link enabling an instance" bash -c "! ls /etc/systemd/system/*.wants/sio-steer@* 2>/dev/null" || ok=1
  expect "no /etc/sio-steer" test ! -e /etc/sio-steer || ok=1
  expect "dpkg knows no sio-steer" bash -c "! dpkg-query -W sio-steer 2>/dev/null | grep -q ." || ok=1
  return $ok
}

check_integration_tests() {
  local rc=0
  log "integration_tests on $(uname -r) (perf_event_paranoid = $(cat /proc/sys/kernel/perf_event_paranoid))"
  (cd "$WORK" && timeout 900 "$BUILD/tests/integration_tests" --gtest_brief=1) >"$WORK/integration_tests.log" 2>&1 || rc=$?
  grep -E '^\[  (FAILED|PASSED) |tests ran' "$WORK/integration_tests.log" | tee "$R/integration_tests.txt"
  # what a failure said, for the console (the host's log): the assertion and a few lines after it
  ((rc == 0)) || grep -E -A8 ': Failure$' "$WORK/integration_tests.log" | head -n 120 | sed 's/^/  | /'
  return $rc
}

# ----

state="$(timeout 120 systemctl is-system-running --wait 2>/dev/null || true)"
log "boot $phase: $(uname -r), systemd $(systemctl --version | head -n 1 | cut -d' ' -f2), is-system-running: $state"
if [[ "$state" != running ]]; then systemctl --failed --no-pager --no-legend || true; fi
if [[ "$phase" == 1 ]]; then
  uname -r >"$R/kernel"
  echo "$state" >"$R/systemd"
  systemd-analyze time >"$R/boot-time.txt" 2>&1 || true
  check dpkg_install check_dpkg_install
  check unit_start check_unit_start
  check sticky check_sticky
  check hardening check_hardening
  if [[ "$QUICK" == 1 ]]; then
    check stop_keeps_steering check_stop_keeps_steering
    check remove_keeps_config check_remove_keeps_config
    check purge_clean check_purge_clean
  else
    check journal_per_change check_journal_per_change
    check reload_no_failures check_reload_no_failures
    check restart_no_moves check_restart_no_moves
    check kill9_restart check_kill9_restart
    check watchdog check_watchdog
    check stop_keeps_steering check_stop_keeps_steering
    echo 2 >"$R/phase"
    journalctl -b -u "$UNIT" --no-pager >"$WORK/sio-steer.journal" 2>&1 || true
    log "rebooting"
    systemctl reboot
    exit 0
  fi
else
  echo "$state" >"$R/systemd-after-reboot"
  check reboot_reattach check_reboot_reattach
  check remove_keeps_config check_remove_keeps_config
  check purge_clean check_purge_clean
  check integration_tests check_integration_tests
fi
journalctl -b -u "$UNIT" --no-pager >"$WORK/sio-steer.journal" 2>&1 || true
log "done: powering off"
systemctl poweroff
