#!/usr/bin/env bash
# How many exchanges a second one correlator joins, diffs and writes to ClickHouse, and
# what it costs in CPU and memory. N whole exchanges (request, primary, secondary and
# candidate, 2 KB JSON bodies) are published to fresh topics first; then a release
# correlator starts on them and the clock runs until ClickHouse holds all N candidate rows.
# Everything runs on 127.0.0.1 against the shared Kafka and ClickHouse of
# deploy/local/services.sh, which are left up; the run's topics, database and correlator go.
#
#   deploy/bench/correlator-throughput.sh                    the default run (200 000 exchanges)
#   EXCHANGES=20000 deploy/bench/correlator-throughput.sh    a quick smoke run
#   PERF=1 deploy/bench/correlator-throughput.sh             also where the correlator's CPU goes
#
# Knobs (environment):
#   EXCHANGES                 whole exchanges published before the correlator starts (200000)
#   BODY_BYTES                size of every response body (2048)
#   CHANGED_PERCENT           candidate answers with another price, in percent (1.5)
#   PARTITIONS                partitions of each fresh topic (6)
#   FLUSH_INTERVAL_MS         the correlator's write interval (1000)
#   WINDOW_MS                 the correlator's join window (60000; see below)
#   TIMEOUT_SECS              give up when the rows are not all in by then (900)
#   BENCH_ADMIN_PORT          the correlator's /metrics on 127.0.0.1 (19476)
#   PERF=1                    sample the correlator with `perf record` (DWARF call graphs) for the
#                             whole run, and add where its CPU goes, by stage, to the results
#   SHADOWDIFF_KAFKA_BROKERS  the broker, started by deploy/local/services.sh (127.0.0.1:9092)
#   SHADOWDIFF_CLICKHOUSE_URL the ClickHouse HTTP endpoint (http://127.0.0.1:8123)
#   BENCH_KEEP=1              keep the temp dir (config, logs, metrics, perf data) for a look
#
# The table goes to stdout and to deploy/bench/results-correlator.md. A benchmark, not a
# test: it fails only when the rows never all arrive, never because it was slow.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

knobs_only "$@"

exchanges="${EXCHANGES:-200000}"
body_bytes="${BODY_BYTES:-2048}"
changed_percent="${CHANGED_PERCENT:-1.5}"
partitions="${PARTITIONS:-6}"
flush_interval_ms="${FLUSH_INTERVAL_MS:-1000}"
window_ms="${WINDOW_MS:-60000}"
timeout_secs="${TIMEOUT_SECS:-900}"
admin_port="${BENCH_ADMIN_PORT:-19476}"
perf_on="${PERF:-0}"
brokers="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
results="$here/results-correlator.md"
target_per_core=20000

kafka_host="${brokers%%,*}"
ch_query() { curl -fsS --max-time 30 "$ch_url/" --data-binary "$1"; }

# --- what this run starts and creates: recorded (deploy/lib.sh), so a run killed with
# --- SIGKILL is cleaned by the next ----------------------------------------------------------

# One run at a time: a second would take the first's correlator and topics for leftovers,
# and both would measure each other.
run_claim "$repo/.local/bench/correlator.lock" "$repo/.local/bench/correlator-running"
# The correlator commits and stops within a second or two; perf writes its data file.
stop_grace_secs=15
# The run's topics and database, recorded as "topic NAME" and "database NAME".
forget_recorded() {
  case "$1" in
    topic) tansu topic delete "$2" --broker "tcp://$kafka_host" >/dev/null 2>&1 || log "could not delete topic $2" ;;
    database) ch_query "DROP DATABASE IF EXISTS $2" >/dev/null 2>&1 || log "could not drop database $2" ;;
  esac
}

# --- prerequisites ---------------------------------------------------------------------

# Before the cleanup below: deleting an earlier run's topics needs the broker.
services_up
command -v tansu >/dev/null || die "tansu (installed by deploy/local/services.sh) is needed to create topics"

if [ -s "$run_record" ]; then log "cleaning up what an earlier, interrupted run left behind"; fi
stop_recorded
run_tmpdir shadowdiff-bench-correlator

tcp_open 127.0.0.1 "$admin_port" && die "127.0.0.1:$admin_port is in use; set BENCH_ADMIN_PORT to a free port"
if [ "$perf_on" = 1 ]; then command -v perf >/dev/null || die "PERF=1 needs perf (Debian: linux-perf)"; fi

