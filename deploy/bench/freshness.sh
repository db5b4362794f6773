#!/usr/bin/env bash
# How fresh the verdict's rows are under the demo's load: the time from the primary's answer
# reaching the client to the candidate's `exchanges` row being visible in ClickHouse, p50 and
# p99, and what the tap's linger, the correlator's window, flush interval, settle time and
# fetch wait each contribute. The product's goal: p99 at most 2 s with the demo's settings.
#
# The demo's pipeline runs as deploy/local/demo.sh runs it, from its configs
# (deploy/local/config/*.toml, their ports moved by PORT_OFFSET so a running demo is left
# alone), release builds: the inventory and the three demo backends (noise, shuffled
# variants; the candidate without a regression), each backend's egress tap (the shadows' in
# stub mode), the mirror, the correlator and the tap. `shadowdiff-demo freshness` sends the
# demo's mix through the tap at its rate with known request ids, times each read (the
# requests the mirror replays) when its answer's body arrives, and asks ClickHouse every
# POLL_MS which answered reads have a candidate row (`SELECT request_id FROM exchanges WHERE
# deployment = 'candidate' AND request_id IN (...)`; without FINAL, which shows the same rows
# at the same moment, slower). Each read is timed by the start of the first poll that finds
# it: POLL_MS is the resolution. The first WARMUP_SECS of requests are sent, not timed.
#
# One run per setting (SETTINGS), all in this script run, each with its own topics,
# consumer groups, database, tap, egress taps, mirror and correlator:
#   default   the demo's configs as written: the tap's linger 200 ms (its default), the
#             egress taps' 5 ms, the correlator's window_ms 3000, flush_interval_ms 1000 (its
#             default), [correlator.outbound] settle_ms 250, and its 10 ms fetches
#   linger    the tap's [kafka] linger_ms = LINGER_MS
#   window    the correlator's window_ms = WINDOW_MS. A whole exchange (request, primary and
#             every expected shadow) is taken out of the join as its last leg arrives
#             (services/correlator/src/join.rs, `take_complete`); the window only ends an
#             exchange still missing a leg, so it should change nothing here.
#   flush     the correlator's flush_interval_ms = FLUSH_INTERVAL_MS: rows are written, and
#             settled exchanges taken out of the join, on its tick
#   settle    the correlator's [correlator.outbound] settle_ms = SETTLE_MS: how long a whole
#             exchange waits for downstream calls still on their way (0: calls that come after
#             their exchange's answers are dropped as late, and counted)
#   fetch     the correlator's consumer fetch.wait.max.ms = FETCH_WAIT_MS ([kafka.properties])
#
#   deploy/bench/freshness.sh                                 every setting, 40 s each
#   SETTINGS=default DURATION_SECS=20 deploy/bench/freshness.sh   a quick smoke run
#
# Knobs (environment):
#   SETTINGS            the runs, in order ("default linger window flush settle fetch")
#   RATE                requests per second through the tap (200: twice demo.sh's DEMO_RATE)
#   DURATION_SECS       seconds each run sends requests, the warm-up included (40)
#   WARMUP_SECS         seconds of requests sent first and not timed (5)
#   POLL_MS             how often ClickHouse is asked for the rows: the resolution (50)
#   WAIT_SECS           how long the last rows are waited for after the last answer (30)
#   LINGER_MS           the tap's linger in the linger run (5)
#   WINDOW_MS           the correlator's window in the window run (30000, its default)
#   FLUSH_INTERVAL_MS   the correlator's flush interval in the flush run (200)
#   SETTLE_MS           the correlator's settle time in the settle run (0)
#   FETCH_WAIT_MS       the correlator's fetch.wait.max.ms in the fetch run (500, librdkafka's
#                       default, where the correlator's own is 10)
#   PORT_OFFSET         added to every port of the demo's configs (10000)
#   SHADOWDIFF_KAFKA_BROKERS  the broker, started by deploy/local/services.sh (127.0.0.1:9092)
#   SHADOWDIFF_CLICKHOUSE_URL the ClickHouse HTTP endpoint (http://127.0.0.1:8123)
#   BENCH_KEEP=1        keep the temp dir (configs, logs, metrics) for a look
#
# The table goes to stdout and to deploy/bench/results-freshness.md. A benchmark, not a test:
# it fails when the pipeline does not come up, never because rows were late.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

