#!/usr/bin/env bash
# How the correlator's throughput scales from one replica to two in one consumer group, and
# how much memory an open exchange holds.
#
# Replicas: N whole exchanges (request, primary, secondary and candidate, 2 KB JSON bodies, no
# downstream calls) are published once to fresh PARTITIONS-partition topics; then each
# configuration (one per REPLICAS value) reads all of them, ROUNDS times, in turns: its
# replicas, each a release correlator process with its own admin port, start together in a
# fresh consumer group with a fresh database, and the clock runs from their start
# (migrations included) until ClickHouse holds all N candidate rows. Every run reads the same
# events. Each replica's CPU, and ClickHouse's and the broker's over the same wall time, are
# read from /proc; each replica's /metrics says how many exchanges it joined and wrote, so a
# replica that got no partitions shows.
#
# Memory: a correlator is started on fresh, empty topics and its RSS read once it idles; then
# MEMORY_EXCHANGES exchanges are published with answers withheld, and once every one is open
# in its join (`shadowdiff_correlator_open_exchanges`) and it idles again, its RSS is read
# again: (RSS - idle RSS) / open exchanges. Two cases, each a correlator and topics of its own:
#   answers withheld     every request, no answer (the answers-last order of
#                        correlator-throughput.sh, before its answers): an open exchange
#                        holds its request only, so BODY_BYTES does not show
#   candidate withheld   every request with the primary's and the secondary's answers, the
#                        candidate's never: an exchange waiting for its slowest leg, with two
#                        BODY_BYTES bodies
# RSS includes what the allocator keeps after the read (librdkafka's fetch buffers, freed
# decode buffers), so it is what a replica needs, not what the join's maps alone take.
#
# Everything runs on 127.0.0.1 against the shared Kafka and ClickHouse of
# deploy/local/services.sh, which are left up; the run's topics, databases and correlators go
# when it is done (and after an interrupted run, at the next: deploy/lib.sh).
#
#   deploy/bench/correlator-replicas.sh                       the default run (100 000 exchanges)
#   EXCHANGES=20000 ROUNDS=1 deploy/bench/correlator-replicas.sh   a quick smoke run
#
# Knobs (environment):
#   EXCHANGES                 whole exchanges every replica configuration reads (100000)
#   REPLICAS                  correlator replicas per configuration, one configuration per
#                             value ("1 2")
#   ROUNDS                    runs of each configuration, in turns; the median run is reported (3)
#   MEMORY_EXCHANGES          exchanges held open for the memory measure (EXCHANGES); 0 skips it
#   BODY_BYTES                size of every response body (2048)
#   CHANGED_PERCENT           candidate answers with another price, in percent (1.5)
#   PARTITIONS                partitions of each fresh topic (6)
#   FLUSH_INTERVAL_MS         the correlators' write interval (1000)
#   WINDOW_MS                 the replicas' join window (30000, the default: one replica reads
#                             the backlog in well under it, its requests far ahead of their
#                             answers); the memory measure's correlators get 300000, as their
#                             exchanges wait for answers that never come
#   MAX_OPEN_BYTES            the correlators' max_open_bytes (4294967296: 4 GiB, so nothing is
#                             evicted early)
#   TIMEOUT_SECS              give up when a run's rows are not all in by then (600)
#   BENCH_ADMIN_PORT          the first replica's /metrics on 127.0.0.1; replica i has port + i - 1 (19486)
#   SHADOWDIFF_KAFKA_BROKERS  the broker, started by deploy/local/services.sh (127.0.0.1:9092)
#   SHADOWDIFF_CLICKHOUSE_URL the ClickHouse HTTP endpoint (http://127.0.0.1:8123)
#   BENCH_KEEP=1              keep the temp dir (configs, logs, metrics) for a look
#
# The tables go to stdout and to the "replicas" section of deploy/bench/results-correlator.md
# (correlator-throughput.sh writes the other). A benchmark, not a test: it fails only when the
# rows never all arrive, never because it was slow.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

knobs_only "$@"

