#!/usr/bin/env bash
# End-to-end in a real browser, on the production path: Debian's chromium (headless, driven by
# puppeteer-core from tests/e2e/browser/) -> nginx with TLS (a self-signed certificate made here),
# configured by `sio-steer nginx-conf --real-ip-header CF-Connecting-IP --trusted ...` -> the chat
# example under a PM2 cluster of 4 (Node 24, reusePort, Redis adapter), steered by sio-steer. Each
# browser context is a visitor with its own address in CF-Connecting-IP, as Cloudflare sends it.
# Asserted from the browser's network events and the page's DOM (tests/e2e/browser/drive.js):
#   - without sio-steer: the browser sees "400 Session ID unknown" (the failure, so the test can fail);
#   - with it: >= 6 visitors over >= 3 workers, pairs on different workers; handshake 200, upgrade
#     101, 0 x 400 in every context; messages shown in the peer's page in < 1 s (p99 over >= 50),
#     typing indicator < 1 s, unread badge exact, activity toast in every other page;
#   - polling only (WebSocket blocked in the browser): the same, 0 x 400;
#   - `pm2 reload` with the pages open and messages flowing: each page reconnects at most once,
#     0 x 400, no message lost or shown twice.
# Last stdout line: one JSON object (visitors, workers_used, http_400, ws_101, message_p99_ms,
# polling_only_http_400, reload_reconnects_max, messages_lost, without_steering_http_400, ...).
# SCREENSHOT_DIR=docs: also writes docs/browser-chat.png and docs/browser-network.png.
# Runs in a fresh network namespace: only loopback, every port free.
# E2E_KEEP=DIR keeps the logs (PM2's, nginx's, the controller's, the driver's) in DIR.
if [[ -z "${SIO_STEER_E2E_NETNS:-}" ]]; then
  # npm ci (chat, puppeteer-core) needs the registry: before leaving the network
  . "$(dirname "$0")/../../scripts/node-env.sh" >/dev/null || exit 1
  browser_dir="$(cd "$(dirname "$0")/browser" && pwd)"
  if [[ ! -f "$browser_dir/node_modules/.package-lock.json" || "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]]; then
    echo "browser-test: npm ci in $browser_dir" >&2
    (cd "$browser_dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null) || exit 1
    touch "$browser_dir/node_modules/.package-lock.json"
  fi
  SIO_STEER_E2E_NETNS=1 exec unshare --net -- bash "$0" "$@"
fi
ip link set lo up
. "$(dirname "$0")/lib.sh"

CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
[[ -x "$CHROMIUM" ]] || e2e_fail "chromium is not installed (scripts/install-deps.sh)"
command -v openssl >/dev/null || e2e_fail "openssl is not installed"
DRIVER="$E2E_ROOT/tests/e2e/browser/drive.js"
DRIVER_PID=""

# Ports below the ephemeral range (nothing else listens in this namespace).
free_port() {
  local lo p
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  for ((;;)); do
    p=$((20000 + RANDOM % (lo - 20000)))
    [[ -z "$(ss -Hltn "sport = :$p")" ]] && { echo "$p"; return 0; }
  done
}

# The driver in a process group of its own: the cleanup ends it and the chromium it started.
browser_cleanup() {
  local rc=$?
  if [[ -n "$DRIVER_PID" ]]; then kill -- "-$DRIVER_PID" 2>/dev/null || true; wait "$DRIVER_PID" 2>/dev/null || true; fi
  e2e_cleanup
  return $rc
}
trap browser_cleanup EXIT
trap "exit 143" TERM INT

drive() { # MODE OUT: drive.js MODE, its JSON summary to OUT
  local mode="$1" out="$2"
  CHROMIUM="$CHROMIUM" setsid "$NODE24" "$DRIVER" "$mode" 2>"$out.log" >"$out.all" &
  DRIVER_PID=$!
  wait "$DRIVER_PID" || { cat "$out.log" >&2; DRIVER_PID=""; e2e_fail "the browser driver failed ($mode)"; }
  DRIVER_PID=""
  sed 's/^/e2e:   /' "$out.log" >&2
  tail -n 1 "$out.all" >"$out"
  jq -e . "$out" >/dev/null || e2e_fail "the browser driver printed no summary ($mode)"
}

SECONDS=0
# With the pages open, a worker PM2 starts during the reload took 15-23 s to say 'ready' on the busy
# 2-core machine (PM2's daemon log; 1 s before the pages opened). Past listen_timeout PM2 stops the
# old worker before its replacement listens: its drain has no successor to hand its clients to, and
# they reconnect twice. 'ready' ends the wait as soon as the worker listens.
# The app's safety net that passes a misrouted request on is off: without sio-steer the browser gets
# the 400s a plain app gives, and with it every request is steered right by sio-steer alone.
SIO_PASS_ON=0 LISTEN_TIMEOUT=120000 e2e_start_stack 4

# TLS as in production: a certificate for 127.0.0.1, made here.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$E2E_TMP/chat.key" -out "$E2E_TMP/chat.pem" 2>/dev/null || e2e_fail "openssl could not make a certificate"
NGINX_PORT="$(free_port)"
PROXY_PORT="$(free_port)"
while [[ "$PROXY_PORT" == "$NGINX_PORT" ]]; do PROXY_PORT="$(free_port)"; done
# The browser is the "CDN" here: nginx believes CF-Connecting-IP from 127.0.0.1 only.
"$SIO_STEER" nginx-conf --upstream "127.0.0.1:$CHAT_PORT" --listen "127.0.0.1:$NGINX_PORT" \
  --real-ip-header CF-Connecting-IP --trusted 127.0.0.1/32 \
  --ssl-certificate "$E2E_TMP/chat.pem" --ssl-certificate-key "$E2E_TMP/chat.key" >"$E2E_TMP/chat.conf"
# A proxy that refuses WebSocket, as some corporate proxies do, in front of it (the same nginx):
# the "polling only" visitors go through it.
cat >>"$E2E_TMP/chat.conf" <<CONF
server {
    listen 127.0.0.1:$PROXY_PORT ssl;
    ssl_certificate $E2E_TMP/chat.pem;
    ssl_certificate_key $E2E_TMP/chat.key;
    location / {
        if (\$http_upgrade) { return 403; }
        proxy_pass https://127.0.0.1:$NGINX_PORT;
        proxy_read_timeout 75s;
    }
}
CONF
nginx_start chat "$NGINX_PORT"
export CHAT_URL="https://127.0.0.1:$NGINX_PORT/" POLLING_URL="https://127.0.0.1:$PROXY_PORT/"

e2e_log "without sio-steer: 2 browser visitors for a few seconds"
drive unsteered "$E2E_TMP/unsteered.json"
e2e_expect "$E2E_TMP/unsteered.json" '.session_unknown_400 > 0' \
  "without sio-steer the browser gets '400 Session ID unknown' (the failure being fixed)"

e2e_attach
e2e_log "with sio-steer: the browser check"
RELOAD_CMD="$PM2 reload chat >$E2E_TMP/reload.out" drive steered "$E2E_TMP/steered.json"
f="$E2E_TMP/steered.json"
e2e_expect "$f" 'all(.checks[]; .ok)' "every browser check held: $(jq -r '[.checks | to_entries[] | select(.value.ok | not) | .key] | join("; ")' "$f")"
e2e_expect "$f" '.visitors >= 6 and .workers_used >= 3' ">= 6 visitors over >= 3 workers"
e2e_expect "$f" '.http_400 == 0 and .polling_only_http_400 == 0 and .ws_101 >= 1' "0 x 400, WebSocket upgrades answered 101"
e2e_expect "$f" '.messages >= 50 and .message_p99_ms < 1000' "message p99 < 1 s over >= 50 messages"
e2e_expect "$f" '.reload_reconnects_max <= 1 and .messages_lost == 0 and .messages_duplicated == 0' \
  "pm2 reload: at most one reconnect per page, no message lost or shown twice"

jq -c --slurpfile u "$E2E_TMP/unsteered.json" --argjson s "$SECONDS" \
  '{visitors, workers_used, http_400, ws_101, message_p99_ms, message_p50_ms, messages, typing_ms_max,
    polling_only_http_400, polling_message_p99_ms, polling_typing_ms_max,
    reload_reconnects_max, reload_polling_reconnects: .reload.polling_reconnects, messages_lost, messages_duplicated, reload_messages_sent: .reload.messages_sent,
    reload_seconds: .reload.seconds, without_steering_http_400: $u[0].http_400,
    without_steering_session_unknown_400: $u[0].session_unknown_400, test_seconds: $s}' "$f" >"$E2E_TMP/result.json"
e2e_log "PASS: browser ($SECONDS s)"
cat "$E2E_TMP/result.json"