log "building shadowdiff-correlator and shadowdiff-demo (release)"
cargo build --release --quiet -p shadowdiff-correlator -p shadowdiff-demo
bin_dir="$(target_dir)/release"
correlator_bin="$bin_dir/shadowdiff-correlator"
demo_bin="$bin_dir/shadowdiff-demo"
{ [ -x "$correlator_bin" ] && [ -x "$demo_bin" ]; } || die "no release binaries in $bin_dir after the build"

# --- fresh topics and database ---------------------------------------------------------------

run_id="bench-correlator-$(date +%Y%m%d%H%M%S)-$$"
requests_topic="$run_id.requests"
responses_topic="$run_id.responses"
dead_letter_topic="$run_id.dead-letter"
database="bench_correlator_$(date +%Y%m%d%H%M%S)_$$"

for topic in "$requests_topic" "$responses_topic" "$dead_letter_topic"; do
  remember topic "$topic"
  out="$(tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$kafka_host" 2>&1)" \
    || die "cannot create topic $topic: $out"
done
# The correlator creates the database and its tables at start-up (that is part of the
# measured time, as it is of a real start); this run drops it.
remember database "$database"
ch_query "DROP DATABASE IF EXISTS $database" >/dev/null

# --- load: every exchange is in Kafka before the correlator starts ----------------------------

log "publishing $exchanges exchanges ($body_bytes-byte bodies) to $requests_topic / $responses_topic"
load_out="$("$demo_bin" load --brokers "$brokers" --requests-topic "$requests_topic" \
  --responses-topic "$responses_topic" --exchanges "$exchanges" --body-bytes "$body_bytes" \
  --legs primary,secondary,candidate --changed-percent "$changed_percent" 9>&-)" \
  || die "the load generator failed"
log "loaded: $load_out"
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$load_out"; }
load_events="$(field events)"; load_bytes="$(field bytes)"; load_changed="$(field changed)"
load_seconds="$(field seconds)"; load_rate="$(field events_per_sec)"
[ "$(field exchanges)" = "$exchanges" ] || die "the load generator published $(field exchanges) of $exchanges exchanges"

# --- the correlator ------------------------------------------------------------------------

cat >"$tmp/correlator.toml" <<EOF
# Written by deploy/bench/correlator-throughput.sh for one run.
[correlator]
group_id = "$run_id"
# Exchanges complete as soon as their expected legs are in; the window only bounds stragglers.
window_ms = $window_ms
# One insert per table and interval: ClickHouse prefers few large inserts.
flush_interval_ms = $flush_interval_ms
# No hourly retention task on a throwaway database.
retention_days = 0
samples_retention_days = 0

[topics]
requests = "$requests_topic"
responses = "$responses_topic"
dead_letter = "$dead_letter_topic"
partitions = $partitions
create = false

[kafka]
brokers = "$brokers"

[clickhouse]
url = "$ch_url"
database = "$database"

[admin]
listen = "127.0.0.1:$admin_port"

[log]
level = "warn"
EOF

# SHADOWDIFF_* variables override the config file; the benchmark runs the file as written.
"$correlator_bin" --config "$tmp/correlator.toml" --check-config >/dev/null || die "the generated config does not pass --check-config"

