#!/usr/bin/env bash
# The local demo, no Docker needed: starts Kafka and ClickHouse, the four services and the
# demo backends, sends traffic through the tap, and prints the candidate's verdict.
#
#   deploy/local/demo.sh            the candidate has a regression on every 5th item
#   deploy/local/demo.sh --clean    the candidate behaves exactly like the primary
#
# Each run uses its own topics and a fresh `shadowdiff_demo` database, so runs never mix.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

regress_every=5
reads="${DEMO_READS:-200}"
writes="${DEMO_WRITES:-10}"
case "${1:-}" in
  --clean) regress_every=0 ;;
  "") ;;
  *) echo "usage: $0 [--clean]" >&2; exit 2 ;;
esac

say() { printf '\n==> %s\n' "$*"; }

say "local Kafka and ClickHouse"
deploy/local/services.sh up

say "building shadowdiff"
cargo build --quiet -p shadowdiff-tap -p shadowdiff-mirror -p shadowdiff-correlator -p shadowdiff-verdict -p shadowdiff-demo
bin="${CARGO_TARGET_DIR:-$repo/target}/debug"

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
export SHADOWDIFF_TOPICS_PARTITIONS=6
curl -fsS "${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}/" --data-binary "DROP DATABASE IF EXISTS shadowdiff_demo" >/dev/null

start() {
  local name="$1"; shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
}

wait_http() {
  local what="$1" url="$2"
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$what did not come up; its log:" >&2
  tail -20 "$logs/$what.log" >&2
  exit 1
}

say "starting demo backends, then verdict, correlator, mirror and tap (logs in .local/demo/)"
# Every backend adds a per-response timestamp (honest noise); the candidate also changes
# the price of every 5th item unless --clean.
start primary "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18081 --noise
start secondary "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18083 --noise
start candidate "$bin/shadowdiff-demo" backend --listen 127.0.0.1:18082 --noise --regress-every "$regress_every"
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

say "sending $reads reads and $writes writes through the tap (writes are never mirrored)"
"$bin/shadowdiff-demo" traffic --tap http://127.0.0.1:18080 --prefix "$run" --reads "$reads" --writes "$writes"

say "waiting for the comparisons to land in ClickHouse"
"$bin/shadowdiff-demo" report --verdict http://127.0.0.1:18090 --candidate candidate --expect "$reads"

cat <<EOT

The services stop with this script; the rows stay in ClickHouse. For example:
  clickhouse-client --database shadowdiff_demo \\
    --query "SELECT path, kind, noise, count() AS n FROM differences FINAL WHERE role = 'candidate' GROUP BY path, kind, noise ORDER BY n DESC"
EOT
