#!/usr/bin/env bash
# Records what a real sio-steer /metrics says during a real `pm2 reload` and real controller kills,
# as input for the alert rules' tests (sio-steer.recorded.test.yml): the chat example under a PM2
# cluster of 4 on Node 24 with Redis and sio-steer-drain (tests/e2e/lib.sh starts them, on loopback,
# with a private PM2_HOME, pin root and lock folder), 100 load.js clients, a following
# `sio-steer attach --metrics-listen`, and a scrape of its /metrics every 5 s (record-series.js),
# failed scrapes included. The scrapes then replace the series between the "recorded" markers of
# the test file; the test cases around them rely on this timeline (seconds from the first scrape):
#     0  clients connected and messaging
#    60  pm2 reload chat (workers drain for 2 s, release their clients, stop)
#   300  kill -9 of the controller; a new one 5 s later, as systemd's Restart=on-failure does
#   420  kill -9 of the controller, left down for 3 minutes
#   600  a new controller
#   720  the last scrape
# Only the series of the metric names the rules' expressions use are written (record-series.js
# yaml ... RULES). The raw scrapes, the events and how they were recorded are kept in
# $RECORD_SCRAPES (/var/tmp/sio-steer-scrapes), from which --from rewrites the test file's block
# without recording again (after a change of the rules' metrics, say).
#   packaging/prometheus/record.sh [TEST_FILE]     as root, about 13 minutes; SIO_STEER=the binary
#   packaging/prometheus/record.sh --from DIR [TEST_FILE]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
from=""
if [[ "${1:-}" == --from ]]; then
  from="$2"
  shift 2
fi
test_file="${1:-$here/sio-steer.recorded.test.yml}"
grep -q '# ---- recorded by record.sh: begin' "$test_file" ||
  { echo "record.sh: $test_file has no '# ---- recorded by record.sh: begin' marker" >&2; exit 2; }

# write_block DIR: the test file's recorded block from the kept scrapes in DIR: how they were
# recorded (DIR/about), the events (DIR/events), then the series.
write_block() {
  local dir="$1" block tmp
  block="$(mktemp)" tmp="$(mktemp)"
  {
    echo "      # ---- recorded by record.sh: begin (do not edit: run packaging/prometheus/record.sh)"
    sed 's/^/      # /' "$dir/about"
    echo "      # $(find "$dir" -name '*.prom' | wc -l) answered, $(find "$dir" -name '*.fail' | wc -l) failed (up 0)."
    sed 's/^/      #   /' "$dir/events"
    "$NODE24" "$here/record-series.js" yaml "$dir" "$(cat "$dir/port")" "$here/sio-steer.rules.yml"
    echo "      # ---- recorded by record.sh: end"
  } >"$block"
  awk -v block="$block" '
    /# ---- recorded by record.sh: begin/ { while ((getline line < block) > 0) print line; skip = 1; next }
    /# ---- recorded by record.sh: end/ { skip = 0; next }
    !skip { print }' "$test_file" >"$tmp"
  cat "$tmp" >"$test_file"
  echo "record.sh: wrote $(grep -c '^      - series:' "$block") recorded series into $test_file" >&2
  rm -f "$block" "$tmp"
}

if [[ -n "$from" ]]; then
  . "$here/../../scripts/node-env.sh"  # NODE24
  write_block "$from"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "record.sh: run as root (sio-steer attach loads BPF programs)" >&2; exit 1; }
. "$here/../../tests/e2e/lib.sh"

EVERY=5
LAST=720
metrics_port=""
start_ms=""
events=()

# at SECONDS: sleeps until that many seconds after the first scrape
at() {
  local now_ms
  now_ms="$(date +%s%3N)"
  sleep "$(awk -v d="$((start_ms + $1 * 1000 - now_ms))" 'BEGIN { print (d > 0 ? d / 1000 : 0) }')"
}
# event TEXT: noted with the time since the first scrape, for the test file's comment
event() {
  local t
  t="$(awk -v d="$(($(date +%s%3N) - start_ms))" 'BEGIN { printf "%.1f", d / 1000 }')"
  events+=("t=${t}s $*")
  e2e_log "t=${t}s $*"
}
controller() { e2e_attach --metrics-listen "127.0.0.1:$metrics_port" --resync-interval 2000; }
kill_controller() {
  kill -9 "$E2E_CTL_PID"
  wait "$E2E_CTL_PID" 2>/dev/null || true
}

SIO_DRAIN_MS=2000 e2e_start_stack 4
metrics_port="$(free_port)"
controller
e2e_load_bg "$E2E_TMP/load.json" --polling 50 --upgrade 50 --messages 1000 --interval 2000 --room-size 5 \
  --ack-timeout 60 --time-limit $((LAST + 60)) --src-base 127.2.0.0
sleep 10  # clients connected
scrapes="$E2E_TMP/scrapes"
"$NODE24" "$here/record-series.js" scrape "http://127.0.0.1:$metrics_port/metrics" "$scrapes" "$EVERY" "$LAST" &
scraper=$!
E2E_BG_PIDS+=("$scraper")
for ((i = 0; i < 50; i++)); do [[ -s "$scrapes/start" ]] && break; sleep 0.1; done
start_ms="$(cat "$scrapes/start")"

at 60
event "pm2 reload chat"
$PM2 reload chat >"$E2E_TMP/reload.out" 2>&1 || { cat "$E2E_TMP/reload.out" >&2; e2e_fail "pm2 reload failed"; }
event "pm2 reload done"
at 300
event "kill -9 of the controller"
kill_controller
sleep 5
controller
event "a new controller follows"
at 420
event "kill -9 of the controller, left down"
kill_controller
at 600
controller
event "a new controller follows"
wait "$scraper"
kill "$E2E_LOAD_PID" 2>/dev/null || true
# The raw scrapes are kept (the stack's folder goes with its cleanup), with how and when.
keep="${RECORD_SCRAPES:-/var/tmp/sio-steer-scrapes}"
rm -rf "$keep" && cp -a "$scrapes" "$keep"
printf '%s\n' "${events[@]}" >"$keep/events"
echo "$CHAT_PORT" >"$keep/port"
{
  echo "$(date -u +%Y-%m-%d), $("$SIO_STEER" --version | head -n 1), Linux $(uname -r), Node $("$NODE24" --version),"
  echo "pm2 $($PM2 --version 2>/dev/null | tail -n 1), 4 workers, 100 load.js clients, a scrape every ${EVERY} s:"
} >"$keep/about"
e2e_log "the raw scrapes and the events: $keep"
write_block "$keep"
