#!/usr/bin/env bash
# How many exchanges a second one correlator joins, diffs and writes to ClickHouse, and
# what it costs in CPU and memory, without and with downstream calls. N exchanges (request,
# primary, secondary and candidate, 2 KB JSON bodies, and with CALLS_PER_EXCHANGE set, each
# deployment's downstream calls on the outbound topic) are read by a release correlator from
# fresh topics, as a backlog, and the clock runs until ClickHouse holds all N candidate rows.
# Each configuration (one per CALLS_PER_EXCHANGE value) is run ROUNDS times, in turns, on
# topics, database and correlator of its own. Everything runs on 127.0.0.1 against the shared
# Kafka and ClickHouse of deploy/local/services.sh, which are left up; each run's topics and
# database go when it is done, its correlator too.
#
# The order the backlog is read in (ORDER):
#   answers-last  every request and call is published, the correlator starts and reads them
#                 all; then it is stopped (SIGSTOP) while every answer is published, and
#                 continued. The clock runs while it runs: the first part, until it idles,
#                 and the second, until the last row. Calls are read before their answers,
#                 as live, where a deployment makes its calls before it answers.
#   whole         every exchange is published whole before the correlator starts, and the
#                 clock runs from its start. Reading a backlog, the correlator reads each topic
#                 at its own pace, and the outbound topic falls behind the responses: at
#                 50 000 exchanges with 2 calls per deployment, 38% of the calls were read
#                 after their exchange was written (late, and dropped) with settle_ms = 500,
#                 15% with 3 000; at 200 000, 2.4% with 20 000, the correlator holding 4.8 GiB.
#
#   deploy/bench/correlator-throughput.sh                    the default run (200 000 exchanges)
#   EXCHANGES=20000 ROUNDS=1 deploy/bench/correlator-throughput.sh    a quick smoke run
#   CALLS_PER_EXCHANGE=0 deploy/bench/correlator-throughput.sh        without downstream calls only
#   PERF=1 deploy/bench/correlator-throughput.sh             also where the correlator's CPU goes
#
# Knobs (environment):
#   EXCHANGES                 whole exchanges published before the correlator starts (200000)
#   CALLS_PER_EXCHANGE        downstream calls each deployment (primary, secondary, candidate)
#                             makes per exchange, alternately `GET /stock/{n}` and `POST /events`,
#                             the same from every deployment; one configuration per value ("0 2")
#   ORDER                     answers-last or whole (answers-last; see above)
#   SETTLE_MS                 the correlator's [correlator.outbound] settle_ms, in every
#                             configuration (0: with answers-last every call is read before its
#                             exchange's answers, and with whole no settle time serves)
#   ROUNDS                    runs of each configuration, in turns; the median run is reported (3)
#   BODY_BYTES                size of every response body (2048)
#   CHANGED_PERCENT           candidate answers with another price, in percent (1.5)
#   PARTITIONS                partitions of each fresh topic (6)
#   FLUSH_INTERVAL_MS         the correlator's write interval (1000)
#   WINDOW_MS                 the correlator's join window (300000: with answers-last the first
#                             exchanges wait for their answers while they are published)
#   MAX_OPEN_BYTES            the correlator's max_open_bytes (4294967296: 4 GiB; with
#                             answers-last every exchange is open, with its calls, before its
#                             answers come, more than the default 512 MiB)
#   TIMEOUT_SECS              give up when a run's rows are not all in by then (900)
#   BENCH_ADMIN_PORT          the correlator's /metrics on 127.0.0.1 (19476)
#   PERF=1                    sample the correlator with `perf record` (DWARF call graphs) in the
#                             first round of each configuration, and add where its CPU goes, by
#                             stage, to the results
#   SHADOWDIFF_KAFKA_BROKERS  the broker, started by deploy/local/services.sh (127.0.0.1:9092)
#   SHADOWDIFF_CLICKHOUSE_URL the ClickHouse HTTP endpoint (http://127.0.0.1:8123)
#   BENCH_KEEP=1              keep the temp dir (configs, logs, metrics, perf data) for a look
#
# The results count events read after their exchange was written (late), and say so when
# there are any.
#
# The table goes to stdout and to its section of deploy/bench/results-correlator.md (one and
# two replicas, and the memory an open exchange holds: correlator-replicas.sh). A benchmark, not a
# test: it fails only when the rows never all arrive, never because it was slow.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