knobs_only "$@"

read -r -a settings <<<"${SETTINGS:-default linger window flush settle fetch}"
rate="${RATE:-200}"
duration_secs="${DURATION_SECS:-40}"
warmup_secs="${WARMUP_SECS:-5}"
poll_ms="${POLL_MS:-50}"
wait_secs="${WAIT_SECS:-30}"
linger_ms="${LINGER_MS:-5}"
window_ms="${WINDOW_MS:-30000}"
flush_interval_ms="${FLUSH_INTERVAL_MS:-200}"
settle_ms="${SETTLE_MS:-0}"
fetch_wait_ms="${FETCH_WAIT_MS:-500}"
offset="${PORT_OFFSET:-10000}"
brokers="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
results="$here/results-freshness.md"
config="$repo/deploy/local/config"

# What each setting overrides, as SHADOWDIFF_* variables, for the tap (tap_env) and the
# correlator (correlator_env); what it means, for the table.
declare -A tap_env correlator_env means
means[default]="the demo's configs as written"
tap_env[linger]="SHADOWDIFF_KAFKA_LINGER_MS=$linger_ms"; means[linger]="tap \`linger_ms = $linger_ms\` (200)"
correlator_env[window]="SHADOWDIFF_CORRELATOR_WINDOW_MS=$window_ms"; means[window]="correlator \`window_ms = $window_ms\` (3000)"
correlator_env[flush]="SHADOWDIFF_CORRELATOR_FLUSH_INTERVAL_MS=$flush_interval_ms"
means[flush]="correlator \`flush_interval_ms = $flush_interval_ms\` (1000)"
correlator_env[settle]="SHADOWDIFF_CORRELATOR_OUTBOUND__SETTLE_MS=$settle_ms"; means[settle]="correlator \`settle_ms = $settle_ms\` (250)"
correlator_env[fetch]="SHADOWDIFF_KAFKA_PROPERTIES__FETCH.WAIT.MAX.MS=$fetch_wait_ms"
means[fetch]="correlator \`fetch.wait.max.ms = $fetch_wait_ms\` (10)"
for s in "${settings[@]}"; do [ -n "${means[$s]:-}" ] || die "SETTINGS: $s is not one of ${!means[*]}"; done

# One run at a time: a second would measure the first.
run_claim "$repo/.local/bench/freshness.lock" "$repo/.local/bench/freshness-running"

services_up
command -v tansu >/dev/null || die "tansu (installed by deploy/local/services.sh) is needed to delete topics"
if [ -s "$run_record" ]; then log "cleaning up what an earlier, interrupted run left behind"; fi
stop_recorded
run_tmpdir shadowdiff-bench-freshness

# The demo's ports, and where this run has them.
port() { echo $(($1 + offset)); }
demo_ports=(18080 18081 18082 18083 18084 18085 18086 18087 19464 19465 19466 19468 19469 19470)
for p in "${demo_ports[@]}"; do
  tcp_open 127.0.0.1 "$(port "$p")" && die "127.0.0.1:$(port "$p") is in use; set PORT_OFFSET to move this run's ports"
done
# conf NAME: the demo's config NAME with its ports moved, in $tmp.
conf() {
  local p expr=()
  for p in "${demo_ports[@]}"; do expr+=(-e "s/127\.0\.0\.1:$p\b/127.0.0.1:$(port "$p")/g"); done
  sed "${expr[@]}" "$config/$1.toml" >"$tmp/$1.toml"
  echo "$tmp/$1.toml"
}

log "building the tap, mirror, correlator and demo (release)"
cargo build --release --quiet -p shadowdiff-tap -p shadowdiff-mirror -p shadowdiff-correlator -p shadowdiff-demo
bin_dir="$(target_dir)/release"
# Through links in $tmp, so every server's command line names the run's temp dir (lib.sh's
# `ours`) and an interrupted run's are stopped by the next.
for b in tap mirror correlator demo; do
  [ -x "$bin_dir/shadowdiff-$b" ] || die "no $bin_dir/shadowdiff-$b after the build"
  ln -s "$bin_dir/shadowdiff-$b" "$tmp/shadowdiff-$b"
done

clk_tck="$(getconf CLK_TCK)"
ch_pid="$(pid_of clickhouse)"; broker_pid="$(pid_of kafka)"
stamp="$(date +%Y%m%d%H%M%S)"

