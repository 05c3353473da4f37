#!/usr/bin/env bash
# The production host for real: Debian 12's stock kernel (linux-image-amd64) in qemu (TCG, no KVM)
# with systemd as PID 1, the .deb of `cpack -G DEB` installed with dpkg, the chat example under PM2
# as PM2's own systemd service, and `systemctl enable --now sio-steer@5001`; then the checks of
# tests/vm/guest.sh. No disk image of a distribution: the VM's / is this machine's / (9p,
# read-only) under an overlay on a scratch disk; a busybox initramfs (tests/vm/init) sets it up.
#   scripts/vm-test.sh [--quick]     --quick: install, start, sticky, stop, remove, purge (no reboot, no integration_tests)
# Needs root. Exits 0 only if every check passed; the last line of stdout is one JSON object:
#   {"kernel": ..., "systemd": ..., "passed": N, "failed": N, "checks": {"NAME": "pass"|"fail", ...}}
# VM_KEEP=DIR: copy the run's results, console log and guest logs there.
# DEB_DIR=DIR: install the .deb there (ctest's `deb` fixture builds it once for this and the
# packaging tests); without it, `cpack -G DEB` in the build folder makes one.
# VM_TIMEOUT_S=N: give the VM N seconds instead of 900 (quick) or 2400 (full), on a host so busy
# that TCG crawls (a quick run's boot alone took 6 minutes under a load of 19).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: scripts/vm-test.sh [--quick]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "scripts/vm-test.sh: run as root (it installs packages, builds an initramfs)" >&2; exit 1; }

# What the guest runs, in this order (tests/vm/guest.sh writes a result for each).
if ((quick)); then
  checks=(dpkg_install unit_start sticky hardening stop_keeps_steering remove_keeps_config purge_clean)
  timeout_s=900
else
  checks=(dpkg_install unit_start sticky hardening journal_per_change reload_no_failures restart_no_moves
    kill9_restart watchdog stop_keeps_steering reboot_reattach remove_keeps_config purge_clean integration_tests)
  timeout_s=2400
fi
timeout_s="${VM_TIMEOUT_S:-$timeout_s}"

log() { echo "vm-test: $*" >&2; }

scripts/install-deps.sh >&2
build="$(cd "$(dirname "$(BUILD_DIR="${BUILD_DIR:-build}" scripts/build.sh)")/.." && pwd)"
if [[ -n "${DEB_DIR:-}" ]]; then
  deb="$(ls -t "$DEB_DIR"/sio-steer_*.deb | head -n 1)"
else
  (cd "$build" && cpack -G DEB >/dev/null)
  deb="$(ls -t "$build"/sio-steer_*.deb | head -n 1)"
fi
. scripts/node-env.sh  # the chat example's node_modules (npm ci), used from the guest read-only
# The kernel of linux-image-amd64 (the newest, if several are installed).
kver="$(cd /lib/modules && ls -d *-amd64 | sort -V | tail -n 1)"
[[ -f "/boot/vmlinuz-$kver" ]] || { log "no /boot/vmlinuz-$kver (apt-get install linux-image-amd64)"; exit 1; }

