#!/usr/bin/env bash
# BPF program cost: ns per run of the steering program from the kernel's own accounting
# (kernel.bpf_stats_enabled), at 0 and at 1M recorded sessions, beside an empty program and a
# hash-only variant, in one run. A benchmark, not a test. Needs root; takes about 2 minutes
# (add --profile for the steps in between: about 5 minutes).
#
#   scripts/bench-bpf.sh [bpf_cost options: --clients N --passes N --rounds N --sessions N
#                         --max-sessions N --workers N --chunk N --profile --candidate FILE.bpf.o]
#   scripts/bench-bpf.sh --end-to-end [bpf_end_to_end options: --rounds N --seconds S ...]
#
# --end-to-end: accepted connections per second of a reuseport group and the CPU of a SYN flood,
# with the program against the kernel's own hash (tests/bench/bpf_end_to_end.cpp).
#
# Prints the machine, a table (median, min and max over rounds), and as its last line a JSON object
# for other scripts: {"bpf_ns": {"empty": …, "hash_only": …, "sessions_0": …, "sessions_1m": …}}.
# Build output and progress go to stderr. Results and what they mean: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "scripts/bench-bpf.sh: run as root (BPF programs, network and mount namespaces)" >&2; exit 1; }
build=${BUILD_DIR:-build}
cmake -S . -B "$build" >/dev/null
bench=bpf_cost
if [ "${1:-}" = --end-to-end ]; then bench=bpf_end_to_end; shift; fi
make -C "$build" -j"$(nproc)" "$bench" >&2

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), Linux $(uname -r)," \
     "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo '?')," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$build/tests/bench/$bench" "$@"