# start NAME COMMAND...: a server, its log in $tmp/NAME.log; its pid in started_pid.
start() {
  local name="$1"
  shift
  "$@" >"$tmp/$name.log" 2>&1 9>&- &
  started_pid=$!
  remember_pid "$started_pid"
}
wait_up() {
  poll 30 http_ok "$2" && return 0
  tail -20 "$tmp/$1.log" >&2
  die "$1 did not come up"
}

# The inventory and the backends keep no state between runs: started once.
log "the inventory and the demo backends"
inventory=(--inventory "http://127.0.0.1:$(port 18084)")
start inventory "$tmp/shadowdiff-demo" inventory --listen "127.0.0.1:$(port 18084)"
start primary "$tmp/shadowdiff-demo" backend --listen "127.0.0.1:$(port 18081)" --noise --shuffle \
  --instance primary-0 "${inventory[@]}" --egress "http://127.0.0.1:$(port 18085)"
start secondary "$tmp/shadowdiff-demo" backend --listen "127.0.0.1:$(port 18083)" --noise --shuffle \
  --instance secondary-0 "${inventory[@]}" --egress "http://127.0.0.1:$(port 18086)"
start candidate "$tmp/shadowdiff-demo" backend --listen "127.0.0.1:$(port 18082)" --noise --shuffle \
  --instance candidate-0 "${inventory[@]}" --egress "http://127.0.0.1:$(port 18087)"