exchanges="${EXCHANGES:-100000}"
read -r -a replicas <<<"${REPLICAS:-1 2}"
rounds="${ROUNDS:-3}"
memory_exchanges="${MEMORY_EXCHANGES:-$exchanges}"
body_bytes="${BODY_BYTES:-2048}"
changed_percent="${CHANGED_PERCENT:-1.5}"
partitions="${PARTITIONS:-6}"
flush_interval_ms="${FLUSH_INTERVAL_MS:-1000}"
window_ms="${WINDOW_MS:-30000}"
memory_window_ms=300000
max_open_bytes="${MAX_OPEN_BYTES:-4294967296}"
timeout_secs="${TIMEOUT_SECS:-600}"
admin_port="${BENCH_ADMIN_PORT:-19486}"
brokers="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
results="$here/results-correlator.md"

for r in "${replicas[@]}"; do [[ "$r" =~ ^[1-9][0-9]*$ ]] || die "REPLICAS: $r is not a number of replicas"; done
[ "${#replicas[@]}" -gt 0 ] || die "REPLICAS names no configuration"
max_replicas="$(printf '%s\n' "${replicas[@]}" | sort -n | tail -1)"

# One correlator benchmark at a time (correlator-throughput.sh takes the same lock): each
# would measure the other. Topics and databases are recorded, and go with lib.sh's forget.
run_claim "$repo/.local/bench/correlator.lock" "$repo/.local/bench/correlator-running"
# A correlator commits and stops within a second or two.
stop_grace_secs=15

services_up
command -v tansu >/dev/null || die "tansu (installed by deploy/local/services.sh) is needed to create topics"
if [ -s "$run_record" ]; then log "cleaning up what an earlier, interrupted run left behind"; fi
stop_recorded
run_tmpdir shadowdiff-bench-correlator-replicas

for ((i = 0; i < max_replicas; i++)); do
  tcp_open 127.0.0.1 $((admin_port + i)) && die "127.0.0.1:$((admin_port + i)) is in use; set BENCH_ADMIN_PORT to a free range"
done

log "building shadowdiff-correlator and shadowdiff-demo (release)"
cargo build --release --quiet -p shadowdiff-correlator -p shadowdiff-demo
bin_dir="$(target_dir)/release"
correlator_bin="$bin_dir/shadowdiff-correlator"
{ [ -x "$correlator_bin" ] && [ -x "$bin_dir/shadowdiff-demo" ]; } || die "no release binaries in $bin_dir after the build"
# Through a link in $tmp, so the load generator's command line names the run's temp dir
# (lib.sh's `ours`) and an interrupted run's is stopped by the next.
ln -s "$bin_dir/shadowdiff-demo" "$tmp/shadowdiff-demo"

