#!/usr/bin/env bash
# The local demo, no Docker needed. It starts Kafka and ClickHouse, the four services and
# the demo backends (primary, secondary, candidate), drives a realistic traffic mix through
# the tap, and walks the candidate through the rollout stages shadow → 1 → 10 → 50 → 100,
# each gated by `shadowctl gate` on the verdict API, as a CD pipeline would.
#
#   deploy/local/demo.sh            release 1 of the candidate changes the price of every 20th
#                                   item, and posts an extra event to the inventory on every
#                                   10th: the shadow gate finds the price path systematic and
#                                   names the extra write, and stops it before any user sees it. Release 2 fixes that and adds
#                                   a field on purpose (`discount`): the shadow gate stops it
#                                   too, a person accepts the field with `shadowctl accept`,
#                                   and release 2 walks 1 → 10 → 50 → 100.
#   deploy/local/demo.sh --clean    the candidate behaves like the primary and reaches 100%
#
# Prometheus (http://127.0.0.1:19090/alerts) scrapes the four services and evaluates the alert
# rules of deploy/prometheus/rules; Alertmanager (http://127.0.0.1:19093) routes what fires
# to a webhook receiver that writes one line per alert to .local/demo/alerts.log. When the
# shadow gate fails release 1, the demo waits for ShadowdiffCandidateFailing to arrive there
# and prints it, as a person on call would get it.
#
# Every backend asks an inventory service about stock on each item read, through an egress
# tap of its own: the primary's forwards and records the calls; the secondary's and the
# candidate's are in stub mode and answer from the primary's recorded calls, so no shadow
# call reaches the inventory. The correlator compares each shadow's calls with the
# primary's.
#
# Each run uses its own topics and a fresh `shadowdiff_demo` database, so runs never mix.
set -euo pipefail

# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$repo"

regress_every=20
# 100 requests/s, for headroom: on a local broker aged by a day of test runs, 200 held both
# cores of a 2-core machine and the stubs' recordings came late (README, the demo).
rate="${DEMO_RATE:-100}"
stage_wait="${DEMO_STAGE_WAIT:-90s}"
case "${1:-}" in
  --clean) regress_every=0 ;;
  "") ;;
  *) echo "usage: $0 [--clean]" >&2; exit 2 ;;
esac

say() { printf '\n==> %s\n' "$*"; }

say "local Kafka and ClickHouse"
deploy/local/services.sh up
# Debian's Prometheus and Alertmanager. Their postinst starts the packaged services where an
# init system runs them (here policy-rc.d forbids it); the demo runs its own on other ports
# (19090, 19093), so a packaged one on 9090 and 9093 never clashes with it.
command -v prometheus >/dev/null || apt_install --no-install-recommends prometheus
command -v prometheus-alertmanager >/dev/null || apt_install --no-install-recommends prometheus-alertmanager

say "building shadowdiff"
cargo build --quiet -p shadowdiff-tap -p shadowdiff-mirror -p shadowdiff-correlator -p shadowdiff-verdict \
  -p shadowdiff-demo -p shadowctl
bin="$(target_dir)/debug"

logs="$repo/.local/demo"
mkdir -p "$logs"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

run="demo-$(date +%s)"
export SHADOWDIFF_TOPICS_REQUESTS="$run.requests"
export SHADOWDIFF_TOPICS_RESPONSES="$run.responses"
export SHADOWDIFF_TOPICS_DEAD_LETTER="$run.dead-letter"
export SHADOWDIFF_TOPICS_OUTBOUND="$run.outbound"
export SHADOWDIFF_TOPICS_PROFILES="$run.profiles"
export SHADOWDIFF_TOPICS_PARTITIONS=6
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
curl -fsS "$ch_url/" --data-binary "DROP DATABASE IF EXISTS shadowdiff_demo" >/dev/null

start() {
  local name="$1"; shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
}

wait_http() {
  local what="$1" url="$2"
  poll 30 http_ok "$url" && return 0
  echo "$what did not come up; its log:" >&2
  tail -20 "$logs/$what.log" >&2
  exit 1
}