for b in inventory:18084 primary:18081 secondary:18083 candidate:18082; do
  wait_up "${b%%:*}" "http://127.0.0.1:$(port "${b#*:}")/healthz"
done

declare -A stat

# run SETTING: the pipeline with SETTING's overrides, the driver through it, its figures in
# stat[SETTING:*].
run() {
  local setting="$1" run_id="bench-fresh-$stamp-$$-$1" database="bench_fresh_${stamp}_$$_$1" t
  local pids=() common=() who
  for t in requests responses dead-letter outbound profiles; do remember topic "$run_id.$t"; done
  remember database "$database"
  ch_query "DROP DATABASE IF EXISTS $database" >/dev/null
  # The services create the topics (6 partitions; the profiles topic compacted), as in the demo.
  common=(env "${clean_env[@]}" SHADOWDIFF_TOPICS_REQUESTS="$run_id.requests" SHADOWDIFF_TOPICS_RESPONSES="$run_id.responses"
    SHADOWDIFF_TOPICS_DEAD_LETTER="$run_id.dead-letter" SHADOWDIFF_TOPICS_OUTBOUND="$run_id.outbound"
    SHADOWDIFF_TOPICS_PROFILES="$run_id.profiles" SHADOWDIFF_TOPICS_PARTITIONS=6 SHADOWDIFF_KAFKA_BROKERS="$brokers")
  log "$setting: ${means[$setting]}; starting the egress taps, correlator, mirror and tap"
  for who in primary secondary candidate; do
    start "$setting-egress-$who" "${common[@]}" "$tmp/shadowdiff-tap" --config "$(conf "egress-$who")"
    pids+=("$started_pid")
  done
  # shellcheck disable=SC2086 # an override is one word, or none
  start "$setting-correlator" "${common[@]}" SHADOWDIFF_CORRELATOR_GROUP_ID="$run_id-correlator" SHADOWDIFF_CLICKHOUSE_URL="$ch_url" \
    SHADOWDIFF_CLICKHOUSE_DATABASE="$database" ${correlator_env[$setting]:-} "$tmp/shadowdiff-correlator" --config "$(conf correlator)"
  pids+=("$started_pid")
  start "$setting-mirror" "${common[@]}" SHADOWDIFF_MIRROR_GROUP_ID="$run_id-mirror" "$tmp/shadowdiff-mirror" --config "$(conf mirror)"
  pids+=("$started_pid")
  # shellcheck disable=SC2086
  start "$setting-tap" "${common[@]}" ${tap_env[$setting]:-} "$tmp/shadowdiff-tap" --config "$(conf tap)"
  pids+=("$started_pid")
  for who in egress-primary:19468 egress-secondary:19469 egress-candidate:19470 correlator:19466 mirror:19465 tap:19464; do
    wait_up "$setting-${who%%:*}" "http://127.0.0.1:$(port "${who#*:}")/healthz"
  done

  # Ready when a read goes all the way: the mirror and the correlator have their partitions.
  local i=0
  through() {
    i=$((i + 1))
    curl -fsS -o /dev/null --max-time 2 -H "x-request-id: $run_id-probe-$i" "http://127.0.0.1:$(port 18080)/items/$i" || true
    sleep 0.5
    [ "$(ch_query "SELECT count() FROM $database.exchanges WHERE deployment = 'candidate'" 2>/dev/null || echo 0)" -gt 0 ]
  }
  poll 60 through || die "$setting: no candidate row 60 s after start (logs in $tmp with BENCH_KEEP=1)"

  local ch_before broker_before busy_before all_before out
  ch_before="$(ticks_or_zero "$ch_pid")"; broker_before="$(ticks_or_zero "$broker_pid")"
  read -r busy_before all_before < <(machine_ticks)
  log "$setting: $rate requests/s for ${duration_secs}s (the first ${warmup_secs}s not timed)"
  out="$("$tmp/shadowdiff-demo" freshness --tap "http://127.0.0.1:$(port 18080)" --clickhouse "$ch_url" \
    --database "$database" --prefix "$run_id" --rate "$rate" --duration-secs "$duration_secs" \
    --warmup-secs "$warmup_secs" --poll-ms "$poll_ms" --wait-secs "$wait_secs" 9>&-)" || die "$setting: the driver failed"
  local ch_after broker_after busy_after all_after
  ch_after="$(ticks_or_zero "$ch_pid")"; broker_after="$(ticks_or_zero "$broker_pid")"
  read -r busy_after all_after < <(machine_ticks)
  log "$setting: $out"
  local key
  for key in timed visible missing failed writes p50_ms p90_ms p99_ms max_ms polls slowest_poll_ms; do
    stat[$setting:$key]="$(sed -n "s/.*\b$key=\([^ ]*\).*/\1/p" <<<"$out")"
  done
  stat[$setting:ch_cores]="$(calc "printf \"%.2f\", ($ch_after - $ch_before) / ($all_after - $all_before) * $(nproc)")"
  stat[$setting:broker_cores]="$(calc "printf \"%.2f\", ($broker_after - $broker_before) / ($all_after - $all_before) * $(nproc)")"
  stat[$setting:busy]="$(calc "printf \"%.0f\", 100 * ($busy_after - $busy_before) / ($all_after - $all_before)")"
  curl -fsS --max-time 5 "http://127.0.0.1:$(port 19466)/metrics" >"$tmp/$setting-correlator.metrics" 2>/dev/null || :
  metric() { awk -v name="$1" -v label="${2:-}" '$1 ~ ("^" name "([{]|$)") && index($1, label) { s += $NF } END { printf "%.0f", s }' "$tmp/$setting-correlator.metrics"; }
  stat[$setting:late]="$(metric shadowdiff_correlator_events_ignored_total 'reason="late"')"
  # Writes are not mirrored: their exchanges are counted as `unmirrored`, not incomplete.
  stat[$setting:incomplete]="$(( $(metric shadowdiff_correlator_exchanges_total) - $(metric shadowdiff_correlator_exchanges_total 'outcome="complete"')
    - $(metric shadowdiff_correlator_exchanges_total 'outcome="unmirrored"') ))"

  for pid in "${pids[@]}"; do stop_pid "$pid" "$tmp"; done
  for t in requests responses dead-letter outbound profiles; do forget topic "$run_id.$t"; done
  forget database "$database"
}

for setting in "${settings[@]}"; do run "$setting"; done

# --- the report ----------------------------------------------------------------------------