clk_tck="$(getconf CLK_TCK)"
ch_pid="$(pid_of clickhouse)"; broker_pid="$(pid_of kafka)"
stamp="$(date +%Y%m%d%H%M%S)"
now() { date +%s.%N; }
kib() { awk -v k="$2" '$1 == k ":" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# What each run measured: stat[LABEL:KEY].
declare -A stat

# topics NAME: fresh topics for NAME, their names in requests_topic, responses_topic,
# dead_letter_topic and outbound_topic (correlator_bench_toml reads them).
topics() {
  local base="bench-replicas-$stamp-$$-$1" topic out
  requests_topic="$base.requests"; responses_topic="$base.responses"
  dead_letter_topic="$base.dead-letter"; outbound_topic="$base.outbound"
  for topic in "$requests_topic" "$responses_topic" "$dead_letter_topic" "$outbound_topic"; do
    remember topic "$topic"
    out="$(tansu topic create "$topic" --partitions "$partitions" --broker "tcp://${brokers%%,*}" 2>&1)" \
      || die "cannot create topic $topic: $out"
  done
}
forget_topics() {
  local topic
  for topic in "$requests_topic" "$responses_topic" "$dead_letter_topic" "$outbound_topic"; do forget topic "$topic"; done
}

# load NAME [ARG...]: publishes the exchanges to the current topics, the load generator's
# arguments after the common ones; its output in $tmp/NAME.load.
load() {
  local name="$1"
  shift
  "$tmp/shadowdiff-demo" load --brokers "$brokers" --requests-topic "$requests_topic" \
    --responses-topic "$responses_topic" --body-bytes "$body_bytes" --legs primary,secondary,candidate \
    --changed-percent "$changed_percent" "$@" >"$tmp/$name.load" 9>&-
}
loaded() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$tmp/$1.load" | tail -1; }

# start_correlator NAME GROUP DATABASE PORT: a correlator on the current topics, its pid in
# started_pid; config and log in $tmp/NAME.*.
start_correlator() {
  correlator_bench_toml "$2" "$3" "$4" >"$tmp/$1.toml"
  "$correlator_bin" --config "$tmp/$1.toml" --check-config >/dev/null || die "the generated config does not pass --check-config"
  # SHADOWDIFF_* variables override the config file; the benchmark runs the file as written.
  env "${clean_env[@]}" "$correlator_bin" --config "$tmp/$1.toml" >"$tmp/$1.log" 2>&1 9>&- &
  started_pid=$!
  remember_pid "$started_pid"
}
alive() { kill -0 "$1" 2>/dev/null || { tail -20 "$tmp/$2.log" >&2; die "correlator $2 exited"; }; }
# metric PORT NAME [LABEL]: the sum of a Prometheus series on a live /metrics page.
metric() {
  curl -fsS --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null \
    | awk -v name="$2" -v label="${3:-}" '$1 ~ ("^" name "([{]|$)") && index($1, label) { s += $NF } END { printf "%.0f", s }'
}
candidate_rows() { ch_query "SELECT count() FROM $1.exchanges FINAL WHERE role = 'candidate'" 2>/dev/null || echo 0; }
# idle PID NAME: waits until PID has used no more than 2 ticks of CPU in a second.
idle() {
  local before after
  before="$(cpu_ticks "$1")"
  while :; do
    sleep 1
    alive "$1" "$2"
    after="$(cpu_ticks "$1")"
    [ $((after - before)) -le 2 ] && return 0
    before="$after"
  done
}

# --- replicas: one backlog, read by each configuration in turns ------------------------------

# read_backlog LABEL REPLICAS: the configuration's replicas read every exchange; figures in
# stat[LABEL:*].
read_backlog() {
  local label="$1" n="$2" i database="bench_replicas_${stamp}_$$_${1//[^a-z0-9]/_}"
  local pids=() ch_before broker_before busy_before all_before started first_row_at="" rows=0 deadline
  remember database "$database"
  ch_query "DROP DATABASE IF EXISTS $database" >/dev/null
  ch_before="$(ticks_or_zero "$ch_pid")"; broker_before="$(ticks_or_zero "$broker_pid")"
  read -r busy_before all_before < <(machine_ticks)
  log "$label: $n replica(s) read the $exchanges exchanges"
  started="$(now)"
  for ((i = 0; i < n; i++)); do
    start_correlator "$label-$i" "bench-replicas-$stamp-$$-$label" "$database" $((admin_port + i))
    pids+=("$started_pid")
  done
  # When every replica has written rows (so has partitions), and how many rows there were.
  local active=0 all_active_at="" all_active_rows=0 wrote=()
  deadline=$(($(date +%s) + timeout_secs))
  while :; do
    for ((i = 0; i < n; i++)); do alive "${pids[i]}" "$label-$i"; done
    if [ -z "$all_active_at" ]; then
      for ((i = 0; i < n; i++)); do
        if [ -z "${wrote[i]:-}" ] && [ "$(metric $((admin_port + i)) shadowdiff_correlator_rows_written_total)" -gt 0 ]; then
          wrote[i]=1; active=$((active + 1))
        fi
      done
    fi
    rows="$(candidate_rows "$database")"
    if [ -z "$first_row_at" ] && [ "${rows:-0}" -gt 0 ]; then first_row_at="$(now)"; stat[$label:first_rows]="$rows"; fi
    if [ -z "$all_active_at" ] && [ "$active" = "$n" ]; then all_active_at="$(now)"; all_active_rows="${rows:-0}"; fi
    [ "${rows:-0}" -ge "$exchanges" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "$label: only $rows of $exchanges candidate rows after ${timeout_secs}s (BENCH_KEEP=1 keeps the logs)"
    sleep 0.25
  done
  local finished ch_after broker_after busy_after all_after cpu="" total=0 rss="" written="" joined="" incomplete="" t
  finished="$(now)"
  for ((i = 0; i < n; i++)); do
    t="$(cpu_ticks "${pids[i]}")"
    total=$((total + t))
    cpu+="${cpu:+, }$(calc "printf \"%.1f\", $t / $clk_tck")"
    rss+="${rss:+, }$(($(kib "${pids[i]}" VmHWM) / 1024))"
    written+="${written:+, }$(metric $((admin_port + i)) shadowdiff_correlator_rows_written_total 'table="exchanges"')"
    joined+="${joined:+, }$(metric $((admin_port + i)) shadowdiff_correlator_exchanges_total)"
    incomplete+="${incomplete:+, }$(( $(metric $((admin_port + i)) shadowdiff_correlator_exchanges_total)
      - $(metric $((admin_port + i)) shadowdiff_correlator_exchanges_total 'outcome="complete"') ))"
  done
  ch_after="$(ticks_or_zero "$ch_pid")"; broker_after="$(ticks_or_zero "$broker_pid")"
  read -r busy_after all_after < <(machine_ticks)
  for ((i = 0; i < n; i++)); do stop_pid "${pids[i]}" "$tmp"; done
  forget database "$database"

  local wall
  wall="$(calc "printf \"%.2f\", $finished - $started")"
  stat[$label:wall]="$wall"
  stat[$label:per_wall]="$(calc "printf \"%.0f\", $exchanges / $wall")"
  stat[$label:steady]="$(calc "t = $finished - $first_row_at; printf \"%.0f\", ($exchanges - ${stat[$label:first_rows]}) / (t > 0 ? t : 1)")"
  if [ -n "$all_active_at" ]; then
    stat[$label:all_active]="$(calc "printf \"%.1f s, %d rows\", $all_active_at - $started, $all_active_rows")"
    stat[$label:all_active_rate]="$(calc "t = $finished - $all_active_at; n = $exchanges - $all_active_rows; if (t > 0 && n > $exchanges / 10) printf \"%.0f\", n / t; else print \"n/a\"")"
  else
    stat[$label:all_active]="never"; stat[$label:all_active_rate]="n/a"
  fi
  stat[$label:cpu_each]="$cpu"
  stat[$label:cpu]="$(calc "printf \"%.1f\", $total / $clk_tck")"
  stat[$label:cores]="$(calc "printf \"%.2f\", $total / $clk_tck / $wall")"
  stat[$label:per_cpu]="$(calc "printf \"%.0f\", $exchanges * $clk_tck / $total")"
  stat[$label:rss_each]="$rss"
  stat[$label:written_each]="$written"
  stat[$label:joined_each]="$joined"
  stat[$label:incomplete_each]="$incomplete"
  stat[$label:written]="$(tr ',' '\n' <<<"$written" | awk '{ s += $1 } END { print s }')"
  # Every replica joined and wrote something: it had partitions.
  stat[$label:all_busy]="$(tr ',' '\n' <<<"$written" | awk '$1 == 0 { z = 1 } END { print z ? "no" : "yes" }')"
  stat[$label:ch_cpu]="$(calc "printf \"%.1f\", ($ch_after - $ch_before) / $clk_tck")"
  stat[$label:broker_cpu]="$(calc "printf \"%.1f\", ($broker_after - $broker_before) / $clk_tck")"
  stat[$label:ch_cores]="$(calc "printf \"%.2f\", ($ch_after - $ch_before) / $clk_tck / $wall")"
  stat[$label:broker_cores]="$(calc "printf \"%.2f\", ($broker_after - $broker_before) / $clk_tck / $wall")"
  stat[$label:machine_busy]="$(calc "printf \"%.0f\", 100 * ($busy_after - $busy_before) / ($all_after - $all_before)")"
  stat[$label:machine_cores]="$(calc "printf \"%.2f\", $(nproc) * ($busy_after - $busy_before) / ($all_after - $all_before)")"
  stat[$label:load_avg]="$(cut -d' ' -f1-3 /proc/loadavg)"
  log "$label: ${stat[$label:per_wall]} exchanges/s; CPU per replica ${stat[$label:cpu_each]} s; exchange rows written per replica $written"
}

