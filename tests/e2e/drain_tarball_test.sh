#!/usr/bin/env bash
# The drain module as the package ships it, in the example app: the .deb's
# /usr/share/sio-steer/sio-steer-drain-<version>.tgz is `npm install`ed (offline) into a copy of
# examples/chat, whose other packages are the ones `npm ci` installed; then tests/e2e/pm2_test.sh
# reload runs, unchanged, against that copy (it finds the app beside itself: the copy sits in a
# tree of its own with the scripts it sources).
#   DEB_DIR=<dir with sio-steer_*.deb> SIO_STEER=<binary> tests/e2e/drain_tarball_test.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
fail() { echo "drain_tarball: FAIL: $*" >&2; exit 1; }
log() { echo "drain_tarball: $*" >&2; }

[[ -n "${DEB_DIR:-}" ]] || fail "DEB_DIR is not set (ctest's deb fixture builds the .deb there)"
deb="$(ls -t "$DEB_DIR"/sio-steer_*.deb 2>/dev/null | head -n 1)"
[[ -n "$deb" ]] || fail "no sio-steer_*.deb in $DEB_DIR"
. "$repo/scripts/node-env.sh"  # the example's packages (npm ci), copied below; NODE24
work="$(mktemp -d /tmp/sio-steer-drain-tarball.XXXXXX)"
trap 'rm -rf "$work"' EXIT

version="$(dpkg-deb -f "$deb" Version)"
dpkg-deb -x "$deb" "$work/deb"
tarball="$work/deb/usr/share/sio-steer/sio-steer-drain-$version.tgz"
[[ -f "$tarball" ]] || fail "$(basename "$deb") has no /usr/share/sio-steer/sio-steer-drain-$version.tgz"

tree="$work/tree"
chat="$tree/examples/chat"
mkdir -p "$tree/scripts" "$tree/tests/e2e" "$tree/examples"
cp "$repo/scripts/node-env.sh" "$tree/scripts/"
cp "$repo/tests/e2e/lib.sh" "$repo/tests/e2e/pm2_test.sh" "$tree/tests/e2e/"
cp -a "$CHAT_DIR" "$chat"
log "npm install $(basename "$tarball") in a copy of examples/chat"
(cd "$chat" && npm install --offline --no-audit --no-fund --loglevel=error "$tarball") ||
  fail "npm install of the packaged tarball failed"
touch "$chat/node_modules/.package-lock.json"  # node-env.sh: installed, no npm ci

# The app now loads the packaged module, of the package's version, not the repository's.
resolved="$(cd "$chat" && "$NODE24" -p 'require.resolve("sio-steer-drain")')"
[[ "$resolved" == "$chat/node_modules/sio-steer-drain/index.js" && ! -L "$chat/node_modules/sio-steer-drain" ]] ||
  fail "the app resolves sio-steer-drain to $resolved, not to the installed tarball"
installed="$(jq -r .version "$chat/node_modules/sio-steer-drain/package.json")"
[[ "$installed" == "$version" ]] || fail "the installed module says version $installed, the package $version"
log "ok: the app loads sio-steer-drain $installed from the package"

SIO_STEER="${SIO_STEER:-$repo/build/userspace/sio-steer}" bash "$tree/tests/e2e/pm2_test.sh" reload
log "PASS: pm2_test.sh reload with the packaged drain"