base="${settings[0]}"
diff_ms() { calc "d = ${stat[$1:$2]} - ${stat[$base:$2]}; printf \"%+d ms\", d"; }
ratio() { calc "b = ${stat[$base:$2]}; if (b > 0) printf \"%.2f×\", ${stat[$1:$2]} / b; else print \"n/a\""; }
report="$tmp/results.md"
{
  echo "# shadowdiff freshness: from the primary's answer to the candidate's row"
  echo
  run_stamp
  echo "$(nproc) CPUs shared by the broker ($(tansu --version 2>/dev/null | head -1 || echo '?'), memory storage), ClickHouse $(ch_query "SELECT version()"), the"
  echo "demo's pipeline (release builds) and the driver, and with another engineer's tests running at the same time:"
  echo "CPU was contended, so the settings are compared as differences and ratios against the default run of this"
  echo "same script run, one run each, in the order listed."
  echo
  echo "The demo's pipeline from deploy/local/config (ports moved): the inventory, three demo backends (noise,"
  echo "shuffled variants; the candidate without a regression), each behind its egress tap (the shadows' in stub"
  echo "mode), the mirror replaying reads to the secondary and the candidate, the correlator and the tap; each run"
  echo "with its own topics (6 partitions), consumer groups and database. \`shadowdiff-demo freshness\` sent the demo's"
  echo "mix (55% item reads, 25% searches, 12% cart reads, 8% writes) through the tap at $rate requests/s for ${duration_secs} s,"
  echo "the first ${warmup_secs} s not timed, each request with a known \`X-Request-Id\`. Freshness of a read: from its answer's body"
  echo "reaching the driver to the start of the first poll of ClickHouse (every $poll_ms ms, \`SELECT request_id FROM exchanges"
  echo "WHERE deployment = 'candidate' AND request_id IN (...)\`) that returns its candidate row; resolution $poll_ms ms (ClickHouse"
  echo "reads the parts there are when a query starts). Writes are not timed: the mirror does not replay them."
  echo
  echo "| run | setting | reads timed | visible (missing) | p50 | p90 | **p99** | max | Δ p50 | Δ p99 | p99 / default | late events dropped | incomplete comparisons | ClickHouse, broker cores | machine busy |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for s in "${settings[@]}"; do
    printf '| %s | %s | %s | %s (%s) | %s ms | %s ms | **%s ms** | %s ms | %s | %s | %s | %s | %s | %s, %s | %s%% |\n' "$s" "${means[$s]}" \
      "${stat[$s:timed]}" "${stat[$s:visible]}" "${stat[$s:missing]}" "${stat[$s:p50_ms]}" "${stat[$s:p90_ms]}" "${stat[$s:p99_ms]}" \
      "${stat[$s:max_ms]}" "$(diff_ms "$s" p50_ms)" "$(diff_ms "$s" p99_ms)" "$(ratio "$s" p99_ms)" "${stat[$s:late]}" \
      "${stat[$s:incomplete]}" "${stat[$s:ch_cores]}" "${stat[$s:broker_cores]}" "${stat[$s:busy]}"
  done
  echo
  if [ "$base" = default ]; then
    if [ "${stat[default:p99_ms]}" -le 2000 ]; then verdict="**met**"; else verdict="**not met**"; fi
    echo "The goal, p99 ≤ 2 s with the demo's settings: $verdict (p99 ${stat[default:p99_ms]} ms, p50 ${stat[default:p50_ms]} ms)."
    echo
  fi
  echo "What each setting acts on. The tap publishes each request and primary answer after its producer's linger"
  echo "(a batch waits up to \`linger_ms\`); the mirror reads requests with 10 ms fetches, replays them and publishes the"
  echo "shadows' answers (5 ms linger); the egress taps publish each backend's downstream calls the same way, and the"
  echo "candidate's stub answers its call once the primary's is on the outbound topic. The correlator takes an exchange"
  echo "out of its join as soon as it is whole (services/correlator/src/join.rs: \`Joiner::take_complete\` on every"
  echo "event); with \`settle_ms\` it first waits that long after the exchange's last event, for calls still on their way,"
  echo "and settled exchanges are taken out, and every row written, on the flush tick (\`flush_interval_ms\`). The window"
  echo "(\`window_ms\`) only ends an exchange that is still missing a leg (\`Joiner::expire\`): with every comparison"
  echo "complete (the column above), it cannot change the freshness, and what it shows is this run's noise."
  echo
  echo "Polls: $(for s in "${settings[@]}"; do printf '%s %s (slowest %s ms); ' "$s" "${stat[$s:polls]}" "${stat[$s:slowest_poll_ms]}"; done | sed 's/; $//')."
  echo "Failed requests (not 2xx, not timed): $(for s in "${settings[@]}"; do printf '%s %s; ' "$s" "${stat[$s:failed]}"; done | sed 's/; $//')."
} >"$report"

cp "$report" "$results"
echo
cat "$report"
log "written to ${results#"$repo/"}"