topics backlog
log "publishing $exchanges whole exchanges ($body_bytes-byte bodies), once for every configuration"
load backlog --exchanges "$exchanges" || die "the load generator failed"
[ "$(loaded backlog exchanges)" = "$exchanges" ] || die "the load generator published $(loaded backlog exchanges) of $exchanges exchanges"
log "loaded: $(tail -1 "$tmp/backlog.load")"
for round in $(seq "$rounds"); do
  for n in "${replicas[@]}"; do read_backlog "r$n-r$round" "$n"; done
done
forget_topics

# --- memory per open exchange ----------------------------------------------------------------

# hold_open LABEL [LOAD ARG...]: a correlator on fresh topics, its RSS idle, then with every
# exchange the load leaves open; figures in stat[LABEL:*].
hold_open() {
  local label="$1" database="bench_replicas_${stamp}_$$_${1//[^a-z0-9]/_}" pid loader="" open=0 deadline
  # correlator_bench_toml reads it.
  local window_ms="$memory_window_ms"
  shift
  topics "$label"
  remember database "$database"
  ch_query "DROP DATABASE IF EXISTS $database" >/dev/null
  start_correlator "$label" "bench-replicas-$stamp-$$-$label" "$database" "$admin_port"
  pid="$started_pid"
  poll 60 http_ok "http://127.0.0.1:$admin_port/healthz" || { tail -20 "$tmp/$label.log" >&2; die "$label: the correlator did not come up"; }
  # Its consumer has joined the group and polls empty partitions; its tables are made.
  sleep 3
  idle "$pid" "$label"
  stat[$label:idle_kb]="$(kib "$pid" VmRSS)"
  log "$label: idle correlator RSS $((stat[$label:idle_kb] / 1024)) MiB; publishing $memory_exchanges exchanges, $label"
  if [ "$label" = answers-withheld ]; then
    # The load publishes the answers after a line on its stdin, which never comes; fd 7
    # holds the pipe open.
    mkfifo "$tmp/$label.go"
    exec 7<>"$tmp/$label.go"
    load "$label" --exchanges "$memory_exchanges" "$@" <"$tmp/$label.go" 7>&- &
    loader=$!
    remember_pid "$loader"
    poll "$timeout_secs" grep -q '^held ' "$tmp/$label.load" || die "$label: the requests were not published"
  else
    load "$label" --exchanges "$memory_exchanges" "$@" || die "the load generator failed"
  fi
  deadline=$(($(date +%s) + timeout_secs))
  until [ "$open" = "$memory_exchanges" ]; do
    alive "$pid" "$label"
    [ "$(date +%s)" -lt "$deadline" ] || die "$label: $open of $memory_exchanges exchanges open after ${timeout_secs}s"
    sleep 1
    open="$(metric "$admin_port" shadowdiff_correlator_open_exchanges)"
  done
  idle "$pid" "$label"
  stat[$label:rss_kb]="$(kib "$pid" VmRSS)"
  stat[$label:hwm_kb]="$(kib "$pid" VmHWM)"
  stat[$label:open]="$(metric "$admin_port" shadowdiff_correlator_open_exchanges)"
  stat[$label:evicted]="$(metric "$admin_port" shadowdiff_correlator_evicted_total)"
  stat[$label:per_open]="$(calc "printf \"%.0f\", (${stat[$label:rss_kb]} - ${stat[$label:idle_kb]}) * 1024 / ${stat[$label:open]}")"
  stat[$label:events]="$(loaded "$label" events)"
  stat[$label:encoded]="$(calc "printf \"%.0f\", $(loaded "$label" bytes) / $memory_exchanges")"
  log "$label: ${stat[$label:open]} open, RSS $((stat[$label:rss_kb] / 1024)) MiB: ${stat[$label:per_open]} bytes per open exchange"
  stop_pid "$pid" "$tmp"
  if [ -n "$loader" ]; then stop_pid "$loader" "$tmp"; exec 7>&-; fi
  forget_topics
  forget database "$database"
}

