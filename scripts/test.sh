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
ctest --output-on-failure --timeout 600 "$@"