say "starting the demo backends, then verdict, correlator, mirror and tap (logs in .local/demo/)"
# Every backend shows honest noise: a timestamp and trace id per response, its instance name
# in a header, and item variants in random order. The candidate also changes the price of
# every 20th item read by /items/{n}, unless --clean.
noise=(--noise --shuffle)
inventory=(--inventory http://127.0.0.1:18084)
start inventory "$bin/shadowdiff-demo" inventory --listen 127.0.0.1:18084
for who in primary secondary candidate; do
  start "egress-$who" "$bin/shadowdiff-tap" --config "deploy/local/config/egress-$who.toml"
done
start primary "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18081 "${noise[@]}" --instance primary-0 \
  "${inventory[@]}" --egress http://127.0.0.1:18085
start secondary "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18083 "${noise[@]}" --instance secondary-0 \
  "${inventory[@]}" --egress http://127.0.0.1:18086
# The candidate's backend, one release at a time: its arguments after the common ones.
candidate() {
  start candidate "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18082 "${noise[@]}" --instance candidate-0 \
    "${inventory[@]}" --egress http://127.0.0.1:18087 "$@"
  candidate_pid="${pids[-1]}"
}
if [ "$regress_every" = 0 ]; then
  candidate
else
  candidate --regress-every "$regress_every" --extra-write-every 10
fi
for service in verdict correlator mirror tap; do
  start "$service" "$bin/shadowdiff-$service" --config "deploy/local/config/$service.toml"
done
wait_http inventory http://127.0.0.1:18084/healthz
wait_http egress-primary http://127.0.0.1:19468/healthz
wait_http egress-secondary http://127.0.0.1:19469/healthz
wait_http egress-candidate http://127.0.0.1:19470/healthz
wait_http primary http://127.0.0.1:18081/healthz
wait_http secondary http://127.0.0.1:18083/healthz
wait_http candidate http://127.0.0.1:18082/healthz
wait_http verdict http://127.0.0.1:19467/healthz
wait_http correlator http://127.0.0.1:19466/healthz
wait_http mirror http://127.0.0.1:19465/healthz
wait_http tap http://127.0.0.1:19464/healthz

say "Prometheus on 127.0.0.1:19090 and Alertmanager on 127.0.0.1:19093, alerts to .local/demo/alerts.log"
for url in http://127.0.0.1:19090/-/ready http://127.0.0.1:19093/-/ready http://127.0.0.1:19095/healthz; do
  if http_ok "$url"; then die "something already answers on $url: stop it (an earlier demo still running?)"; fi
done
# Fresh data each run: an earlier run's alerts and notification log would blur this one's.
rm -rf "$logs/prometheus" "$logs/alertmanager"
start alerts "$bin/shadowdiff-demo" alerts --listen 127.0.0.1:19095
start alertmanager prometheus-alertmanager --config.file=deploy/local/config/alertmanager.yml \
  --storage.path="$logs/alertmanager" --web.listen-address=127.0.0.1:19093 --cluster.listen-address=
start prometheus prometheus --config.file=deploy/local/config/prometheus.yml \
  --storage.tsdb.path="$logs/prometheus" --web.listen-address=127.0.0.1:19090
wait_http alerts http://127.0.0.1:19095/healthz
wait_http alertmanager http://127.0.0.1:19093/-/ready
wait_http prometheus http://127.0.0.1:19090/-/ready

export SHADOWCTL_VERDICT=http://127.0.0.1:18090 SHADOWCTL_MIRROR=http://127.0.0.1:19465
# The APIs want tokens: config/verdict.toml and config/mirror.toml hold these tokens' digests.
# Demo values, public in this file: real tokens come from a secret store.
export SHADOWCTL_TOKEN=shadowdiff-local-demo-reader SHADOWCTL_MIRROR_TOKEN=shadowdiff-local-demo-operator
shadowctl() { "$bin/shadowctl" "$@"; }

say "driving $rate requests/s through the tap: item, search and cart reads, and writes the mirror never replays"
start traffic "$bin/shadowdiff-demo" mix --tap http://127.0.0.1:18080 --prefix "$run" --rate "$rate"

# The mirror profile, applied once: the CD system never changes it between steps. Each
# step's gate names the stage (its policy) and the release (its rows).
profile() {
  cat >"$logs/profile.toml" <<EOT
id = "demo"
stage = "$1"

[[targets]]
name = "secondary"
role = "secondary"
base_url = "http://127.0.0.1:18083"
timeout_ms = 5000

[[targets]]
name = "candidate"
role = "candidate"
base_url = "http://127.0.0.1:18082"
timeout_ms = 5000
EOT
  shadowctl profiles apply "$logs/profile.toml" >/dev/null
}

profile shadow

# Walks release $1 through the stages, each gated as a CD system would; sets `reached` to
# the last stage passed, `stage` to the one it stopped at and `stopped` to why (fail,
# inconclusive, or empty when it reached 100).
rollout() {
  local release="$1" verdict
  reached=""
  stopped=""
  for stage in shadow 1 10 50 100; do
    say "stage $stage: shadowctl gate --candidate candidate --revision $release --stage $stage"
    set +e
    shadowctl gate --candidate candidate --revision "$release" --stage "$stage" --wait "$stage_wait" --interval 2s
    verdict=$?
    set -e
    case "$verdict" in
      0) reached="$stage"; echo "    stage $stage passed: the CD system may shift traffic on" ;;
      1) stopped=fail; echo "    stage $stage FAILED: the CD system stops here and rolls back to the primary"; return ;;
      2) stopped=inconclusive; echo "    stage $stage still inconclusive after $stage_wait: the CD system pauses for a person"; return ;;
      *) echo "    shadowctl gate could not run (exit $verdict)" >&2; exit 1 ;;
    esac
  done
}

