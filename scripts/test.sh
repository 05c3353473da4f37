#!/usr/bin/env bash
# The test command (README, CI): installs what is missing, builds, and runs every test:
# unit tests, the real program in the real kernel, and the end-to-end PM2/Socket.IO tests.
# Needs root (BPF, network namespaces). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: run as root (BPF programs, network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
scripts/build.sh >/dev/null

cd build
ctest --output-on-failure --timeout 600 "$@" && exit 0

# A CI log is read from its end: repeat there the last lines each failing test printed.
echo
echo "== why each failing test failed (the last 25 lines it printed; all of it above) =="
while IFS=: read -r _ name; do
  echo "-- $name"
  awk -v name="$name" '
    $0 ~ "^[0-9]+/[0-9]+ Test: " name "$" { mine = 1; next }
    mine && /^<end of output>/ { exit }
    mine && out { print }
    mine && /^----------/ { out = 1 }' Testing/Temporary/LastTest.log | tail -n 25
done <Testing/Temporary/LastTestsFailed.log
exit 1
