#!/usr/bin/env bash
# The alert rules as an operator gets them, checked with Prometheus's own tool (Debian's
# `prometheus` package): `promtool check rules` and `promtool test rules` of every *test*.yml here;
# then what promtool does not check: every alert has a `runbook` annotation naming a section of
# docs/runbook.md that exists, appears in docs/metrics.md and docs/runbook.md, and is tested by at
# least one case where it fires and one where it stays quiet.
#   packaging/prometheus/check.sh               exit 0 if all holds, 1 with what does not
#   packaging/prometheus/check.sh --self-test   the same checks on broken copies must fail
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
for tool in promtool yq; do
  command -v "$tool" >/dev/null ||
    { echo "check.sh: $tool not found (scripts/install-deps.sh installs Debian's prometheus and yq)" >&2; exit 1; }
done

fail() { echo "check.sh: FAIL: $*" >&2; failed=1; }

# GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes.
slug() { tr '[:upper:]' '[:lower:]' <<<"$1" | sed 's/[^a-z0-9 _-]//g; s/ /-/g'; }

# rules_hold DIR: promtool accepts the rules in DIR, and their tests pass, the recorded ones among
# them (which must hold series: an empty block between record.sh's markers tests nothing).
rules_hold() {
  failed=0
  [[ -f "$1/sio-steer.rules.test.yml" ]] || fail "no sio-steer.rules.test.yml"
  (($(sed -n '/recorded by record.sh: begin/,/recorded by record.sh: end/p' "$1/sio-steer.recorded.test.yml" 2>/dev/null |
    grep -c -- '- series:') > 0)) || fail "sio-steer.recorded.test.yml holds no recorded series (run record.sh)"
  promtool check rules "$1/sio-steer.rules.yml" || fail "promtool check rules"
  (cd "$1" && promtool test rules ./*test*.yml) || fail "promtool test rules"
  return "$failed"
}

# documented DIR RUNBOOK METRICS: every alert in DIR's rules has its runbook section, its docs and
# its cases.
documented() {
  local dir="$1" runbook="$2" metrics="$3" alert anchor file fires quiet
  failed=0
  local -A anchors=()
  while read -r heading; do anchors["$(slug "$heading")"]=1; done < <(sed -n 's/^#\{1,6\} //p' "$runbook")
  # every file as JSON, one line each, the rules first: yq (Python) is slow to start, jq is not
  local docs cases alerts
  docs="$(yq -c . "$dir/sio-steer.rules.yml" "$dir"/*test*.yml)"
  cases="$(tail -n +2 <<<"$docs" | jq -r '.tests[].alert_rule_test[]? | "\(.alertname) \((.exp_alerts // []) | length)"')"
  alerts="$(head -n 1 <<<"$docs" | jq -r '.groups[].rules[] | select(.alert) | "\(.alert)\t\(.annotations.runbook // "")"')"
  [[ "$(grep -c . <<<"$alerts")" == "$(grep -c '^ *- alert: ' "$dir/sio-steer.rules.yml")" ]] ||
    fail "the alerts read from sio-steer.rules.yml are not its '- alert:' lines"
  while IFS=$'\t' read -r alert anchor; do
    [[ "$anchor" == docs/runbook.md#* ]] || fail "$alert: runbook annotation '$anchor' does not name a docs/runbook.md section"
    [[ -n "${anchors[${anchor#docs/runbook.md#}]:-}" ]] || fail "$alert: docs/runbook.md has no section '#${anchor#*#}'"
    grep -q "\b$alert\b" "$metrics" || fail "$alert is not listed in docs/metrics.md"
    grep -q "\b$alert\b" "$runbook" || fail "$alert is not in docs/runbook.md"
    fires="$(awk -v a="$alert" '$1 == a && $2 > 0' <<<"$cases" | wc -l)"
    quiet="$(awk -v a="$alert" '$1 == a && $2 == 0' <<<"$cases" | wc -l)"
    ((fires >= 1 && quiet >= 1)) || fail "$alert: $fires cases where it fires, $quiet where it stays quiet (want >= 1 each)"
    echo "check.sh: $alert: runbook $anchor; cases: $fires firing, $quiet quiet"
  done <<<"$alerts"
  return "$failed"
}

if [[ "${1:-}" != --self-test ]]; then
  ok=0
  rules_hold "$here" || ok=1
  documented "$here" "$repo/docs/runbook.md" "$repo/docs/metrics.md" || ok=1
  ((ok == 0)) && echo "check.sh: all alerts checked"
  exit "$ok"
fi

# --self-test: each broken copy must be caught.
work="$(mktemp -d /tmp/sio-steer-rules.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# broken CHECK NAME SED_ON_RULES [SED_ON_RUNBOOK [SED_ON_RECORDED]]: a copy with one change, which
# CHECK (rules_hold or documented) must refuse.
broken() {
  local check="$1"
  shift
  rm -rf "$work/copy" && mkdir -p "$work/copy" && cp "$here"/*.yml "$work/copy/"
  cp "$repo/docs/runbook.md" "$work/runbook.md"
  sed -i "$2" "$work/copy/sio-steer.rules.yml"
  [[ -z "${3:-}" ]] || sed -i "$3" "$work/runbook.md"
  [[ -z "${4:-}" ]] || sed -i "$4" "$work/copy/sio-steer.recorded.test.yml"
  if "$check" "$work/copy" "$work/runbook.md" "$repo/docs/metrics.md" >"$work/out" 2>&1; then
    cat "$work/out" >&2
    echo "check.sh: self-test: '$1' passed the checks" >&2
    exit 1
  fi
  echo "check.sh: self-test: '$1' refused: $(grep -m 1 -E 'alertname:|FAIL:' "$work/out" | sed 's/^ *//')"
}
# The copy itself passes (so that each refusal below is the change's doing).
rm -rf "$work/copy" && mkdir -p "$work/copy" && cp "$here"/*.yml "$work/copy/"
rules_hold "$work/copy" >"$work/out" 2>&1 && documented "$work/copy" "$repo/docs/runbook.md" "$repo/docs/metrics.md" >>"$work/out" 2>&1 ||
  { cat "$work/out" >&2; echo "check.sh: self-test: an unchanged copy fails" >&2; exit 1; }
# a restarted controller would page: its 2 minutes' grace gone
broken rules_hold "SioSteerNotFollowed without for: 2m" '/alert: SioSteerNotFollowed/,/for:/ s/for: 2m/for: 0s/'
# any polling alerts, the chosen kind too
broken rules_hold "SioSteerFollowingByPolling ignoring the reason" 's/mode="polling", reason!="asked"/mode="polling"/'
# a threshold off by a factor of ten
broken rules_hold "SioSteerSessionsNearCapacity at 9%" 's/> on (instance, job, port) 0.9 \* sio_steer_sessions_capacity/> on (instance, job, port) 0.09 * sio_steer_sessions_capacity/'
# the recorded series gone
broken rules_hold "no recorded series" '' '' '/recorded by record.sh: begin/,/recorded by record.sh: end/ { /^ *- series:/d; /^ *values:/d }'
# a runbook section that is not there
broken documented "a runbook annotation naming no section" 's|docs/runbook.md#siosteermovedfull|docs/runbook.md#moved-map-full|'
broken documented "a runbook section removed" '' 's/^### SioSteerScrapesFailing$/### Scrapes/'
echo "check.sh: self-test: every broken copy refused"