knobs_only "$@"

exchanges="${EXCHANGES:-200000}"
read -r -a calls_per_exchange <<<"${CALLS_PER_EXCHANGE:-0 2}"
order="${ORDER:-answers-last}"
settle_ms="${SETTLE_MS:-0}"
rounds="${ROUNDS:-3}"
body_bytes="${BODY_BYTES:-2048}"
changed_percent="${CHANGED_PERCENT:-1.5}"
partitions="${PARTITIONS:-6}"
flush_interval_ms="${FLUSH_INTERVAL_MS:-1000}"
window_ms="${WINDOW_MS:-300000}"
max_open_bytes="${MAX_OPEN_BYTES:-4294967296}"
timeout_secs="${TIMEOUT_SECS:-900}"
admin_port="${BENCH_ADMIN_PORT:-19476}"
perf_on="${PERF:-0}"
brokers="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
results="$here/results-correlator.md"
target_per_core=20000
# The legs every exchange has, and so the deployments that make calls.
legs=3

for n in "${calls_per_exchange[@]}"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "CALLS_PER_EXCHANGE: $n is not a number of calls"
done
[ "${#calls_per_exchange[@]}" -gt 0 ] || die "CALLS_PER_EXCHANGE names no configuration"
case "$order" in answers-last | whole) ;; *) die "ORDER: answers-last or whole, not $order" ;; esac

kafka_host="${brokers%%,*}"

# --- what this run starts and creates: recorded (deploy/lib.sh), so a run killed with
# --- SIGKILL is cleaned by the next ----------------------------------------------------------

# One run at a time: a second would take the first's correlator and topics for leftovers,
# and both would measure each other.
run_claim "$repo/.local/bench/correlator.lock" "$repo/.local/bench/correlator-running"
# The correlator commits and stops within a second or two; perf writes its data file.
stop_grace_secs=15
# The runs' topics and databases, recorded as "topic NAME" and "database NAME", go with
# lib.sh's forget_recorded; each run forgets its own as it ends (lib.sh's forget), since the
# broker keeps every topic in memory, and each run loads over a gigabyte.

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
# The load generator runs through a link in $tmp, so its command line names the run's temp
# dir (lib.sh's `ours`) and an interrupted run's is stopped by the next.
ln -s "$demo_bin" "$tmp/shadowdiff-demo"

clk_tck="$(getconf CLK_TCK)"
ch_pid="$(pid_of clickhouse)"; broker_pid="$(pid_of kafka)"
ticks_or_na() { if [ -n "$1" ]; then cpu_ticks "$1"; else echo ""; fi; }
now() { date +%s.%N; }

# What each run measured: stat[LABEL:KEY].
declare -A stat

