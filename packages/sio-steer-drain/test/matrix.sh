#!/usr/bin/env bash
# sio-steer-drain over the socket.io lines: 4.7 (engine.io 6.5) and 4.8 (engine.io 6.6), which it
# knows, and 4.6 (engine.io 6.4), which it does not (a warning and a plain close). Each version's
# packages are pinned by test/matrix/socket.io-X.Y/package-lock.json (npm ci). NODE: the node to run.
set -euo pipefail
cd "$(dirname "$0")"
node="${NODE:-node}"
[[ -x "$node" ]] || node=node
fail=0
for dir in matrix/socket.io-*; do
  line="${dir#matrix/socket.io-}"
  known=1
  [[ "$line" == 4.6 ]] && known=0
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) && touch "$dir/node_modules/.package-lock.json"
  fi
  SIO_MATRIX_DIR="$PWD/$dir" SIO_MATRIX_KNOWN=$known "$node" --test --test-force-exit drain.test.js || fail=1
done
exit $fail