clk_tck="$(getconf CLK_TCK)"
# cpu_ticks PID: utime + stime of a live process, in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the parenthesised command name, which may hold spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
# busy_ticks / all_ticks: the whole machine's CPU from /proc/stat (idle and iowait are not busy).
machine_ticks() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
pid_of() { local f="$repo/.local/$1.pid"; if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then cat "$f"; else echo ""; fi; }
ch_pid="$(pid_of clickhouse)"; broker_pid="$(pid_of kafka)"
ticks_or_na() { if [ -n "$1" ]; then cpu_ticks "$1"; else echo ""; fi; }
candidate_rows() { ch_query "SELECT count() FROM $database.exchanges FINAL WHERE role = 'candidate'" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

ch_before="$(ticks_or_na "$ch_pid")"; broker_before="$(ticks_or_na "$broker_pid")"
read -r machine_busy_before machine_all_before < <(machine_ticks)
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

log "starting the correlator (release) on $run_id"
started="$(now)"
env "${clean_env[@]}" "$correlator_bin" --config "$tmp/correlator.toml" >"$tmp/correlator.log" 2>&1 9>&- &
correlator_pid=$!
remember_pid "$correlator_pid"
perf_pid=""
if [ "$perf_on" = 1 ]; then
  # DWARF unwinding: release builds keep no frame pointers, so `-g` alone loses the callers.
  perf record -F 499 --call-graph dwarf,16384 -o "$tmp/perf.data" -p "$correlator_pid" >"$tmp/perf-record.log" 2>&1 9>&- &
  perf_pid=$!
  remember_pid "$perf_pid"
fi

# Poll until every candidate row is in. The correlator's CPU and memory are read on the
# last poll, while it still runs; it idles between the last write and that poll (< 0.25 s).
rows=0; first_row_at=""; last_report=0; peak_open=0; polls=0
# The join's open exchanges, as the correlator reports them on each flush.
open_exchanges() {
  curl -fsS --max-time 1 "http://127.0.0.1:$admin_port/metrics" 2>/dev/null \
    | awk '$1 == "shadowdiff_correlator_open_exchanges" { printf "%.0f", $NF }'
}
deadline=$(( $(date +%s) + timeout_secs ))
while :; do
  kill -0 "$correlator_pid" 2>/dev/null || { tail -20 "$tmp/correlator.log" >&2; die "the correlator exited"; }
  rows="$(candidate_rows)"
  if [ -z "$first_row_at" ] && [ "${rows:-0}" -gt 0 ]; then first_row_at="$(now)"; first_rows="$rows"; fi
  if [ "${rows:-0}" -ge "$exchanges" ]; then break; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "only $rows of $exchanges candidate rows after ${timeout_secs}s (rerun with BENCH_KEEP=1 for the log and metrics)"
  fi
  if [ $(( $(date +%s) - last_report )) -ge 10 ]; then log "  $rows / $exchanges candidate rows"; last_report="$(date +%s)"; fi
  polls=$((polls + 1))
  if [ $((polls % 4)) = 0 ]; then
    open="$(open_exchanges)"
    if [ "${open:-0}" -gt "$peak_open" ]; then peak_open="$open"; fi
  fi
  sleep 0.25
done
finished="$(now)"
correlator_ticks="$(cpu_ticks "$correlator_pid")"
peak_rss_kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$correlator_pid/status")"
threads="$(awk '/^Threads:/ { print $2 }' "/proc/$correlator_pid/status")"
# CPU seconds by thread name, digits dropped (tokio-runtime-w, rdk:broker, ...), largest first.
by_thread="$(for task in /proc/"$correlator_pid"/task/*; do
    printf '%s %s\n' "$(tr -d '0-9 ' <"$task/comm" 2>/dev/null)" "$(cpu_ticks "${task#/proc/}")"
  done | awk -v hz="$clk_tck" '{ t[$1] += $2 } END { for (n in t) printf "%.1f %s\n", t[n] / hz, n }' \
  | sort -rn | awk '$1 > 0 { printf "%s%s %s s", sep, $2, $1; sep = ", " }')"
ch_after="$(ticks_or_na "$ch_pid")"; broker_after="$(ticks_or_na "$broker_pid")"
read -r machine_busy_after machine_all_after < <(machine_ticks)
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
curl -fsS --max-time 5 "http://127.0.0.1:$admin_port/metrics" >"$tmp/metrics.txt" 2>/dev/null || : >"$tmp/metrics.txt"
log "all $rows candidate rows in; stopping the correlator"
stop_pid "$correlator_pid" "$tmp"
# perf record ends with the process it follows, once it has written its data.
if [ -n "$perf_pid" ]; then wait "$perf_pid" 2>/dev/null || true; fi

# What ClickHouse holds, as a check that the work was the work asked for.
read -r all_rows secondary_rows diverged noise_only < <(ch_query "SELECT count(), countIf(role = 'secondary'),
  countIf(role = 'candidate' AND differences > noise), countIf(role = 'candidate' AND differences > 0 AND differences = noise)
  FROM $database.exchanges FINAL FORMAT TSV")
difference_rows="$(ch_query "SELECT count() FROM $database.differences FINAL")"
ch_version="$(ch_query "SELECT version()")"

# --- the numbers -------------------------------------------------------------------------

calc() { awk "BEGIN { $1 }"; }
wall="$(calc "printf \"%.2f\", $finished - $started")"
steady="$(calc "printf \"%.2f\", $finished - ${first_row_at:-$started}")"
cpu="$(calc "printf \"%.2f\", $correlator_ticks / $clk_tck")"
per_wall="$(calc "printf \"%.0f\", $exchanges / $wall")"
per_cpu="$(calc "printf \"%.0f\", $exchanges / $cpu")"
cores_used="$(calc "printf \"%.2f\", $cpu / $wall")"
rss_mib="$(calc "printf \"%.0f\", $peak_rss_kb / 1024")"
us_per="$(calc "printf \"%.1f\", $cpu * 1000000 / $exchanges")"
steady_rate="$(calc "n = $exchanges - ${first_rows:-0}; t = $steady; if (t > 0) printf \"%.0f\", n / t; else print \"n/a\"")"
cpu_of() { if [ -n "$1" ] && [ -n "$2" ]; then calc "printf \"%.1f s\", ($2 - $1) / $clk_tck"; else echo "n/a"; fi; }
ch_cpu="$(cpu_of "$ch_before" "$ch_after")"; broker_cpu="$(cpu_of "$broker_before" "$broker_after")"
machine_busy="$(calc "printf \"%.0f\", 100 * ($machine_busy_after - $machine_busy_before) / ($machine_all_after - $machine_all_before)")"
machine_cores="$(nproc)"
met="not met"; if [ "$per_cpu" -ge "$target_per_core" ]; then met="met"; fi