# run_once CALLS LABEL: one run of the configuration with CALLS calls per deployment and
# exchange, from fresh topics and database to the last candidate row, its figures kept in
# stat[LABEL:*]. With PROFILE=1 in the environment, perf samples the correlator.
run_once() {
  local calls="$1" label="$2" profile="${PROFILE:-0}"
  local stamp run_id database
  stamp="$(date +%Y%m%d%H%M%S)"
  run_id="bench-correlator-$stamp-$$-$label"
  database="bench_correlator_${stamp}_$$_${label//[^a-z0-9]/_}"
  local requests_topic="$run_id.requests" responses_topic="$run_id.responses"
  local dead_letter_topic="$run_id.dead-letter" outbound_topic="$run_id.outbound"
  local dir="$tmp/$label" topic out
  mkdir -p "$dir"

  for topic in "$requests_topic" "$responses_topic" "$dead_letter_topic" "$outbound_topic"; do
    remember topic "$topic"
    out="$(tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$kafka_host" 2>&1)" \
      || die "cannot create topic $topic: $out"
  done
  # The correlator creates the database and its tables at start-up (that is part of the
  # measured time, as it is of a real start); this run drops it.
  remember database "$database"
  ch_query "DROP DATABASE IF EXISTS $database" >/dev/null

  # --- load: whole exchanges, or every request and call with the answers held back --------
  local load_args=(load --brokers "$brokers" --requests-topic "$requests_topic"
    --responses-topic "$responses_topic" --exchanges "$exchanges" --body-bytes "$body_bytes"
    --legs "primary,secondary,candidate" --changed-percent "$changed_percent"
    --calls-per-leg "$calls" --outbound-topic "$outbound_topic")
  local load_pid="" load_out
  if [ "$order" = whole ]; then
    log "$label: publishing $exchanges exchanges ($body_bytes-byte bodies, $calls calls per deployment)"
    "$tmp/shadowdiff-demo" "${load_args[@]}" >"$dir/load.out" 9>&- || die "the load generator failed"
  else
    log "$label: publishing $exchanges requests and their calls ($calls per deployment); the answers later"
    # The load publishes the answers after a line on its stdin: fd 7 holds the pipe open.
    mkfifo "$dir/go"
    exec 7<>"$dir/go"
    "$tmp/shadowdiff-demo" "${load_args[@]}" --answers-after-stdin <"$dir/go" >"$dir/load.out" 9>&- 7>&- &
    load_pid=$!
    remember_pid "$load_pid"
    held() {
      kill -0 "$load_pid" 2>/dev/null || die "the load generator exited before its answers"
      grep -q '^held ' "$dir/load.out"
    }
    poll "$timeout_secs" held || die "the requests and calls were not published within ${timeout_secs}s"
    log "$label: $(grep '^held ' "$dir/load.out")"
  fi

  # --- the correlator --------------------------------------------------------------------
  correlator_bench_toml "$run_id" "$database" "$admin_port" >"$dir/correlator.toml"

  # SHADOWDIFF_* variables override the config file; the benchmark runs the file as written.
  "$correlator_bin" --config "$dir/correlator.toml" --check-config >/dev/null || die "the generated config does not pass --check-config"

  candidate_rows() { ch_query "SELECT count() FROM $database.exchanges FINAL WHERE role = 'candidate'" 2>/dev/null || echo 0; }
  # The join's open exchanges, as the correlator reports them on each flush.
  open_exchanges() {
    curl -fsS --max-time 1 "http://127.0.0.1:$admin_port/metrics" 2>/dev/null \
      | awk '$1 == "shadowdiff_correlator_open_exchanges" { printf "%.0f", $NF }'
  }

  local ch_before broker_before machine_busy_before machine_all_before load_before
  ch_before="$(ticks_or_na "$ch_pid")"; broker_before="$(ticks_or_na "$broker_pid")"
  read -r machine_busy_before machine_all_before < <(machine_ticks)
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

  local peak_open=0
  log "$label: starting the correlator (release)"
  local started correlator_pid perf_pid=""
  started="$(now)"
  env "${clean_env[@]}" "$correlator_bin" --config "$dir/correlator.toml" >"$dir/correlator.log" 2>&1 9>&- &
  correlator_pid=$!
  remember_pid "$correlator_pid"
  if [ "$profile" = 1 ]; then
    # DWARF unwinding: release builds keep no frame pointers, so `-g` alone loses the callers.
    perf record -F 499 --call-graph dwarf,16384 -o "$dir/perf.data" -p "$correlator_pid" >"$dir/perf-record.log" 2>&1 9>&- &
    perf_pid=$!
    remember_pid "$perf_pid"
  fi

  # With the answers held back: wait until the correlator has read every request and call
  # (every exchange open, and a second without CPU), stop it while the answers are published,
  # and leave out of everything measured the time from the start of that idle second until
  # it continues: wall time, and the CPU of ClickHouse, the broker and the machine.
  # snap: "time correlator-ticks clickhouse-ticks broker-ticks machine-busy machine-all".
  snap() {
    local ch broker
    ch="$(ticks_or_na "$ch_pid")"; broker="$(ticks_or_na "$broker_pid")"
    echo "$(now) $(cpu_ticks "$correlator_pid") ${ch:-0} ${broker:-0} $(machine_ticks)"
  }
  local paused=0 paused_ch=0 paused_broker=0 paused_busy=0 paused_all=0 caught_up=""
  if [ -n "$load_pid" ]; then
    local snaps=() t idle_from
    while :; do
      kill -0 "$correlator_pid" 2>/dev/null || { tail -20 "$dir/correlator.log" >&2; die "the correlator exited"; }
      snaps+=("$(snap)")
      t=$((${#snaps[@]} - 1))
      if [ "$t" -ge 4 ] && [ "$(calc "split(\"${snaps[t]}\", a); split(\"${snaps[t - 4]}\", b); print (a[2] - b[2] <= 2)")" = 1 ] \
        && [ "$(open_exchanges)" = "$exchanges" ]; then
        idle_from="${snaps[t - 4]}"
        break
      fi
      if [ "$(calc "split(\"${snaps[t]}\", a); print (a[1] - $started > $timeout_secs)")" = 1 ]; then
        die "the correlator did not read the requests and calls within ${timeout_secs}s"
      fi
      sleep 0.25
    done
    caught_up="$(calc "split(\"$idle_from\", a); printf \"%.2f\", a[1] - $started")"
    peak_open="$exchanges"
    log "$label: every request and call read after ${caught_up}s; publishing the answers with the correlator stopped"
    kill -STOP "$correlator_pid"
    local stopped_at
    stopped_at="$(now)"
    echo go >&7
    wait "$load_pid" || die "the load generator failed"
    exec 7>&-
    # Past the consumer's session timeout (45 s) the group would have moved its partitions.
    if [ "$(calc "print ($(now) - $stopped_at > 40)")" = 1 ]; then die "publishing the answers took over 40 s, near the consumer's session timeout"; fi
    kill -CONT "$correlator_pid"
    read -r paused paused_ch paused_broker paused_busy paused_all < <(calc "split(\"$idle_from\", a); split(\"$(snap)\", b);
      printf \"%.3f %d %d %d %d\\n\", b[1] - a[1], b[3] - a[3], b[4] - a[4], b[5] - a[5], b[6] - a[6]")
    log "$label: answers published in $(calc "printf \"%.2f\", $(now) - $stopped_at")s; the correlator continues"
  fi
  load_out="$(tail -1 "$dir/load.out")"
  log "$label: loaded: $load_out"
  field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$load_out"; }
  [ "$(field exchanges)" = "$exchanges" ] || die "the load generator published $(field exchanges) of $exchanges exchanges"
  local key
  for key in events calls bytes changed seconds events_per_sec; do stat[$label:load_$key]="$(field "$key")"; done
  stat[$label:caught_up]="${caught_up:-–}"
  stat[$label:paused]="$paused"

  # Poll until every candidate row is in. The correlator's CPU and memory are read on the
  # last poll, while it still runs; it idles between the last write and that poll (< 0.25 s).
  local rows=0 first_row_at="" first_rows=0 last_report=0 polls=0 open deadline
  # When a fifth and when four fifths of the rows were in: the steady rate between them
  # leaves out the start, the settle time's delay and the last flush.
  local fifth_at="" fifth_rows=0 four_fifths_at="" four_fifths_rows=0
  deadline=$(( $(date +%s) + timeout_secs ))
  while :; do
    kill -0 "$correlator_pid" 2>/dev/null || { tail -20 "$dir/correlator.log" >&2; die "the correlator exited"; }
    rows="$(candidate_rows)"
    if [ -z "$first_row_at" ] && [ "${rows:-0}" -gt 0 ]; then first_row_at="$(now)"; first_rows="$rows"; fi
    if [ -z "$fifth_at" ] && [ "${rows:-0}" -ge $((exchanges / 5)) ]; then fifth_at="$(now)"; fifth_rows="$rows"; fi
    if [ -z "$four_fifths_at" ] && [ "${rows:-0}" -ge $((exchanges * 4 / 5)) ]; then four_fifths_at="$(now)"; four_fifths_rows="$rows"; fi
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
  local finished correlator_ticks
  finished="$(now)"
  correlator_ticks="$(cpu_ticks "$correlator_pid")"
  stat[$label:peak_rss_kb]="$(awk '/^VmHWM:/ { print $2 }' "/proc/$correlator_pid/status")"
  stat[$label:threads]="$(awk '/^Threads:/ { print $2 }' "/proc/$correlator_pid/status")"
  # CPU seconds by thread name, digits dropped (tokio-runtime-w, rdk:broker, ...), largest first.
  stat[$label:by_thread]="$(for task in /proc/"$correlator_pid"/task/*; do
      printf '%s %s\n' "$(tr -d '0-9 ' <"$task/comm" 2>/dev/null)" "$(cpu_ticks "${task#/proc/}")"
    done | awk -v hz="$clk_tck" '{ t[$1] += $2 } END { for (n in t) printf "%.1f %s\n", t[n] / hz, n }' \
    | sort -rn | awk '$1 > 0 { printf "%s%s %s s", sep, $2, $1; sep = ", " }')"
  local ch_after broker_after machine_busy_after machine_all_after
  ch_after="$(ticks_or_na "$ch_pid")"; broker_after="$(ticks_or_na "$broker_pid")"
  read -r machine_busy_after machine_all_after < <(machine_ticks)
  stat[$label:load_avg]="$load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
  curl -fsS --max-time 5 "http://127.0.0.1:$admin_port/metrics" >"$dir/metrics.txt" 2>/dev/null || : >"$dir/metrics.txt"
  log "$label: all $rows candidate rows in; stopping the correlator"
  stop_pid "$correlator_pid" "$tmp"
  # perf record ends with the process it follows, once it has written its data.
  if [ -n "$perf_pid" ]; then wait "$perf_pid" 2>/dev/null || true; fi

  # What ClickHouse holds, as a check that the work was the work asked for.
  read -r "stat[$label:all_rows]" "stat[$label:secondary_rows]" "stat[$label:diverged]" "stat[$label:noise_only]" \
    < <(ch_query "SELECT count(), countIf(role = 'secondary'),
      countIf(role = 'candidate' AND differences > noise), countIf(role = 'candidate' AND differences > 0 AND differences = noise)
      FROM $database.exchanges FINAL FORMAT TSV")
  stat[$label:difference_rows]="$(ch_query "SELECT count() FROM $database.differences FINAL")"
  stat[$label:call_rows]="$(ch_query "SELECT count() FROM $database.outbound_calls FINAL")"
  stat[$label:call_difference_rows]="$(ch_query "SELECT count() FROM $database.outbound_differences FINAL")"
  stat[ch_version]="$(ch_query "SELECT version()")"

  # --- the numbers -----------------------------------------------------------------------
  local wall cpu
  wall="$(calc "printf \"%.2f\", $finished - $started - $paused")"
  cpu="$(calc "printf \"%.2f\", $correlator_ticks / $clk_tck")"
  stat[$label:wall]="$wall"
  stat[$label:cpu]="$cpu"
  stat[$label:per_wall]="$(calc "printf \"%.0f\", $exchanges / $wall")"
  stat[$label:per_cpu]="$(calc "printf \"%.0f\", $exchanges / $cpu")"
  stat[$label:cores_used]="$(calc "printf \"%.2f\", $cpu / $wall")"
  stat[$label:us_per]="$(calc "printf \"%.1f\", $cpu * 1000000 / $exchanges")"
  stat[$label:steady_rate]="$(calc "n = $exchanges - $first_rows; t = $finished - ${first_row_at:-$started}; if (t > 0) printf \"%.0f\", n / t; else print \"n/a\"")"
  stat[$label:middle_rate]="$(calc "n = $four_fifths_rows - $fifth_rows; t = ${four_fifths_at:-$finished} - ${fifth_at:-$started}; if (t > 0) printf \"%.0f\", n / t; else print \"n/a\"")"
  # CPU_of BEFORE AFTER PAUSED: seconds of CPU between, less those while the correlator was stopped.
  cpu_of() { if [ -n "$1" ] && [ -n "$2" ]; then calc "printf \"%.1f s\", ($2 - $1 - $3) / $clk_tck"; else echo "n/a"; fi; }
  stat[$label:ch_cpu]="$(cpu_of "$ch_before" "$ch_after" "$paused_ch")"
  stat[$label:broker_cpu]="$(cpu_of "$broker_before" "$broker_after" "$paused_broker")"
  stat[$label:machine_busy]="$(calc "printf \"%.0f\", 100 * ($machine_busy_after - $machine_busy_before - $paused_busy) / ($machine_all_after - $machine_all_before - $paused_all)")"
  stat[$label:peak_open]="$peak_open"

  # metric NAME [LABEL]: the sum of a Prometheus series in the scraped /metrics.
  metric() { awk -v name="$1" -v label="${2:-}" '$1 ~ ("^" name "([{]|$)") && index($1, label) { s += $NF } END { printf "%.0f", s }' "$dir/metrics.txt"; }
  stat[$label:write_secs]="$(awk '$1 == "shadowdiff_correlator_write_seconds_sum" { printf "%.2f", $NF }' "$dir/metrics.txt")"
  stat[$label:writes]="$(metric shadowdiff_correlator_write_seconds_count)"
  stat[$label:complete]="$(metric shadowdiff_correlator_exchanges_total 'outcome="complete"')"
  stat[$label:incomplete]="$(( $(metric shadowdiff_correlator_exchanges_total) - ${stat[$label:complete]} ))"
  stat[$label:evicted]="$(metric shadowdiff_correlator_evicted_total)"
  stat[$label:ignored]="$(metric shadowdiff_correlator_events_ignored_total)"
  stat[$label:late]="$(metric shadowdiff_correlator_events_ignored_total 'reason="late"')"

  if [ "$profile" = 1 ] && [ -s "$dir/perf.data" ]; then
    log "$label: reading the profile"
    perf_section "$dir" "$calls" >"$dir/perf.md"
  fi

  for topic in "$requests_topic" "$responses_topic" "$dead_letter_topic" "$outbound_topic"; do forget topic "$topic"; done
  forget database "$database"
  log "$label: ${stat[$label:per_wall]} exchanges/s, ${stat[$label:per_cpu]} per CPU-second"
}

