#!/usr/bin/env bash
# The local demo, no Docker needed. It starts Kafka and ClickHouse, the four services and
# the demo backends (primary, secondary, candidate), drives a realistic traffic mix through
# the tap, and walks the candidate through the rollout stages shadow → 1 → 10 → 50 → 100,
# each gated by `shadowctl gate` on the verdict API, as a CD pipeline would.
#
#   deploy/local/demo.sh            the candidate changes the price of every 20th item: the
#                                   shadow gate finds the path systematic and stops it
#   deploy/local/demo.sh --clean    the candidate behaves like the primary and reaches 100%
#
# Each run uses its own topics and a fresh `shadowdiff_demo` database, so runs never mix.
set -euo pipefail

# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$repo"

regress_every=20
rate="${DEMO_RATE:-200}"
stage_wait="${DEMO_STAGE_WAIT:-90s}"
case "${1:-}" in
  --clean) regress_every=0 ;;
  "") ;;
  *) echo "usage: $0 [--clean]" >&2; exit 2 ;;
esac

say() { printf '\n==> %s\n' "$*"; }

say "local Kafka and ClickHouse"
deploy/local/services.sh up

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
start primary "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18081 "${noise[@]}" --instance primary-0
start secondary "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18083 "${noise[@]}" --instance secondary-0
start candidate "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18082 "${noise[@]}" --instance candidate-0 \
  --regress-every "$regress_every"
for service in verdict correlator mirror tap; do
  start "$service" "$bin/shadowdiff-$service" --config "deploy/local/config/$service.toml"
done
wait_http primary http://127.0.0.1:18081/healthz
wait_http secondary http://127.0.0.1:18083/healthz
wait_http candidate http://127.0.0.1:18082/healthz
wait_http verdict http://127.0.0.1:19467/healthz
wait_http correlator http://127.0.0.1:19466/healthz
wait_http mirror http://127.0.0.1:19465/healthz
wait_http tap http://127.0.0.1:19464/healthz

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
# The release under test, as a CD system names it (a pod-template hash, a commit): its
# verdicts cover only the comparisons made since the first gate asked about it.
release="$run"
reached=""
for stage in shadow 1 10 50 100; do
  say "stage $stage: shadowctl gate --candidate candidate --revision $release --stage $stage"
  set +e
  shadowctl gate --candidate candidate --revision "$release" --stage "$stage" --wait "$stage_wait" --interval 2s
  verdict=$?
  set -e
  case "$verdict" in
    0) reached="$stage"; echo "    stage $stage passed: the CD system may shift traffic on" ;;
    1) echo "    stage $stage FAILED: the CD system stops here and rolls back to the primary"; break ;;
    2) echo "    stage $stage still inconclusive after $stage_wait: the CD system pauses for a person"; break ;;
    *) echo "    shadowctl gate could not run (exit $verdict)" >&2; exit 1 ;;
  esac
done

if [ "$reached" = 100 ]; then
  say "the candidate passed every stage and now takes all the traffic"
else
  say "why stage $stage did not pass"
  shadowctl verdict --candidate candidate --revision "$release" --stage "$stage"
  sample="$(curl -fsS "$ch_url/" --data-binary \
    "SELECT request_id FROM shadowdiff_demo.samples FINAL WHERE deployment = 'candidate' ORDER BY ts DESC LIMIT 1")"
  if [ -n "$sample" ]; then
    say "one divergent request, shadowctl diff $sample"
    shadowctl diff "$sample"
    drill="http://127.0.0.1:18090/exchanges/$sample"
    # The page wants the read token too; a browser would come through an SSO proxy
    # ([auth.proxy]), which the demo has none of, so it fetches the page with the token.
    page="$logs/exchange-$sample.html"
    curl -fsS -H "Authorization: Bearer $SHADOWCTL_TOKEN" -o "$page" "$drill"
  fi
fi

cat <<EOT

The rows stay in ClickHouse (database shadowdiff_demo). For example:
  clickhouse-client --database shadowdiff_demo \\
    --query "SELECT path, kind, noise, count() AS n FROM differences FINAL WHERE role = 'candidate' GROUP BY path, kind, noise ORDER BY n DESC"
EOT
if [ -n "${drill:-}" ]; then
  echo
  echo "Drill-down page, saved: file://$page"
  echo "Live, with the demo's read token: curl -H \"Authorization: Bearer $SHADOWCTL_TOKEN\" $drill"
fi
if [ -n "${drill:-}" ] && [ -t 0 ]; then
  echo "The services keep running so you can ask them more; press Enter to stop them."
  read -r _
fi
