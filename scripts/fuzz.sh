#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) into build-fuzz/ (or $FUZZ_BUILD_DIR) with clang, ASan
# and UBSan, and runs each for SECONDS (default 20) from its seed corpus, tests/fuzz/corpus/<target>/.
# Prints per target: runs, seconds, coverage, findings. Exits 1 if any target found something: the
# input is left in the artifacts folder it names (keep it in the corpus once fixed).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
build=${FUZZ_BUILD_DIR:-build-fuzz}
[[ $seconds =~ ^[0-9]+$ && $seconds -ge 1 ]] || { echo "fuzz.sh: SECONDS must be a whole number ≥ 1, not \"$seconds\"" >&2; exit 2; }
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }

CC=clang CXX=clang++ cmake -S . -B "$build" -DSIO_STEER_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_key config_file control_request environ mountinfo nginx_conf node_version)
work=$(mktemp -d /tmp/sio-steer-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
artifacts="$build/fuzz-findings"
mkdir -p "$artifacts"

failed=0
printf '%-16s %10s %8s %6s %6s  %s\n' target runs seconds cov ft findings
for t in "${targets[@]}"; do
    # New inputs go to a scratch folder, the seeds stay as committed.
    mkdir -p "$work/$t"
    log="$work/$t.log"
    start=$(date +%s)
    rc=0
    # Every seed once in full first (the fuzzing below cuts inputs to -max_len): the regression
    # inputs of past findings are replayed whatever their size.
    "$build/tests/fuzz/fuzz_$t" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/$t-" \
        tests/fuzz/corpus/"$t"/* >"$log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        # -rss_limit_mb: a parser that grows without bound is a finding too; -timeout: so is one that stalls.
        "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
            -print_final_stats=1 -artifact_prefix="$artifacts/$t-" "$work/$t" "tests/fuzz/corpus/$t" >>"$log" 2>&1 ||
            rc=$?
    fi
    took=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    if [ "$rc" = 0 ]; then
        findings=none
    else
        failed=1
        findings="$(grep -m1 -oE 'ERROR: [A-Za-z]+: [^ ]+.*|property broken: .*|deadly signal|timeout after [0-9]+ seconds' "$log" || echo "exit $rc") -> $(grep -oE "Test unit written to [^ ]+" "$log" | cut -d' ' -f5 | tail -1)"
        cp "$log" "$artifacts/$t.log"
    fi
    printf '%-16s %10s %8s %6s %6s  %s\n' "$t" "${runs:-?}" "$took" "${cov:-?}" "${ft:-?}" "$findings"
done
[ "$failed" = 0 ] || echo "fuzz.sh: findings above; logs in $artifacts/" >&2
exit "$failed"