# perf_section DIR CALLS: where the correlator's CPU went, from DIR/perf.data, as markdown.
perf_section() {
  local dir="$1" calls="$2"
  perf report -i "$dir/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' >"$dir/perf-children.txt" || true
  perf report -i "$dir/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' >"$dir/perf-self.txt" || true
  perf report -i "$dir/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$dir/perf-dso.txt" || true
  # inclusive SYMBOL...: the share of samples with any of these functions on the stack, by
  # exact name (a generic function appears once per instance; they are never nested here).
  inclusive() {
    awk -v names="$(printf '%s\n' "$@")" '
      BEGIN { n = split(names, list, "\n"); for (i = 1; i <= n; i++) if (list[i] != "") want[list[i]] = 1 }
      { sym = $0; sub(/^.*\] /, "", sym); sub(/( +-)* *$/, "", sym); if (sym in want) s += $1 }
      END { printf "%.0f%%", s }' "$dir/perf-children.txt"
  }
  local allocator kernel
  allocator="$(awk '{ sym = $0; sub(/^.*\] /, "", sym) }
    sym ~ /^(_int_malloc|_int_free|malloc|free|cfree|realloc|_int_realloc|malloc_consolidate|unlink_chunk|mi_|_mi_)/ { s += $1 }
    END { printf "%.0f%%", s }' "$dir/perf-self.txt")"
  kernel="$(awk '/\[kernel\.kallsyms\]/ { printf "%.0f%%", $1 }' "$dir/perf-dso.txt")"
  echo
  echo "## Where the correlator's CPU goes, $calls calls per deployment"
  echo
  echo "\`perf record -F 499 --call-graph dwarf\` over the whole run (the first round); shares of the correlator's"
  echo "samples, a stage's share including what it calls (allocation included)."
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
  head -15 "$dir/perf-self.txt" | sed 's/\( \{1,\}-\)* *$//; s/\(.\{150\}\).*/\1…/'
  echo '```'
}

