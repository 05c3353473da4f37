#!/usr/bin/env bash
# Controller cost (issue #11, "Benchmark"): what a following `sio-steer attach` costs the host.
# A benchmark, not a test. Needs root. Full run ≈ 8 min per state (3 states by default), --quick
# ≈ 3 min per state. Results and what they mean: docs/benchmarks.md, "Controller cost".
#
#   bench/controller.sh [--quick] [--duration S] [--procs 100,1000,5000] [--busy-procs 1000]
#                               [--rate 1000] [--runs 50] [--follow auto,polling] [--tracefs unmounted,mounted]
#                               [--only idle,storm,reaction] [--sio-steer PATH] [--no-build] [--label TEXT]
#
# For each state (a --follow mode × tracefs mounted or not, in a private mount namespace; tracefs is
# only varied where it matters: not for a forced `polling`), one controller is measured:
#   - idle: its CPU (utime+stime from /proc/PID/stat, % of one core) over --duration s (60; --quick:
#     10) with 100, 1,000 and 5,000 extra sleeping processes holding 30 fds each
#     (`controller_cost hold`: TCP/UDP/Unix sockets, pipes, files);
#   - storm port: the same while something listen()s and close()s 1,000 times a second on another
#     port of the controller's own network namespace (with --busy-procs extra processes);
#   - storm netns: the same with the storm on the steered port number, in another network namespace;
#   - reaction: from a new PM2-like worker's listen() to its SO_COOKIE in the pinned `slots` map and
#     at least one pinned `ring` entry pointing at that slot, p50 and p99 of --runs runs (50; nearest
#     rank, so p99 of 50 runs is the slowest), polled every 0.5 ms (`controller_cost react`).
# Each state has its own network namespace (2 test_worker listeners, NODE_APP_INSTANCE 0 and 1,
# and the controller), its own port below the ephemeral range, pin root under /sys/fs/bpf and
# lock folder; everything is stopped by pid and removed on exit, failure or Ctrl-C.
#
# --only: some of the measurements (e.g. the reaction alone, with --busy-procs extra processes).
# The mode the controller reached is read from `status --json` ("follow": {"mode": …}) or else from
# its "following port" log line. `--follow` is passed only if this sio-steer's attach has it; a
# forced mode it lacks is skipped with a line saying so.
#
# Prints the machine, a line per measurement (with the load average and the whole machine's CPU
# meanwhile: the figures are only as good as the machine is quiet), a table, the goals, and as its
# last line one JSON object {"controller_cost": {…}}. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "bench/controller.sh: $*" >&2; exit 1; }
log() { echo "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (BPF, network and mount namespaces)"

duration=60 procs_list=100,1000,5000 busy_procs=1000 rate=1000 runs=50
follow_list=auto,polling tracefs_list=unmounted,mounted only=idle,storm,reaction
build=${BUILD_DIR:-build} sio_steer="" do_build=1 label=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) duration=10 ;;
        --duration) duration=$2; shift ;;
        --procs) procs_list=$2; shift ;;
        --busy-procs) busy_procs=$2; shift ;;
        --rate) rate=$2; shift ;;
        --runs) runs=$2; shift ;;
        --follow) follow_list=$2; shift ;;
        --tracefs) tracefs_list=$2; shift ;;
        --only) only=$2; shift ;;
        --sio-steer) sio_steer=$2; shift ;;
        --no-build) do_build=0 ;;
        --label) label=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (--help)" ;;
    esac
    shift
