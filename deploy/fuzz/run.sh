#!/usr/bin/env bash
# Runs every property target of the parsers and redaction that face untrusted input, at
# CASES inputs per property (default 1,000,000), one target at a time, and prints a table:
# target, inputs run, crashes (failing properties), wall time. Exits non-zero on any crash
# or timeout.
#
#   deploy/fuzz/run.sh                      # 1M inputs per property, every target
#   CASES=100000 deploy/fuzz/run.sh codec   # fewer inputs, one target
#   LIMIT_SECS=600 deploy/fuzz/run.sh       # per-target time limit (default 3600)
#
# A failing property prints its shrunk input and saves it in the test file's
# *.proptest-regressions beside it, so every later `cargo test` replays it first.
#
# Builds optimised test binaries without the release profile's fat LTO (which would add
# many minutes of linking for no change in what is tested); overflow checks stay off, as
# in the services' release builds. `cargo test` runs the same properties at 256 inputs
# in debug, overflow checks on.
set -euo pipefail

log_tag=fuzz
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$repo"
CASES="${CASES:-1000000}"
LIMIT_SECS="${LIMIT_SECS:-3600}"
LOGS="${LOGS:-target/fuzz}"

# name  package  test file (services/<crate>/tests/<file>.rs)
TARGETS=(
  "codec      shadowdiff-core     codec_properties"
  "diff       shadowdiff-core     diff_properties"
  "redaction  shadowdiff-core     redact_properties"
  "profile    shadowdiff-mirror   profile_properties"
  "config     shadowdiff-runtime  config_properties"
)

selected=()
for t in "${TARGETS[@]}"; do
  read -r name _ _ <<<"$t"
  if [[ $# -eq 0 ]] || [[ " $* " == *" $name "* ]]; then selected+=("$t"); fi
done
if [[ ${#selected[@]} -eq 0 ]]; then
  log "no target named $*; targets: codec diff redaction profile config"
  exit 2
fi

export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_INCREMENTAL=false
build_args=()
for t in "${selected[@]}"; do
  read -r _ package file <<<"$t"
  build_args+=(-p "$package" --test "$file")
done
log "building ${#selected[@]} target(s) in release mode..."
cargo test --release --no-run "${build_args[@]}" 2>&1 | grep -E '^(error|warning: unused)|Executable' >&2 || true

mkdir -p "$LOGS"
rows=()
failed=0
for t in "${selected[@]}"; do
  read -r name package file <<<"$t"
  # The binary cargo just built, found the way cargo reports it.
  binary="$(cargo test --release --no-run -p "$package" --test "$file" --message-format=json 2>/dev/null \
    | grep -F "\"name\":\"$file\"" | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
  if [[ -z "$binary" || ! -x "$binary" ]]; then
    log "$name: no test binary (build failed?)"
    rows+=("$name|-|build failed|-")
    failed=1
    continue
  fi
  logfile="$LOGS/$name.log"
  log "running $name: $CASES inputs per property, at most ${LIMIT_SECS}s ($logfile)"
  start=$(date +%s)
  set +e
  # The test binary runs from its crate's directory, as under cargo, so that failures
  # land in the regression files beside the tests.
  (cd "services/${package#shadowdiff-}" && PROPTEST_CASES="$CASES" timeout "$LIMIT_SECS" "$binary" \
    --test-threads 1 --skip clients_build --skip a_profile_at) >"$logfile" 2>&1
  status=$?
  set -e
  secs=$(($(date +%s) - start))
  passed=$(grep -c '^test .* \.\.\. ok$' "$logfile" || true)
  failing=$(grep -c '^test .* \.\.\. FAILED$' "$logfile" || true)
  # A failing property reports how many inputs passed before the failing one.
  before_failure=$(awk '$1 == "successes:" { n += $2 } END { print n + 0 }' "$logfile")
  inputs=$((passed * CASES + before_failure + failing))
  crashes="$failing"
  if [[ $status -eq 124 ]]; then
    crashes="timeout after ${LIMIT_SECS}s (${passed} properties done)"
    inputs=">=$((passed * CASES))"
    failed=1
  elif [[ $status -ne 0 && $failing -eq 0 ]]; then
    # Killed by a signal (a stack overflow aborts) or otherwise died: a crash.
    crashes="died (exit $status)"
    failed=1
  elif [[ $failing -ne 0 ]]; then
    failed=1
  fi
  rows+=("$name|$inputs|$crashes|${secs}s")
done

printf '\n%-10s  %14s  %-40s  %9s\n' target "inputs run" crashes "wall time"
for row in "${rows[@]}"; do
  IFS='|' read -r name inputs crashes secs <<<"$row"
  printf '%-10s  %14s  %-40s  %9s\n' "$name" "$inputs" "$crashes" "$secs"
done
if [[ $failed -ne 0 ]]; then
  log "failures: see the logs in $LOGS"
fi
exit "$failed"