# The alert a person on call gets when a gate fails: waits (up to 60 s: the verdict
# service's gauges, Prometheus's scrape and evaluation and Alertmanager's group_wait, each a
# few seconds) for ShadowdiffCandidateFailing to reach the receiver's log, and prints it.
show_alert() {
  say "the alert: Prometheus fires ShadowdiffCandidateFailing, Alertmanager delivers it"
  if poll 60 grep -q "^FIRING ShadowdiffCandidateFailing .*candidate=candidate" "$logs/alerts.log"; then
    grep "^FIRING ShadowdiffCandidateFailing .*candidate=candidate" "$logs/alerts.log" | tail -1 | sed 's/^/    /'
  else
    echo "    no alert within 60 s; see http://127.0.0.1:19090/alerts and $logs/prometheus.log" >&2
  fi
}

# Whether the mirror's circuit to the candidate is closed: it replays to it again.
candidate_replayed() {
  curl -fsS -H "Authorization: Bearer $SHADOWCTL_MIRROR_TOKEN" http://127.0.0.1:19465/v1/profiles/demo/status 2>/dev/null |
    grep -q '"name":"candidate"[^}]*"circuit":"closed"'
}

# Why release $1 stopped: the verdict, and one divergent request in detail.
explain() {
  local release="$1"
  say "why stage $stage did not pass"
  shadowctl verdict --candidate candidate --revision "$release" --stage "$stage"
  sample="$(curl -fsS "$ch_url/" --data-binary \
    "SELECT request_id FROM shadowdiff_demo.samples FINAL WHERE deployment = 'candidate' ORDER BY ts DESC LIMIT 1")"
  if [ -n "$sample" ]; then
    say "one divergent request, shadowctl diff $sample"
    shadowctl diff "$sample"
    drill="http://127.0.0.1:18090/exchanges/$sample"
    # The page wants the read token too: a browser signs in to the console with it, and this
    # fetches the page with it.
    page="$logs/exchange-$sample.html"
    curl -fsS -H "Authorization: Bearer $SHADOWCTL_TOKEN" -o "$page" "$drill"
  fi
}

# The release under test, as a CD system names it (a pod-template hash, a commit): its
# verdicts cover only the comparisons made since the first gate asked about it.
release="$run-1"
rollout "$release"
if [ "$stopped" = fail ]; then
  show_alert
fi
if [ "$reached" != 100 ]; then
  explain "$release"
fi

if [ "$regress_every" != 0 ] && [ "$reached" != 100 ]; then
  release="$run-2"
  say "release 2: the price fix, no extra write, and a new field, discount, added on purpose"
  kill "$candidate_pid"
  wait "$candidate_pid" 2>/dev/null || true
  candidate --add-field discount
  wait_http candidate http://127.0.0.1:18082/healthz
  # While it restarted, the mirror's replays to it failed and opened its circuit: the new
  # release is judged from when the mirror reaches it again, as a CD system waits for the
  # new pods to be ready before its first gate.
  if ! poll 30 candidate_replayed; then die "the mirror does not reach the new candidate; see $logs/mirror.log"; fi
  rollout "$release"
  if [ "$stage" = shadow ] && [ "$reached" != 100 ]; then
    say "the shadow gate names the new field; the team meant it, so a person with the write scope accepts it"
    # Demo values, public in this file, like the reader's: the operator token holds write.
    for accept in "/items/{id} discount" "/search items[*].discount"; do
      read -r route path <<<"$accept"
      SHADOWCTL_TOKEN=shadowdiff-local-demo-operator shadowctl accept --candidate candidate \
        --route "$route" --path "$path" --reason "discount badge ships with release 2" --expires 7d
    done
    rollout "$release"
  fi
  if [ "$reached" != 100 ]; then
    explain "$release"
  fi
fi

if [ "$reached" = 100 ]; then
  say "release ${release##*-} of the candidate passed every stage and now takes all the traffic"
fi

cat <<EOT

The rows stay in ClickHouse (database shadowdiff_demo). For example:
  clickhouse-client --database shadowdiff_demo \\
    --query "SELECT path, kind, noise, count() AS n FROM differences FINAL WHERE role = 'candidate' GROUP BY path, kind, noise ORDER BY n DESC"
EOT
cat <<EOT

Alerts: Prometheus http://127.0.0.1:19090/alerts, Alertmanager http://127.0.0.1:19093,
and every alert delivered, one line each, in $logs/alerts.log.
EOT
cat <<EOT

Console: http://127.0.0.1:18090/ (candidates, comparisons, profiles). Sign in with the token
shadowdiff-local-demo-operator to accept differences and change profiles, or
shadowdiff-local-demo-reader to look.
EOT
if [ -n "${drill:-}" ]; then
  echo "Drill-down page, saved: file://$page"
  echo "Live: $drill (in the console), or curl -H \"Authorization: Bearer $SHADOWCTL_TOKEN\" $drill"
fi
if [ -t 0 ]; then
  echo "The services keep running so you can ask them more; press Enter to stop them."
  read -r _
fi