done
IFS=, read -r -a levels <<<"$procs_list"
IFS=, read -r -a follows <<<"$follow_list"
IFS=, read -r -a tracefs_states <<<"$tracefs_list"
for n in "${levels[@]}" "$busy_procs" "$duration" "$rate" "$runs"; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n"
done
[[ ,$procs_list, == *,$busy_procs,* ]] || die "--busy-procs $busy_procs must be one of --procs $procs_list"
wants() { [[ ,$only, == *,$1,* ]]; }
for m in ${only//,/ }; do case $m in idle|storm|reaction) ;; *) die "--only: idle, storm or reaction, not $m" ;; esac; done
wants idle || levels=("$busy_procs")  # without idle windows, only the level the others run at

if [ "$do_build" = 1 ]; then
    cmake -S . -B "$build" >/dev/null
    targets=(controller_cost test_worker)
    [ -n "$sio_steer" ] || targets+=(sio-steer)
    cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >&2
fi
[ -n "$sio_steer" ] || sio_steer=$build/userspace/sio-steer
helper=$repo/$build/bench/controller_cost
test_worker=$repo/$build/tests/test_worker
sio_steer=$(realpath "$sio_steer")
for f in "$sio_steer" "$helper" "$test_worker"; do [ -x "$f" ] || die "$f: not built"; done

# --- what this sio-steer offers --------------------------------------------------------------------
attach_help=$("$sio_steer" attach --help 2>&1 || true)
status_help=$("$sio_steer" status --help 2>&1 || true)
has_follow=0; grep -q -- '--follow' <<<"$attach_help" && has_follow=1
status_lock_dir=0; grep -q -- '--lock-dir' <<<"$status_help" && status_lock_dir=1

states=()
for f in "${follows[@]}"; do
    case $f in auto|events|polling) ;; *) die "--follow: auto, events or polling, not $f" ;; esac
    if [ "$f" != auto ] && [ "$has_follow" = 0 ]; then
        echo "follow=$f: skipped: this sio-steer's attach has no --follow option (the mode it reaches by itself is measured with follow=auto)"
        continue
    fi
    for t in "${tracefs_states[@]}"; do
        case $t in mounted|unmounted) ;; *) die "--tracefs: mounted or unmounted, not $t" ;; esac
        if [ "$f" = polling ] && [ "${#tracefs_states[@]}" -gt 1 ] && [ "$t" != "${tracefs_states[0]}" ]; then
            echo "follow=polling tracefs=$t: skipped: a forced polling controller attaches no watch, tracefs does not matter"
            continue
        fi
        states+=("$f:$t")
    done
done
[ "${#states[@]}" -gt 0 ] || die "nothing to measure"

# --- the machine -----------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
ncpu=$(nproc)
read -r port_low port_high </proc/sys/net/ipv4/ip_local_port_range
machine="$ncpu CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), Linux $(uname -r)"
git_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')
tracefs_host=unmounted; mountpoint -q /sys/kernel/tracing && tracefs_host=mounted
echo "machine: $machine, load $(cut -d' ' -f1-3 /proc/loadavg), perf_event_paranoid $(cat /proc/sys/kernel/perf_event_paranoid)," \
     "tracefs on the host: $tracefs_host, ephemeral ports $port_low-$port_high"
echo "sio-steer: $sio_steer (tree at $git_rev${label:+, $label}); --follow: $([ $has_follow = 1 ] && echo yes || echo no)"
echo "windows: ${duration} s; extra processes: $procs_list × 30 fds; storms: $rate listen()/close() per s with $busy_procs extra processes; reaction: $runs runs"

if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != bpf_fs ]; then
    mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
    echo "mounted bpffs on /sys/fs/bpf (it was not)"
fi

