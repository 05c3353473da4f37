#!/usr/bin/env bash
# sio-steer-drain's tests: the server-less parts once, then each socket.io line against real servers,
# clients and Redis: 4.7 (engine.io 6.5) and 4.8 (engine.io 6.6), which it knows, and 4.6 (engine.io
# 6.4), which it does not (a warning and a plain close). Each version's packages are pinned by
# test/matrix/socket.io-X.Y/package-lock.json (npm ci). NODE: the node to run (>= 22.12: reusePort).
#
# The server tests run in a network namespace of their own (root): two workers share a port there,
# and a closing listener's queued connections move to the other (net.ipv4.tcp_migrate_req=1, as
# sio-steer's program moves them), without touching the host's settings.
set -euo pipefail
cd "$(dirname "$0")"
node="${NODE:-node}"
[[ -x "$node" ]] || node=node
[[ "$(id -u)" == 0 ]] || { echo "matrix.sh: run as root (a network namespace per run)" >&2; exit 1; }
fail=0
"$node" --test --test-force-exit units.test.js || fail=1
for dir in matrix/socket.io-*; do
  line="${dir#matrix/socket.io-}"
  known=1
  [[ "$line" == 4.6 ]] && known=0
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) && touch "$dir/node_modules/.package-lock.json"
  fi
  SIO_MATRIX_DIR="$PWD/$dir" SIO_MATRIX_KNOWN=$known unshare -n bash -c '
    ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 &&
    exec "$0" --test --test-force-exit --test-concurrency=1 drain.test.js' "$node" || fail=1
done
exit $fail