# --- the runs: every configuration once a round, in turns ----------------------------------

for round in $(seq "$rounds"); do
  for calls in "${calls_per_exchange[@]}"; do
    profile=0
    if [ "$perf_on" = 1 ] && [ "$round" = 1 ]; then profile=1; fi
    PROFILE="$profile" run_once "$calls" "c$calls-r$round"
  done
done

# --- the report --------------------------------------------------------------------------

# every CALLS KEY: KEY of each of the configuration's runs, in the order run.
every() { every_run "c$1" "$2"; }
declare -A med
for calls in "${calls_per_exchange[@]}"; do med[$calls]="$(median_run "c$calls")"; done
# cells KEY [FORMAT]: one table cell per configuration, from its median run.
cells() {
  local calls out=""
  for calls in "${calls_per_exchange[@]}"; do out+=" ${stat[${med[$calls]}:$1]} |"; done
  echo "$out"
}
mib() { local calls out=""; for calls in "${calls_per_exchange[@]}"; do out+=" $(calc "printf \"%.0f\", ${stat[${med[$calls]}:peak_rss_kb]} / 1024") MiB |"; done; echo "$out"; }
header="| measure |"; rule="|---|"
for calls in "${calls_per_exchange[@]}"; do
  if [ "$calls" = 0 ]; then header+=" no downstream calls |"; else header+=" $calls calls per deployment ($((calls * legs)) an exchange) |"; fi
  rule+="---:|"