# --- cleanup: everything by pid, name or path that this script created -------------------------------
tmp=$(mktemp -d /tmp/sio-bench.XXXXXX)
pids=() holders=() netnses=() pin_roots=() failed=1
forget() { local x keep=(); for x in "${pids[@]}"; do [ "$x" = "$1" ] || keep+=("$x"); done; pids=("${keep[@]}"); }
holder_rc=0
stop_pid() {  # TERM, up to 5 s, then KILL: only a child of this script that it has not reaped yet
    local p=$1 i stat
    holder_rc=1
    forget "$p"  # once stopped: a reaped pid may belong to someone else next
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "$(cut -d' ' -f2 <<<"$stat")" = "$$" ] || return 0
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null && holder_rc=0 || holder_rc=$?
}
stop_holder() {  # the holder kills its children on TERM; any left (holder gone) are killed by pid
    local p=${1%%:*} file=${1#*:} c
    stop_pid "$p"
    [ -f "$file" ] || return 0
    # A holder that exited by itself (status 0) has killed and reaped all of them.
    [ "$holder_rc" = 0 ] && return 0
    while read -r c; do  # no fork per pid: thousands of them
        [ /proc/$c/exe -ef "$helper" ] && kill -KILL "$c" 2>/dev/null || true
    done <"$file"
}
cleanup() {
    local x
    for x in "${holders[@]}"; do stop_holder "$x"; done
    for x in "${pids[@]}"; do stop_pid "$x"; done
    for x in "${netnses[@]}"; do ip netns del "$x" 2>/dev/null || true; done
    for x in "${pin_roots[@]}"; do rm -rf "$x"; done
    if [ "$failed" = 1 ]; then echo "logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

used_ports=" "
free_port() {  # outside the ephemeral range, not listening on the host, not used by this run yet
    local lo hi p i
    if [ "$port_low" -gt 11024 ]; then lo=$((port_low - 10000)) hi=$((port_low - 1)); else lo=$((port_high + 1)) hi=$((port_high + 10000)); fi
    [ "$hi" -le 65535 ] || hi=65535
    for i in $(seq 200); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        [[ $used_ports == *" $p "* ]] && continue
        [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || continue
        used_ports+="$p "
        echo "$p"
        return 0
    done
    die "no free port in $lo-$hi"
}

wait_for() {  # wait_for SECONDS FILE PATTERN [PID]: until FILE has a line matching PATTERN
    local deadline=$((SECONDS + $1)) file=$2 pattern=$3 pid=${4:-}
    while [ $SECONDS -lt "$deadline" ]; do
        grep -qE "$pattern" "$file" 2>/dev/null && return 0
        [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# --- figures ---------------------------------------------------------------------------------------
# Each prints exactly one number (sample() splits on whitespace).
cpu_ticks() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }; s=${s##*) }; set -- $s; echo $(( ${12} + ${13} )); }
# Run time in ns of the controller's live threads (finer than ticks; a thread that exited is missing).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
host_cpu() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }  # busy total (jiffies)
syncs() {  # the controller's sio_steer_controller_syncs_total, from its /metrics (in its netns)
    nsenter --net="/run/netns/$1" curl -s --max-time 5 "http://127.0.0.1:$2/metrics" 2>/dev/null |
        awk '/^sio_steer_controller_syncs_total/ {s += $2; n++} END {if (n) printf "%d\n", s; else print "null"}' || true
}
# sample first|last -> ticks ns host_busy host_total syncs clock_ns. The /metrics scrape costs the
# controller a little CPU: it is taken before the window opens and after it closes, not inside.
sample() {
    local t ticks n h s=
    [ "$1" = first ] && s=$(syncs "$ns" "$metrics_port")
    t=$(date +%s%N) ticks=$(cpu_ticks "$ctl") n=$(cpu_ns "$ctl") h=$(host_cpu)
    [ "$1" = last ] && s=$(syncs "$ns" "$metrics_port")
    echo "$ticks $n $h ${s:-null} $t"
}
# measure NAME [PID to wait for, else --duration s] -> appends one JSON object to $state_json, prints a line
measure() {
    local name=$1 wait_pid=${2:-} a b
    kill -0 "$ctl" 2>/dev/null || die "the controller died; its log: $ctl_log"
    a=($(sample first))
    if [ -n "$wait_pid" ]; then
        wait "$wait_pid" || die "$name: its load generator failed (logs in $tmp)"
        forget "$wait_pid"  # reaped
    else
        sleep "$duration"
    fi
    kill -0 "$ctl" 2>/dev/null || die "the controller died during $name; its log: $ctl_log"
    b=($(sample last))
    echo "$name: ${a[*]} -> ${b[*]}" >>"$tmp/samples.log"
    local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
    local j
    j=$(jq -nc --arg name "$name" --arg load "$load" \
        --argjson t0 "${a[0]}" --argjson t1 "${b[0]}" --argjson n0 "${a[1]}" --argjson n1 "${b[1]}" \
        --argjson hb0 "${a[2]}" --argjson hb1 "${b[2]}" --argjson ht0 "${a[3]}" --argjson ht1 "${b[3]}" \
        --argjson s0 "${a[4]}" --argjson s1 "${b[4]}" --argjson w0 "${a[5]}" --argjson w1 "${b[5]}" \
        --argjson tck "$clk_tck" --argjson ncpu "$ncpu" '
        (($w1 - $w0) / 1e9) as $secs |
        {name: $name, seconds: ($secs * 100 | round / 100),
         cpu_pct: ((($t1 - $t0) / $tck) / $secs * 100 * 1000 | round / 1000),
         cpu_pct_schedstat: ((($n1 - $n0) / 1e9) / $secs * 100 * 1000 | round / 1000),
         syncs: (if $s0 == null or $s1 == null then null else $s1 - $s0 end),
         host_busy_pct: (if $ht1 > $ht0 then (($hb1 - $hb0) / ($ht1 - $ht0) * $ncpu * 100 | round) else null end),
         loadavg: $load}')
    state_json+=("$j")
    jq -r '"  \(.name | . + " " * (22 - length)) controller \(.cpu_pct) % of a core (schedstat \(.cpu_pct_schedstat) %), \(.syncs // "?") syncs, machine busy \(.host_busy_pct) % of a core, load \(.loadavg)"' <<<"$j"
}

# --- one state ------------------------------------------------------------------------------------
all_states=()
run=0
run_state() {
    local follow=$1 tracefs=$2
    run=$((run + 1))
    state_json=()
    local port storm_port pin_root lock_dir other_ns
    port=$(free_port) storm_port=$(free_port)
    ns=sio-bench-$$-$run other_ns=sio-bench-$$-$run-other
    metrics_port=9477
    pin_root=/sys/fs/bpf/sio-bench-$$-$run lock_dir=$tmp/lock-$run
    mkdir -p "$pin_root" "$lock_dir"
    pin_roots+=("$pin_root")
    ip netns add "$ns" && netnses+=("$ns")
    ip netns add "$other_ns" && netnses+=("$other_ns")
    ip -n "$ns" link set lo up
    ip -n "$other_ns" link set lo up
    echo
    echo "== follow=$follow tracefs=$tracefs: port $port, netns $ns, pin root $pin_root"

    local i w
    for i in 0 1; do
        w=$tmp/worker-$run-$i.out
        nsenter --net="/run/netns/$ns" env -i PATH=/usr/bin:/bin NODE_APP_INSTANCE=$i pm_id=$i name=bench \
            exec_mode=cluster_mode "$test_worker" --port "$port" </dev/null >"$w" 2>&1 &
        pids+=($!)
        wait_for 10 "$w" '^ready' $! || die "test_worker did not listen: $(cat "$w")"
    done

    # The controller: in the workers' network namespace and a private mount namespace where tracefs
    # is mounted or not, whatever the host has; the host's mounts are never changed.
    local setup
    if [ "$tracefs" = mounted ]; then
        setup='mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing'
    else
        setup='for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do
                   if mountpoint -q $m; then umount -l $m; fi; done'
    fi
    local args=(attach --port "$port" --pin-root "$pin_root" --lock-dir "$lock_dir" --metrics-listen "127.0.0.1:$metrics_port")
    [ "$has_follow" = 1 ] && args+=(--follow "$follow")
    ctl_log=$tmp/controller-$run.log
    nsenter --net="/run/netns/$ns" unshare -m --propagation private -- \
        bash -c 'mount --make-rprivate / && '"$setup"' && exec "$@"' bench-controller "$sio_steer" "${args[@]}" \
        </dev/null >"$ctl_log" 2>&1 &
    ctl=$!
    pids+=("$ctl")
    if ! wait_for 30 "$ctl_log" 'following port' "$ctl"; then
        cat "$ctl_log" >&2
        die "the controller did not start following (follow=$follow tracefs=$tracefs)"
    fi
    [ "$(cat /proc/$ctl/comm)" = sio-steer ] || die "pid $ctl is $(cat /proc/$ctl/comm), not sio-steer"
    sleep 1
    local mode reason status_args=(status --json --port "$port" --pin-root "$pin_root")
    [ "$status_lock_dir" = 1 ] && status_args+=(--lock-dir "$lock_dir")
    local st; st=$(nsenter --net="/run/netns/$ns" "$sio_steer" "${status_args[@]}" 2>/dev/null || true)
    mode=$(jq -r 'first(.. | objects | select(has("follow")) | .follow | objects | .mode) // empty' <<<"$st" 2>/dev/null || true)
    reason=$(jq -r 'first(.. | objects | select(has("follow")) | .follow | objects | .reason) // empty' <<<"$st" 2>/dev/null || true)
    local line; line=$(grep -m1 'following port' "$ctl_log" || true)
    if [ -z "$mode" ]; then
        if grep -qiE 'by polling|polling every|mode[ :=]+polling' <<<"$line"; then mode=polling
        elif grep -qiE 'event' <<<"$line"; then mode=events
        else mode=unknown; fi
        reason="(from the log) ${line#*] }"
    fi
    echo "mode: $mode${reason:+ — $reason}"
    grep -E 'libbpf|warn' "$ctl_log" | sed 's/^/  controller: /' | head -5 || true
    sleep 2

    local have=0 n h out
    for n in "${levels[@]}"; do
        if [ "$n" -gt "$have" ]; then
            out=$tmp/hold-$run-$n
            "$helper" hold --procs $((n - have)) --fds 30 --pid-file "$out.pids" </dev/null >"$out.out" 2>&1 &
            h=$!
            holders+=("$h:$out.pids")
            wait_for $((30 + n / 50)) "$out.out" '^ready' "$h" || die "could not start $((n - have)) processes: $(cat "$out.out")"
            have=$n
        fi
        sleep 5  # let the controller see them (a resync or two) before the window opens
        if wants idle; then measure "idle $n"; fi
        if [ "$n" = "$busy_procs" ] && wants storm; then
            "$helper" storm --port "$storm_port" --rate "$rate" --seconds "$duration" </dev/null \
                >"$tmp/storm-port-$run.json" 2>&1 &
            local s=$!; pids+=("$s")
            measure "storm port $storm_port" "$s"
            log "    storm: $(cat "$tmp/storm-port-$run.json")"
            nsenter --net="/run/netns/$other_ns" "$helper" storm --port "$port" --rate "$rate" --seconds "$duration" </dev/null \
                >"$tmp/storm-netns-$run.json" 2>&1 &
            s=$!; pids+=("$s")
            measure "storm netns" "$s"
            log "    storm: $(cat "$tmp/storm-netns-$run.json")"
            sleep 3
        fi
        if [ "$n" = "$busy_procs" ] && wants reaction; then
            local r load0; load0=$(cut -d' ' -f1-3 /proc/loadavg)
            nsenter --net="/run/netns/$ns" "$helper" react --port "$port" --pin-dir "$pin_root/$port" --runs "$runs" \
                </dev/null >"$tmp/react-$run.json" 2>"$tmp/react-$run.log" &
            r=$!; pids+=("$r")
            wait "$r" || log "    reaction: some runs timed out (logs in $tmp/react-$run.log)"
            forget "$r"  # reaped
            [ -s "$tmp/react-$run.json" ] || die "reaction probe failed: $(tail -5 "$tmp/react-$run.log")"
            sed 's/^/      /' "$tmp/react-$run.log" >&2  # every run, for the tail
            local rj; rj=$(jq -c --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg load0 "$load0" \
                '{name: "reaction"} + . + {loadavg: $load, loadavg_before: $load0}' "$tmp/react-$run.json")
            state_json+=("$rj")
            jq -r '"  reaction               p50 \(.p50_ms) ms, p99 \(.p99_ms) ms (max of \(.runs)), slot alone p50 \(.slot_p50_ms) ms; slot freed after a worker died: p50 \(.gone_p50_ms) ms; \(.timeouts) timeouts; load \(.loadavg)"' <<<"$rj"
        fi
    done

    local x; for x in "${holders[@]}"; do stop_holder "$x"; done; holders=()
    stop_pid "$ctl"
    local p; for p in "${pids[@]}"; do stop_pid "$p"; done; pids=()
    ip netns del "$ns"; ip netns del "$other_ns"; netnses=()
    rm -rf "$pin_root"; pin_roots=()
    [ "$has_follow" = 1 ] || follow="(no option)"
    all_states+=("$(printf '%s\n' "${state_json[@]}" | jq -sc --arg follow "$follow" --arg tracefs "$tracefs" \
        --arg mode "$mode" --arg reason "$reason" --argjson port "$port" \
        '{follow: $follow, tracefs: $tracefs, mode: $mode, reason: $reason, port: $port, measurements: .}')")
}

for s in "${states[@]}"; do run_state "${s%%:*}" "${s#*:}"; done

# --- table, goals, JSON ----------------------------------------------------------------------------
max_level=${levels[-1]} min_level=${levels[0]}
result=$(printf '%s\n' "${all_states[@]}" | jq -sc \
    --arg machine "$machine" --arg git "$git_rev" --arg lbl "$label" --arg bin "$sio_steer" \
    --argjson duration "$duration" --argjson rate "$rate" --argjson busy "$busy_procs" \
    --arg maxl "idle $max_level" --arg minl "idle $min_level" '
    def m($n): [.measurements[] | select(.name == $n)][0];
    def storm($p): [.measurements[] | select(.name | startswith($p))][0];
    def le($x; $goal): if $x == null then null else $x <= $goal end;
    {controller_cost: {"label": $lbl, repo_head: $git, sio_steer: $bin, machine: $machine, window_s: $duration,
      storm_rate: $rate, busy_procs: $busy,
      states: [.[] | {follow, tracefs, mode, reason,
        idle: ([.measurements[] | select(.name | startswith("idle ")) | {key: (.name | ltrimstr("idle ")), value: .}] | from_entries),
        storm_port: storm("storm port"), storm_netns: storm("storm netns"), reaction: m("reaction")}
        | . + {goals: {
          idle_at_max: {procs: ($maxl | ltrimstr("idle ") | tonumber), pct: .idle[$maxl | ltrimstr("idle ")].cpu_pct, goal: 0.1,
                        met: le(.idle[$maxl | ltrimstr("idle ")].cpu_pct; 0.1)},
          idle_flat: (.idle[$maxl | ltrimstr("idle ")].cpu_pct as $hi | .idle[$minl | ltrimstr("idle ")].cpu_pct as $lo |
                      (if $hi == null or $lo == null then null else ($hi - $lo) * 1000 | round / 1000 end) as $g |
                      {growth_pp: $g, goal: 0.05, met: le($g; 0.05)}),
          storm: {port_pct: .storm_port.cpu_pct, netns_pct: .storm_netns.cpu_pct, goal: 1,
                  met: (if .storm_port == null then null else le(.storm_port.cpu_pct; 1) and le(.storm_netns.cpu_pct; 1) end)},
          reaction: {p50_ms: .reaction.p50_ms, p99_ms: .reaction.p99_ms, goal_p50: 10, goal_p99: 50,
                     met: (if .reaction == null then null else le(.reaction.p50_ms; 10) and le(.reaction.p99_ms; 50) end)}}}]}}')

echo
echo "Controller CPU in % of one core (utime+stime over ${duration} s); reaction in ms. Load average (1 min) after each window in brackets."
jq -r --argjson levels "$(printf '%s\n' "${levels[@]}" | jq -sc .)" '
    def cell($v): if $v == null then "–" else "\($v) [\(.loadavg | split(" ")[0])]" end;
    .controller_cost.states as $st |
    ("| follow | tracefs | mode | " + ([$levels[] | "idle \(.) procs"] | join(" | ")) + " | storm other port | storm other netns | reaction p50 / p99 |"),
    ("|" + ([range(0; 6 + ($levels | length))] | map("---") | join("|")) + "|"),
    ($st[] | "| \(.follow) | \(.tracefs) | \(.mode) | " +
        ([.idle[$levels[] | tostring] | cell(.cpu_pct?)] | join(" | ")) +
        " | \(.storm_port | cell(.cpu_pct?)) | \(.storm_netns | cell(.cpu_pct?)) | " +
        "\(.reaction | cell(if . == null then null else "\(.p50_ms) / \(.p99_ms)" end)) |")
    ' <<<"$result"
echo
echo "Goals (issue #11): idle ≤ 0.1 % of a core at $max_level processes and flat in the process count (≤ +0.05 pp from $min_level);" \
     "storm on another port ≤ 1 %; reaction p50 ≤ 10 ms, p99 ≤ 50 ms"
jq -r '
    def v($b): if $b == null then "not measured" elif $b then "met" else "MISSED" end;
    def signed: if . == null then "–" elif . >= 0 then "+\(.)" else tostring end;
    .controller_cost.states[] | .goals as $g |
    "  follow=\(.follow) tracefs=\(.tracefs) (\(.mode)): " + ([
      (select($g.idle_at_max.met != null) | "idle \($g.idle_at_max.pct) % at \($g.idle_at_max.procs) — \(v($g.idle_at_max.met))"),
      (select($g.idle_flat.met != null) | "flat: \($g.idle_flat.growth_pp | signed) pp — \(v($g.idle_flat.met))"),
      (select($g.storm.met != null) | "storm \($g.storm.port_pct) % / netns \($g.storm.netns_pct) % — \(v($g.storm.met))"),
      (select($g.reaction.met != null) | "reaction \($g.reaction.p50_ms) / \($g.reaction.p99_ms) ms — \(v($g.reaction.met))")
    ] | join("; "))' <<<"$result"
failed=0
echo "$result"
