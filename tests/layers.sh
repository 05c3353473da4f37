#!/usr/bin/env bash
# The layers of userspace/, as the includes draw them: cli -> daemon -> kernel -> logic -> bpf.
# Fails on an include that does not name its layer ("doctor.h" instead of "kernel/doctor.h"), and
# on one that reaches up: a layer includes only its own and the ones below it. Unit tests link the
# logic layer alone, so they include only logic/ and bpf/.
#   tests/layers.sh [SOURCE_DIR]   check the tree (default: this script's)
#   tests/layers.sh --self-test    show that the check fails on a reach up and on a bare include
set -euo pipefail

rank() {
  case "$1" in
    bpf) echo 0 ;; logic) echo 1 ;; kernel) echo 2 ;; daemon) echo 3 ;; cli) echo 4 ;; *) echo -1 ;;
  esac
}

# check ROOT: prints a line per wrong include, returns 1 if there is one.
check() {
  local root="$1" file own top line target layer name bad=0
  while IFS= read -r file; do
    case "$file" in
      userspace/*) own="$(cut -d/ -f2 <<<"$file")"; top="$own" ;;
      tests/unit/*) own=""; top=logic ;;
      *) own=""; top=cli ;;
    esac
    while IFS=: read -r line target; do
      target="${target#*\"}"
      target="${target%%\"*}"
      layer="${target%%/*}"
      name="${target#*/}"
      if [[ "$target" != */* ]]; then
        # a test's own helper sits beside it (harness.h) or in tests/ (exit_codes.h); anything else
        # must say where it comes from
        if [[ -z "$own" && ( -f "$root/$(dirname "$file")/$target" || -f "$root/tests/$target" ) ]]; then continue; fi
        echo "$file:$line: #include \"$target\" does not name its layer (e.g. \"kernel/$target\")"
      elif [[ "$(rank "$layer")" -lt 0 || "$name" == */* ]]; then
        echo "$file:$line: #include \"$target\": not a layer of userspace/ (cli, daemon, kernel, logic) nor bpf/"
      elif [[ "$layer" == bpf && ! -f "$root/bpf/$name" && "$name" != *.skel.h ]] ||
        [[ "$layer" != bpf && ! -f "$root/userspace/$target" ]]; then
        echo "$file:$line: #include \"$target\": no such file"
      elif (($(rank "$layer") > $(rank "$top"))); then
        echo "$file:$line: #include \"$target\": ${own:-$(dirname "$file")} may not reach up to $layer" \
          "(layers: cli -> daemon -> kernel -> logic -> bpf)"
      else
        continue
      fi
      bad=1
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$root/$file" || true)
  done < <(cd "$root" && find userspace tests/unit tests/cli tests/integration tests/fuzz \
    -name '*.cpp' -o -name '*.h' 2>/dev/null | sort)
  return "$bad"
}

self_test() {
  local tree out
  tree="$(mktemp -d)"
  trap 'rm -rf "$tree"' RETURN
  mkdir -p "$tree"/{bpf,tests/unit} "$tree"/userspace/{logic,kernel,daemon,cli}
  touch "$tree/bpf/sio_steer.h" "$tree/userspace/logic/options.h" "$tree/userspace/daemon/follower.h"
  printf '#include "bpf/sio_steer.h"\n#include "logic/options.h"\n' >"$tree/userspace/kernel/ok.cpp"
  printf '#include "logic/options.h"\n' >"$tree/tests/unit/ok_test.cpp"
  check "$tree" >/dev/null || { echo "self-test: a sound tree was refused"; return 1; }
  for bad in 'userspace/logic/up.cpp:daemon/follower.h:may not reach up to daemon' \
    'userspace/cli/bare.cpp:options.h:does not name its layer' \
    'tests/unit/up_test.cpp:daemon/follower.h:may not reach up to daemon'; do
    IFS=: read -r file target says <<<"$bad"
    printf '#include "%s"\n' "$target" >"$tree/$file"
    if out="$(check "$tree")" || ! grep -q "^$file:1: .*$says" <<<"$out"; then
      echo "self-test: $file including \"$target\" was not refused with '$says':"
      echo "$out"
      return 1
    fi
    rm "$tree/$file"
  done
  echo "self-test: a reach up and a bare include are refused"
}

if [[ "${1:-}" == --self-test ]]; then
  self_test
  exit
fi
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
if check "$root"; then
  echo "layers: every include names its layer, none reaches up"
else
  echo "layers: fix the includes above (userspace/ is the include root; docs/architecture.md, Source layout)"
  exit 1
fi
