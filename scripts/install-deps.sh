#!/usr/bin/env bash
# Installs what sio-steer needs to build, test and run its demo, from Debian's packages;
# mounts bpffs if it is not mounted. Idempotent, and quiet when everything is already there.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang llvm libbpf-dev bpftool
  libspdlog-dev libboost-program-options-dev libgtest-dev libgmock-dev
  libmnl-dev nlohmann-json3-dev libcpp-httplib-dev libsystemd-dev
  iproute2 redis-server gnuplot-nox jq
  nginx  # with the realip, map, split_clients and proxy modules that `sio-steer nginx-conf` uses
  # the multi-host test (tests/e2e/multihost_test.sh): its front balancers
  haproxy nftables
  # the .deb (dpkg-shlibdeps), systemd-analyze verify, the unit's syscall filter test, the runbook
  dpkg-dev systemd strace curl
  # the alert rules' tests (packaging/prometheus/check.sh): promtool, and yq to read the rules
  prometheus yq
  # the browser test (tests/e2e/browser_test.sh): headless Chromium, its certificate, a font for the screenshots
  chromium openssl fonts-dejavu-core
  # the VM test (scripts/vm-test.sh): Debian 12's stock kernel in qemu (TCG), a busybox initramfs,
  # an ext4 scratch disk for the overlay
  qemu-system-x86 linux-image-amd64 busybox-static e2fsprogs
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm comes with the machine's Node.js; Debian's npm package only where it is missing.
command -v npm >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }

if ! mountpoint -q /sys/fs/bpf; then
  echo "install-deps: mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