# metric NAME [LABEL]: the sum of a Prometheus series in the scraped /metrics.
metric() { awk -v name="$1" -v label="${2:-}" '$1 ~ ("^" name "([{]|$)") && index($1, label) { s += $NF } END { printf "%.0f", s }' "$tmp/metrics.txt"; }
metric_float() { awk -v name="$1" '$1 == name { printf "%.2f", $NF }' "$tmp/metrics.txt"; }
write_secs="$(metric_float shadowdiff_correlator_write_seconds_sum)"
writes="$(metric shadowdiff_correlator_write_seconds_count)"
complete="$(metric shadowdiff_correlator_exchanges_total 'outcome="complete"')"
incomplete="$(( $(metric shadowdiff_correlator_exchanges_total) - complete ))"
evicted="$(metric shadowdiff_correlator_evicted_total)"
ignored="$(metric shadowdiff_correlator_events_ignored_total)"

perf_section=""
if [ "$perf_on" = 1 ] && [ -s "$tmp/perf.data" ]; then
  log "reading the profile"
  perf report -i "$tmp/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' >"$tmp/perf-children.txt" || true
  perf report -i "$tmp/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' >"$tmp/perf-self.txt" || true
  perf report -i "$tmp/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$tmp/perf-dso.txt" || true
  # inclusive SYMBOL...: the share of samples with any of these functions on the stack, by
  # exact name (a generic function appears once per instance; they are never nested here).
  inclusive() {
    awk -v names="$(printf '%s\n' "$@")" '
      BEGIN { n = split(names, list, "\n"); for (i = 1; i <= n; i++) if (list[i] != "") want[list[i]] = 1 }
      { sym = $0; sub(/^.*\] /, "", sym); sub(/( +-)* *$/, "", sym); if (sym in want) s += $1 }
      END { printf "%.0f%%", s }' "$tmp/perf-children.txt"
  }
  allocator="$(awk '{ sym = $0; sub(/^.*\] /, "", sym) }
    sym ~ /^(_int_malloc|_int_free|malloc|free|cfree|realloc|_int_realloc|malloc_consolidate|unlink_chunk|mi_|_mi_)/ { s += $1 }
    END { printf "%.0f%%", s }' "$tmp/perf-self.txt")"
  kernel="$(awk '/\[kernel\.kallsyms\]/ { printf "%.0f%%", $1 }' "$tmp/perf-dso.txt")"
  perf_section="$(
    echo
    echo "## Where the correlator's CPU goes"
    echo
    echo "\`perf record -F 499 --call-graph dwarf\` over the whole run; shares of the correlator's samples, a"
    echo "stage's share including what it calls (allocation included)."
    echo
    echo "| stage | share |"
    echo "|---|---:|"
    echo "| Avro decode of the events (\`EventCodec::decode\`) | $(inclusive shadowdiff_core::codec::EventCodec::decode) |"
    echo "| of which resolving the writer schema against the reader's, per event | $(inclusive '<apache_avro::schema::ResolvedSchema as core::convert::TryFrom<&apache_avro::schema::Schema>>::try_from') |"
    echo "| join (\`Joiner::add\`, \`take_complete\`, \`evict_over_bounds\`) | $(inclusive shadowdiff_correlator::join::Joiner::add shadowdiff_correlator::join::Joiner::take_complete shadowdiff_correlator::join::Joiner::evict_over_bounds) |"
    echo "| diff and rows (\`RowBuilder::add\`) | $(inclusive shadowdiff_correlator::sink::rows::RowBuilder::add) |"
    echo "| of which parsing bodies into \`serde_json::Value\` | $(inclusive serde_json::de::from_trait) |"
    echo "| ClickHouse rows (\`Insert::write\`, \`Insert::end\`) | $(inclusive 'clickhouse::insert::Insert<T>::write' 'clickhouse::insert::Insert<T>::end') |"
    echo "| librdkafka's consumer queue (\`rd_kafka_q_pop_serve0\`) | $(inclusive rd_kafka_q_pop_serve0) |"
    echo "| the allocator's own code (self time) | $allocator |"
    echo "| the kernel (page faults, syscalls; self time) | ${kernel:-0%} |"
    echo
    echo "Top functions by self time:"
    echo
    echo '```'
    # perf pads each line with empty columns ("-  -"); long generic names are cut.
    head -15 "$tmp/perf-self.txt" | sed 's/\( \{1,\}-\)* *$//; s/\(.\{150\}\).*/\1…/'
    echo '```'
  )"