done
base="${calls_per_exchange[0]}"

report="$tmp/results.md"
{
  echo "# shadowdiff correlator throughput"
  echo
  run_stamp
  echo "$(nproc) CPUs shared by the broker ($(tansu --version 2>/dev/null | head -1 || echo '?'), memory storage), ClickHouse ${stat[ch_version]} and the correlator."
  echo "$exchanges exchanges in fresh $partitions-partition topics for each run: a request and three ${body_bytes}-byte"
  echo "JSON answers (primary, secondary, candidate), each leg with its own random \`trace_id\` (noise), $changed_percent% of"
  echo "candidate answers with another price; with downstream calls, each deployment's calls on the outbound topic,"
  echo "alternately \`GET /stock/{n}\` (answered 200) and \`POST /events\` with a small JSON body (answered 202), the"
  echo "same from every deployment. Correlator: release build, \`flush_interval_ms = $flush_interval_ms\`,"
  echo "\`window_ms = $window_ms\`, \`max_open_bytes = $max_open_bytes\`, \`[correlator.outbound] settle_ms = $settle_ms\`,"
  echo "defaults otherwise."
  if [ "$order" = whole ]; then
    echo "Every exchange was published whole before the correlator started; the clock runs from its start"
  else
    echo "Every request and call was published before the correlator started, and every answer once it had read"
    echo "them all, with the correlator stopped (SIGSTOP) meanwhile; the clock runs while it runs, from its start"
  fi
  echo "(migrations included) until \`SELECT count() FROM exchanges FINAL WHERE role = 'candidate'\` returns $exchanges"
  echo "(polled every 0.25 s). Each configuration ran $rounds times, in turns with the others; each column is its"
  echo "median run by exchanges/s."
  if [ "$perf_on" = 1 ]; then echo "perf was sampling the correlator in the first round (its own CPU is not the correlator's)."; fi
  echo
  echo "$header"
  echo "$rule"
  echo "| wall time, start to the last candidate row |$(cells wall | sed 's/ |/ s |/g')"
  if [ "$order" != whole ]; then
    echo "| of which reading every request and call, until idle |$(cells caught_up | sed 's/ |/ s |/g')"
    echo "| left out: its idle second, then the answers published while it was stopped |$(cells paused | sed 's/ |/ s |/g')"
  fi
  echo "| **exchanges/s, wall** |$(cells per_wall | sed 's/ \([0-9]*\) |/ **\1** |/g')"
  echo "| exchanges/s after the first write |$(cells steady_rate)"
  echo "| **exchanges/s from a fifth to four fifths of the rows** |$(cells middle_rate | sed 's/ \([0-9]*\) |/ **\1** |/g')"
  echo "| correlator CPU (user + system), s |$(cells cpu)"
  echo "| cores used on average |$(cells cores_used)"
  echo "| **exchanges per CPU-second (\"per core\")** |$(cells per_cpu | sed 's/ \([0-9]*\) |/ **\1** |/g')"
  echo "| target: $target_per_core per CPU-second |$(for calls in "${calls_per_exchange[@]}"; do
    if [ "${stat[${med[$calls]}:per_cpu]}" -ge "$target_per_core" ]; then printf ' met |'; else printf ' not met |'; fi; done)"
  echo "| CPU per exchange, µs |$(cells us_per)"
  echo "| **correlator peak RSS (VmHWM)** |$(mib)"
  echo "| open exchanges in the join at most (sampled each second) |$(cells peak_open)"
  echo "| ClickHouse writes (flushes) |$(cells writes)"
  echo "| time in ClickHouse writes, s |$(cells write_secs)"
  echo "| ClickHouse server CPU over the same wall time |$(cells ch_cpu)"
  echo "| broker CPU over the same wall time |$(cells broker_cpu)"
  echo "| whole machine busy over the same wall time, % of $(nproc) CPUs |$(cells machine_busy)"
  echo "| events loaded (calls among them) |$(for calls in "${calls_per_exchange[@]}"; do printf ' %s (%s) |' "${stat[${med[$calls]}:load_events]}" "${stat[${med[$calls]}:load_calls]}"; done)"
  echo "| encoded MiB loaded |$(for calls in "${calls_per_exchange[@]}"; do printf ' %s |' "$(calc "printf \"%.0f\", ${stat[${med[$calls]}:load_bytes]} / 1048576")"; done)"
  echo "| \`outbound_calls\` rows (expected) |$(for calls in "${calls_per_exchange[@]}"; do printf ' %s (%s) |' "${stat[${med[$calls]}:call_rows]}" "$((exchanges * legs * calls))"; done)"
  echo "| events read after their exchange was written (late) |$(cells late)"
  echo
  for calls in "${calls_per_exchange[@]}"; do
    [ "$calls" != "$base" ] || continue
    b="${med[$base]}"; m="${med[$calls]}"
    echo "With $calls calls per deployment against $base: **$(calc "printf \"%.2f\", ${stat[$m:per_wall]} / ${stat[$b:per_wall]}")×** the exchanges/s (wall),"
    echo "**$(calc "printf \"%.2f\", ${stat[$m:middle_rate]} / ${stat[$b:middle_rate]}")×** from a fifth to four fifths of the rows,"
    echo "$(calc "printf \"%.2f\", ${stat[$m:per_cpu]} / ${stat[$b:per_cpu]}")× the exchanges per CPU-second, $(calc "printf \"%.2f\", ${stat[$m:us_per]} / ${stat[$b:us_per]}")× the CPU per exchange"
    echo "($(calc "printf \"%.1f\", (${stat[$m:us_per]} - ${stat[$b:us_per]}) / ($legs * ($calls - $base))") µs more per call), $(calc "printf \"%.2f\", ${stat[$m:peak_rss_kb]} / ${stat[$b:peak_rss_kb]}")× the peak RSS."
    echo "Round by round, exchanges/s (wall): $base calls $(every "$base" per_wall); $calls calls $(every "$calls" per_wall);"
    echo "from a fifth to four fifths: $base calls $(every "$base" middle_rate); $calls calls $(every "$calls" middle_rate)."
    echo
  done
  for calls in "${calls_per_exchange[@]}"; do
    m="${med[$calls]}"
    echo "$calls calls per deployment ($m): ${stat[$m:all_rows]} exchange rows (${stat[$m:secondary_rows]} secondary), ${stat[$m:difference_rows]} difference rows;"
    echo "${stat[$m:diverged]} candidate rows with a difference beyond noise (expected ${stat[$m:load_changed]}), ${stat[$m:noise_only]} with noise only;"
    echo "${stat[$m:call_rows]} call rows, ${stat[$m:call_difference_rows]} call difference rows. Outcomes: ${stat[$m:complete]} complete, ${stat[$m:incomplete]} otherwise,"
    echo "${stat[$m:evicted]} evicted early, ${stat[$m:ignored]} events ignored (${stat[$m:late]} late). Correlator CPU by thread (${stat[$m:threads]} threads):"
    echo "${stat[$m:by_thread]:-n/a}. Loaded in ${stat[$m:load_seconds]} s (${stat[$m:load_events_per_sec]} events/s) before the correlator started."
    echo "Load average ${stat[$m:load_avg]}."
    echo
    if [ "${stat[$m:complete]}" != $((2 * exchanges)) ] || [ "${stat[$m:evicted]}" != 0 ]; then
      echo "**Not every exchange was joined whole** (${stat[$m:complete]} of $((2 * exchanges)) comparisons complete, ${stat[$m:evicted]} evicted):"
      echo "exchanges split or cut short skip their diffs, so the rates above are not comparable. A window shorter than"
      echo "the catch-up does this (requests, being small, are read well ahead of their responses); raise WINDOW_MS."
      echo
    fi
    if [ "${stat[$m:late]}" != 0 ] || [ "${stat[$m:call_rows]}" != $((exchanges * legs * calls)) ]; then
      echo "**Not every call was joined to its exchange**: a call read after its exchange was written is late and"
      echo "dropped; give the correlator a settle time (SETTLE_MS)."
      echo
    fi
  done
  echo "ClickHouse and broker CPU include anything else using them at the time; the machine is shared."
  for calls in "${calls_per_exchange[@]}"; do
    if [ -s "$tmp/c$calls-r1/perf.md" ]; then cat "$tmp/c$calls-r1/perf.md"; fi
  done
} >"$report"

# The file's other sections (correlator-replicas.sh's) stay as they are.
results_section "$results" throughput "$report"
echo
cat "$report"
log "written to ${results#"$repo/"}"