memory_cases=()
if [ "$memory_exchanges" -gt 0 ]; then
  hold_open answers-withheld --answers-after-stdin
  hold_open candidate-withheld --withhold candidate
  memory_cases=(answers-withheld candidate-withheld)
fi

# --- the report ----------------------------------------------------------------------------

declare -A med
for n in "${replicas[@]}"; do med[$n]="$(median_run "r$n")"; done
cells() { local n out=""; for n in "${replicas[@]}"; do out+=" ${stat[${med[$n]}:$1]} |"; done; echo "$out"; }
every() { every_run "r$1" "$2"; }
header="| measure |"; rule="|---|"
for n in "${replicas[@]}"; do
  if [ "$n" = 1 ]; then header+=" 1 replica |"; else header+=" $n replicas |"; fi
  rule+="---:|"
done
base="${replicas[0]}"
# ratio A B: A / B to two places; n/a when either is not a positive number.
ratio() { calc "a = \"$1\" + 0; b = \"$2\" + 0; if (a > 0 && b > 0) printf \"%.2f\", a / b; else print \"n/a\""; }

report="$tmp/results.md"
{
  echo "## One and two replicas in one consumer group; memory per open exchange"
  echo
  echo "(deploy/bench/correlator-replicas.sh) $(run_stamp)"
  echo "$(nproc) CPUs shared by the broker ($(tansu --version 2>/dev/null | head -1 || echo '?'), memory storage), ClickHouse $(ch_query "SELECT version()") and the"
  echo "correlators, and with another engineer's tests running at the same time: CPU was contended, so the"
  echo "configurations ran in turns, round by round, and are compared as ratios within this run."
  echo "$exchanges whole exchanges (a request and three ${body_bytes}-byte JSON answers, each leg with its own random"
  echo "\`trace_id\`, $changed_percent% of candidate answers with another price, no downstream calls) were published once"
  echo "to fresh $partitions-partition topics ($(loaded backlog events) events, $(calc "printf \"%.0f\", $(loaded backlog bytes) / 1048576") MiB encoded), and read by every run: each run's"
  echo "replicas (release builds, each its own process and admin port) started together in a fresh consumer group,"
  echo "writing to a fresh database; the clock runs from their start (migrations and the group's join included) until"
  echo "\`SELECT count() FROM exchanges FINAL WHERE role = 'candidate'\` returns $exchanges (polled every 0.25 s)."
  echo "\`flush_interval_ms = $flush_interval_ms\`, \`window_ms = $window_ms\`, \`max_open_bytes = $max_open_bytes\`, defaults otherwise."
  echo "Each configuration ran $rounds times; each column is its median run by exchanges/s. Per-replica cells list"
  echo "the replicas in start order. ClickHouse and broker CPU are their processes' over the run's wall time"
  echo "(/proc/PID/stat), anything else using them included."
  echo
  echo "$header"
  echo "$rule"
  echo "| wall time, start to the last candidate row |$(cells wall | sed 's/ |/ s |/g')"
  echo "| **exchanges/s, wall** |$(cells per_wall | sed 's/ \([0-9]*\) |/ **\1** |/g')"
  echo "| exchanges/s after the first row |$(cells steady)"
  echo "| every replica writing (has partitions) after, rows in by then |$(cells all_active)"
  echo "| exchanges/s once every replica was writing |$(cells all_active_rate)"
  echo "| correlator CPU per replica (user + system), s |$(cells cpu_each)"
  echo "| correlator CPU, all replicas, s |$(cells cpu)"
  echo "| correlator cores used on average, all replicas |$(cells cores)"
  echo "| exchanges per correlator CPU-second |$(cells per_cpu)"
  echo "| peak RSS per replica (VmHWM), MiB |$(cells rss_each)"
  echo "| exchange rows written per replica (\`rows_written_total{table=\"exchanges\"}\`) |$(cells written_each)"
  echo "| comparisons per replica (\`exchanges_total\`) |$(cells joined_each)"
  echo "| of which not complete (a leg missing when the window ended) |$(cells incomplete_each)"
  echo "| every replica had partitions (wrote rows) |$(cells all_busy)"
  echo "| ClickHouse server CPU, s (cores) |$(for n in "${replicas[@]}"; do printf ' %s (%s) |' "${stat[${med[$n]}:ch_cpu]}" "${stat[${med[$n]}:ch_cores]}"; done)"
  echo "| broker CPU, s (cores) |$(for n in "${replicas[@]}"; do printf ' %s (%s) |' "${stat[${med[$n]}:broker_cpu]}" "${stat[${med[$n]}:broker_cores]}"; done)"
  echo "| whole machine busy, % of $(nproc) CPUs (cores) |$(for n in "${replicas[@]}"; do printf ' %s (%s) |' "${stat[${med[$n]}:machine_busy]}" "${stat[${med[$n]}:machine_cores]}"; done)"
  echo
  for n in "${replicas[@]}"; do
    [ "$n" != "$base" ] || continue
    b="${med[$base]}"; m="${med[$n]}"
    echo "**$n replicas against $base: $(ratio "${stat[$m:per_wall]}" "${stat[$b:per_wall]}")× the exchanges/s (wall)**, $(ratio "${stat[$m:steady]}" "${stat[$b:steady]}")× after the first row,"
    echo "$(ratio "${stat[$m:all_active_rate]}" "${stat[$b:all_active_rate]}")× once every replica was writing, $(ratio "${stat[$m:cpu]}" "${stat[$b:cpu]}")× the correlator CPU in all. Round by round, exchanges/s (wall): $base: $(every "$base" per_wall); $n: $(every "$n" per_wall)."
    # Runs whose replicas wrote more rows than there are: a rebalance moved partitions mid-run.
    for round in $(seq "$rounds"); do
      l="r$n-r$round"
      if [ "${stat[$l:written]}" -gt $((2 * exchanges)) ]; then
        echo "$l: the replicas wrote ${stat[$l:written]} exchange rows for $((2 * exchanges)) comparisons (some read twice after a rebalance),"
        echo "every replica writing after ${stat[$l:all_active]}, ${stat[$l:per_wall]} exchanges/s (wall); not complete per replica: ${stat[$l:incomplete_each]}."
      fi
    done
    echo "During the $n-replica run the correlators used ${stat[$m:cores]} cores, ClickHouse ${stat[$m:ch_cores]} and the broker"
    echo "${stat[$m:broker_cores]}, of a machine busy ${stat[$m:machine_cores]} of $(nproc) cores (the rest: the tests running"
    echo "alongside, the poll, the kernel)."
    echo
  done
  if [ "${#memory_cases[@]}" -gt 0 ]; then
    echo "### Memory per open exchange"
    echo
    echo "A correlator (the same settings, but \`window_ms = $memory_window_ms\`) on fresh, empty topics: its RSS once started and"
    echo "idle; then $memory_exchanges exchanges"
    echo "published with answers withheld, and its RSS (VmRSS) once \`shadowdiff_correlator_open_exchanges\` counts every"
    echo "one and it idles again. Bytes per open exchange = (RSS − idle RSS) / open exchanges. *Answers withheld*: every"
    echo "request, no answer, as in correlator-throughput.sh's answers-last order before its answers come; an open"
    echo "exchange holds its request only (a \`GET\` without a body), so the ${body_bytes}-byte answer bodies do not show."
    echo "*Candidate withheld*: every request with the primary's and the secondary's answers, never the candidate's: an"
    echo "exchange waiting for its slowest leg, with two ${body_bytes}-byte bodies. RSS includes what the allocator and"
    echo "librdkafka keep after the read, so it is what a replica needs, not the join's maps alone."
    echo
    echo "| measure | answers withheld | candidate withheld |"
    echo "|---|---:|---:|"
    mcell() { local c out=""; for c in "${memory_cases[@]}"; do out+=" $("$@" "$c") |"; done; echo "$out"; }
    mib_of() { calc "printf \"%.0f MiB\", ${stat[$2:$1]} / 1024"; }
    raw() { echo "${stat[$2:$1]}"; }
    echo "| idle correlator RSS |$(mcell mib_of idle_kb)"
    echo "| RSS with every exchange open |$(mcell mib_of rss_kb)"
    echo "| peak RSS (VmHWM) |$(mcell mib_of hwm_kb)"
    echo "| open exchanges |$(mcell raw open)"
    echo "| exchanges evicted early |$(mcell raw evicted)"
    echo "| **bytes per open exchange** |$(for c in "${memory_cases[@]}"; do printf ' **%s** |' "${stat[$c:per_open]}"; done)"
    echo "| encoded event bytes per exchange published (before compression) |$(mcell raw encoded)"
    echo
  fi
} >"$report"

results_section "$results" replicas "$report"
echo
cat "$report"
log "written to the replicas section of ${results#"$repo/"}"