fi

report="$tmp/results.md"
{
  echo "# shadowdiff correlator throughput"
  echo
  run_stamp
  echo "$machine_cores CPUs shared by the broker ($(tansu --version 2>/dev/null | head -1 || echo '?'), memory storage), ClickHouse $ch_version and the correlator."
  echo "$exchanges exchanges pre-loaded into $partitions-partition topics: a request and three ${body_bytes}-byte JSON answers"
  echo "(primary, secondary, candidate), each leg with its own random \`trace_id\` (noise), $load_changed candidate"
  echo "answers ($changed_percent%) with another price. Correlator: release build, \`flush_interval_ms = $flush_interval_ms\`,"
  echo "\`window_ms = $window_ms\`, defaults otherwise. The clock runs from its start (migrations included) until"
  echo "\`SELECT count() FROM exchanges FINAL WHERE role = 'candidate'\` returns $exchanges (polled every 0.25 s)."
  if [ "$perf_on" = 1 ]; then echo "perf was sampling the correlator throughout (its own CPU is not the correlator's)."; fi
  echo
  echo "| measure | value |"
  echo "|---|---:|"
  echo "| wall time, start to the last candidate row | $wall s |"
  echo "| **exchanges/s, wall** | **$per_wall** |"
  echo "| exchanges/s after the first write | $steady_rate |"
  echo "| correlator CPU (user + system) | $cpu s ($cores_used cores on average, $threads threads) |"
  echo "| **exchanges per CPU-second (\"per core\")** | **$per_cpu** (target $target_per_core: **$met**) |"
  echo "| CPU per exchange | $us_per µs |"
  echo "| **correlator peak RSS (VmHWM)** | **$rss_mib MiB** |"
  echo "| open exchanges in the join at most (sampled each second) | $peak_open |"
  echo "| ClickHouse writes (one per table and flush) | $writes flushes, $write_secs s in all |"
  echo "| ClickHouse server CPU over the same wall time | $ch_cpu |"
  echo "| broker CPU over the same wall time | $broker_cpu |"
  echo "| whole machine busy over the same wall time | $machine_busy% of $machine_cores CPUs; load average $load_before before, $load_after after |"
  echo
  echo "Rows: $all_rows exchange rows ($secondary_rows secondary), $difference_rows difference rows; $diverged candidate"
  echo "rows with a difference beyond noise (expected $load_changed), $noise_only with noise only."
  echo "Correlator outcomes: $complete complete, $incomplete otherwise, $evicted evicted early, $ignored events ignored."
  echo "Correlator CPU by thread: ${by_thread:-n/a}."
  if [ "$complete" != $((2 * exchanges)) ]; then
    echo
    echo "**Not every exchange was joined whole** ($complete of $((2 * exchanges)) comparisons complete): exchanges"
    echo "split or cut short skip their diffs, so the rates above are not comparable. A window shorter than the"
    echo "catch-up does this (requests, being small, are read well ahead of their responses); raise WINDOW_MS."
  fi
  echo "Load: $load_events events ($(calc "printf \"%.0f\", $load_bytes / 1048576") MiB encoded) published in $load_seconds s ($load_rate events/s),"
  echo "before the correlator started."
  echo "ClickHouse and broker CPU include anything else using them at the time; the machine is shared."
  if [ -n "$perf_section" ]; then echo "$perf_section"; fi
} >"$report"

cp "$report" "$results"
echo
cat "$report"
log "written to ${results#"$repo/"}"
