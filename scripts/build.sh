#!/usr/bin/env bash
# Builds sio-steer and its tests into build/ (or $BUILD_DIR). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
echo "$build/userspace/sio-steer"