run="$(mktemp -d /tmp/sio-steer-vm.XXXXXX)"
results="$run/results"
mkdir -p "$results/checks"
qemu_pid=""
tail_pid=""
cleanup() {
  local rc=$?
  [[ -n "$qemu_pid" ]] && { kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; }
  [[ -n "$tail_pid" ]] && { kill "$tail_pid" 2>/dev/null || true; wait "$tail_pid" 2>/dev/null || true; }
  if [[ -n "${VM_KEEP:-}" ]]; then
    mkdir -p "$VM_KEEP" && cp -r "$results/." "$VM_KEEP/" && cp "$run/console.log" "$VM_KEEP/" 2>/dev/null || true
  fi
  rm -rf "$run"
  return $rc
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# The initramfs: busybox, tests/vm/init, and the modules for virtio, 9p, overlay and ext4 with
# everything they depend on (modules.dep), listed dependencies first for insmod.
initramfs="$run/initramfs"
mkdir -p "$initramfs"/{bin,dev,proc,sys,modules}
cp /bin/busybox "$initramfs/bin/busybox"
cp tests/vm/init "$initramfs/init"
mknod "$initramfs/dev/console" c 5 1
declare -A seen=()
add_module() {  # add_module kernel/fs/x/x.ko: its dependencies first
  local m="$1" dep
  [[ -n "${seen[$m]:-}" ]] && return 0
  seen[$m]=1
  for dep in $(awk -v m="$m:" '$1 == m { $1 = ""; print }' "/lib/modules/$kver/modules.dep"); do add_module "$dep"; done
  mkdir -p "$initramfs/modules/$(dirname "$m")"
  cp "/lib/modules/$kver/$m" "$initramfs/modules/$m"
  echo "$m" >>"$initramfs/modules.load"
}
for name in virtio_pci virtio_blk 9pnet_virtio 9p overlay crc32c_generic ext4; do
  add_module "$(awk -F: -v n="/$name.ko" 'index($1, n) == length($1) - length(n) + 1 { print $1; exit }' "/lib/modules/$kver/modules.dep")"
done
(cd "$initramfs" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$run/initrd.gz"

# The overlay's upper layer: a scratch disk, so that what the guest installs survives its reboot.
truncate -s 4G "$run/disk.img"
mkfs.ext4 -q -F "$run/disk.img"

# What the guest needs to know (tests/vm/guest.sh reads it).
cat >"$results/env" <<EOF
SRC=$repo
BUILD=$build
DEB=$deb
QUICK=$quick
EOF

# The guest sees the repository (and the build folder) at the same paths: the binaries hold them.
build_arg=""
[[ "$build/" == "$repo/"* ]] || build_arg=" siovm.build=$build"
log "booting $kver in qemu (TCG), $([[ $quick == 1 ]] && echo quick || echo full) run, at most $timeout_s s"
start=$SECONDS
: >"$run/console.log"
qemu-system-x86_64 -machine pc -accel tcg -cpu max -m 2G -smp 2 \
  -display none -monitor none -serial "file:$run/console.log" -nic none \
  -kernel "/boot/vmlinuz-$kver" -initrd "$run/initrd.gz" \
  -append "console=ttyS0 rdinit=/init panic=-1 loglevel=4 siovm.src=$repo$build_arg" \
  -virtfs local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$results,mount_tag=results,security_model=none,multidevs=remap" \
  -drive "file=$run/disk.img,format=raw,if=virtio" &
qemu_pid=$!
tail -n +1 -F "$run/console.log" >&2 2>/dev/null &
tail_pid=$!
# The guest powers off when it is done (or tests/vm/init does on a failure); bounded here anyway.
while kill -0 "$qemu_pid" 2>/dev/null && ((SECONDS - start < timeout_s)); do sleep 1; done
if kill -0 "$qemu_pid" 2>/dev/null; then
  log "the VM did not finish in $timeout_s s: killing it"
  kill "$qemu_pid" 2>/dev/null || true
fi
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
sleep 0.5  # the last console lines
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true
tail_pid=""
log "the VM ran $((SECONDS - start)) s"

# A check the guest did not report (it crashed, hung or never got there) failed.
json="$(for c in "${checks[@]}"; do
  r="$(cat "$results/checks/$c" 2>/dev/null || true)"
  [[ "$r" == pass ]] || r=fail
  printf '%s\t%s\n' "$c" "$r"
done | jq -R -s -c \
  --arg kernel "$(cat "$results/kernel" 2>/dev/null || echo unknown)" \
  --arg systemd "$(cat "$results/systemd" 2>/dev/null || echo unknown)" '
  [split("\n")[] | select(length > 0) | split("\t") | {key: .[0], value: .[1]}] | from_entries as $c
  | {kernel: $kernel, systemd: $systemd,
     passed: ([$c[] | select(. == "pass")] | length), failed: ([$c[] | select(. != "pass")] | length),
     checks: $c}')"
for f in "$results"/*.txt; do [[ -f "$f" ]] && log "$(basename "$f" .txt): $(tr '\n' ' ' <"$f")"; done
echo "$json"
[[ "$(jq .failed <<<"$json")" == 0 ]]
