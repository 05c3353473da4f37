#!/usr/bin/env bash
# The benchmark of sio-steer against what users pick instead: bench/run.sh (its header says what it
# measures and how; --help-less: any unknown option prints it). For example:
#   scripts/bench.sh --behind-nginx --quick       a smoke run of the production path
#   scripts/bench.sh --behind-nginx               the full run behind nginx with TLS, deploys included
#   scripts/bench.sh                              clients straight to the contenders, and the BPF cost
#   scripts/bench.sh --compare RUN_A RUN_B        do two runs agree within ±5 %?
# Other benchmarks: bench/controller.sh (what the controller costs), scripts/bench-bpf.sh (the
# program's cost), bench/profile.sh (where one contender's CPU goes). docs/benchmarks.md.
exec "$(cd "$(dirname "$0")/.." && pwd)/bench/run.sh" "$@"
