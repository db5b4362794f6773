#!/usr/bin/env bash
# How fast `shadowctl replay --speed max` sends a recorded window to a build under test, and
# how long after the replay ends its verdict arrives, judged either way shadowctl can. A demo
# backend (the primary) behind a release tap takes EXCHANGES item reads from wrk, the tap
# publishing each request and the primary's answer; `shadowctl record` takes that window into
# an Avro file. Then the file is replayed to a second demo backend (the build under test), with
# and without a third as the baseline, at each concurrency, RUNS times in turns, each run under
# its own --run id, and judged
#   published  its events published to fresh topics that a release correlator reads, and the
#              verdict asked of a release verdict service; or
#   here       compared inside shadowctl (--correlator-config, --verdict-config), its rows
#              written to ClickHouse and judged in process: no broker, correlator or verdict
#              service (the configs' [kafka] point nowhere).
# Each replay's rows go to a database of its own, as a CI job's to a fresh ClickHouse.
# Everything runs on 127.0.0.1 against the shared Kafka (or a fresh one: FRESH_BROKER=1) and
# ClickHouse of deploy/local/services.sh, which are left up; the run's topics, databases,
# services and backends go. The services' configs are the demo's (deploy/local/config/*.toml)
# with the ports, topics, database and group ids changed, and no settle for downstream calls
# (these backends make none). shadowctl's peak RSS is taken for every run, and once per way of
# judging for a replay of a recording of one exchange, the floor that the memory held per
# exchange is reckoned from.
#
#   deploy/bench/replay.sh                               the default run (20 000 exchanges)
#   EXCHANGES=2000 RUNS=1 deploy/bench/replay.sh         a quick smoke run
#
# Knobs (environment):
#   JUDGE                     "published", "here", or both, in turns ("published here")
#   EXCHANGES                 item reads through the tap, and so exchanges recorded (20000)
#   CONCURRENCY               the replay's --concurrency values, in turns ("16 64")
#   BASELINES                 "no" (a candidate only), "yes" (and a baseline), or both ("no yes")
#   RUNS                      replays of each configuration, in turns; medians reported (3)
#   RATE                      the replay's --rate: exchanges started a second at most (10000,
#                             its bound; shadowctl's default, 500, would be the limit otherwise)
#   WAIT                      the replay's --wait for every exchange to be compared (10m)
#   GRACE                     the recording's --grace (5s)
#   LINGER_MS                 linger_ms in the replay's [kafka] (unset: the producer's default, 5);
#                             published runs only
#   SHARED_TOPICS=1           every published replay to the same topics and one correlator,
#                             rather than fresh topics and a fresh correlator for each (see below)
#   PARTITIONS                partitions of each fresh topic (6)
#   WRK_THREADS, WRK_CONNECTIONS   wrk -t and -c for the recorded traffic (2, 64)
#   FRESH_BROKER=1            run on a broker of the run's own (tansu, memory storage, on
#                             BASE+9), started empty and stopped at the end, as a CI runner's
#                             `services.sh up` has, rather than the shared, long-running one
#   BENCH_PORT_BASE           ports BASE..BASE+9 on 127.0.0.1 are used (18230)
#   SHADOWDIFF_KAFKA_BROKERS  the shared broker, started by deploy/local/services.sh (127.0.0.1:9092)
#   SHADOWDIFF_CLICKHOUSE_URL the ClickHouse HTTP endpoint (http://127.0.0.1:8123)
#   BENCH_KEEP=1              keep the temp dir (configs, logs, the recording, each run's output)
#                             and the databases
#
# Each published replay goes to fresh topics, read by a correlator started for it, as a CI job
# replays a recording to a pipeline of its own: tansu 0.6's memory storage lists every batch a
# partition holds on each fetch, so replays into topics that already hold earlier runs' get
# slower run after run (SHARED_TOPICS=1 shows it).
#
# The tables go to stdout and to deploy/bench/results-replay.md (results-replay-fresh-broker.md
# with FRESH_BROKER=1). A benchmark, not a test: it fails when a replay is refused or
# unavailable, or a run's exchanges are not all compared within WAIT (published) or not all
# written (here), never because it was slow.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

knobs_only "$@"

read -r -a judges <<<"${JUDGE:-published here}"
exchanges="${EXCHANGES:-20000}"
read -r -a concurrencies <<<"${CONCURRENCY:-16 64}"
read -r -a baselines <<<"${BASELINES:-no yes}"
runs="${RUNS:-3}"
rate="${RATE:-10000}"
wait_for="${WAIT:-10m}"
grace="${GRACE:-5s}"
linger_ms="${LINGER_MS:-}"
shared_topics="${SHARED_TOPICS:-0}"
partitions="${PARTITIONS:-6}"
wrk_threads="${WRK_THREADS:-2}"
wrk_connections="${WRK_CONNECTIONS:-64}"
base="${BENCH_PORT_BASE:-18230}"
brokers="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
fresh_broker="${FRESH_BROKER:-0}"
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
results="$here/results-replay.md"
if [ "$fresh_broker" = 1 ]; then results="$here/results-replay-fresh-broker.md"; fi
config_dir="$repo/deploy/local/config"

primary_port="$base"; tap_port=$((base + 1)); tap_admin_port=$((base + 2))
correlator_admin_port=$((base + 3)); verdict_port=$((base + 4)); verdict_admin_port=$((base + 5))
candidate_port=$((base + 6)); baseline_port=$((base + 7)); mirror_admin_port=$((base + 8))
fresh_broker_port=$((base + 9))
# The demo's reader token (deploy/local/demo.sh): the verdict config keeps only its digest.
reader_token=shadowdiff-local-demo-reader

kafka_host="${brokers%%,*}"
# pid_of, ch_query, cpu_ticks and machine_ticks come from lib.sh.
ch_query_secs=60
now() { echo "$EPOCHREALTIME"; }

[ "$exchanges" -ge 100 ] || die "EXCHANGES must be at least 100"
[ "$runs" -ge 1 ] || die "RUNS must be at least 1"
for b in "${baselines[@]}"; do case "$b" in no | yes) ;; *) die "BASELINES takes no and yes, not $b" ;; esac; done
[ "${#judges[@]}" -ge 1 ] || die "JUDGE takes published and here"
for j in "${judges[@]}"; do case "$j" in published | here) ;; *) die "JUDGE takes published and here, not $j" ;; esac; done
# judging WAY: whether this run judges any replay that way.
judging() { [[ " ${judges[*]} " == *" $1 "* ]]; }

# --- what this run starts and creates: recorded (deploy/lib.sh), so a run killed with
# --- SIGKILL is cleaned by the next ----------------------------------------------------------

# One run at a time: a second would take the first's services for leftovers, and both would
# measure each other.
run_claim "$repo/.local/bench/replay.lock" "$repo/.local/bench/replay-running"
# The tap and the correlator flush and commit before they exit.
stop_grace_secs=10
# The run's topics and databases, recorded as "topic NAME" and "database NAME".
forget_recorded() {
  case "$1" in
    topic) tansu topic delete "$2" --broker "tcp://$kafka_host" >/dev/null 2>&1 || log "could not delete topic $2" ;;
    database)
      if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept database $2"
      else ch_query "DROP DATABASE IF EXISTS $2" >/dev/null 2>&1 || log "could not drop database $2"; fi ;;
  esac
}

# --- prerequisites ---------------------------------------------------------------------

# Before the cleanup below: deleting an earlier run's topics needs the broker.
services_up
command -v tansu >/dev/null || die "tansu (installed by deploy/local/services.sh) is needed to create topics"
command -v wrk >/dev/null || apt_install wrk
# GNU time, for shadowctl's own CPU (bash's `time` would count the whole pipeline).
[ -x /usr/bin/time ] || apt_install time

if [ -s "$run_record" ]; then log "cleaning up what an earlier, interrupted run left behind"; fi
stop_recorded
run_tmpdir shadowdiff-bench-replay

for port in $(seq "$base" $((base + 9))); do
  tcp_open 127.0.0.1 "$port" && die "127.0.0.1:$port is in use; set BENCH_PORT_BASE to another range"
done

log "building the tap, correlator, verdict, shadowctl and demo (release)"
cargo build --release --quiet -p shadowdiff-tap -p shadowdiff-correlator -p shadowdiff-verdict -p shadowctl \
  -p shadowdiff-demo
bin_dir="$(target_dir)/release"
for b in shadowdiff-tap shadowdiff-correlator shadowdiff-verdict shadowctl shadowdiff-demo; do
  [ -x "$bin_dir/$b" ] || die "no $bin_dir/$b after the build"
done

# --- a fresh broker, when asked for -----------------------------------------------------------

broker_pid="$(pid_of kafka)"
if [ "$fresh_broker" = 1 ]; then
  # Run through a link in the temp dir, so its command line names the run (deploy/lib.sh
  # stops only such processes).
  ln -s "$(command -v tansu)" "$tmp/tansu"
  brokers="127.0.0.1:$fresh_broker_port"
  log "starting a fresh broker of the run's own on $brokers (tansu, memory storage)"
  "$tmp/tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine memory://tansu/ >"$tmp/broker.log" 2>&1 9>&- &
  broker_pid=$!
  remember_pid "$broker_pid"
  poll 30 tcp_open 127.0.0.1 "$fresh_broker_port" || { tail -20 "$tmp/broker.log" >&2; die "the fresh broker did not start"; }
  kafka_host="$brokers"
fi

# --- fresh topics and databases --------------------------------------------------------------

stamp="$(date +%Y%m%d%H%M%S)"
run_id="bench-replay-$stamp-$$"
# Each replay's rows go to a database of its own, bench_replay_..._NAME (run_database), as a CI
# job's go to a fresh ClickHouse: the verdict's queries read every row of the candidate's
# deployment, so one database for all would make each replay judged later slower than the last.
database="bench_replay_${stamp}_$$"

# forget KIND NAME: a recorded topic or database undone at once, and taken off the record.
forget() {
  forget_recorded "$1" "$2"
  sed -i "/^$1 $(sed 's/[.[\*^$/]/\\&/g' <<<"$2")\$/d" "$run_record"
}

# create_topics PREFIX: PREFIX.requests, .responses, .dead-letter and .outbound (which the
# correlator subscribes to, though no egress tap publishes here), recorded (a fresh broker's
# go with it).
create_topics() {
  local topic out
  for topic in "$1.requests" "$1.responses" "$1.dead-letter" "$1.outbound"; do
    if [ "$fresh_broker" != 1 ]; then remember topic "$topic"; fi
    out="$(tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$kafka_host" 2>&1)" \
      || die "cannot create topic $topic: $out"
  done
}
# delete_topics PREFIX: as soon as a replay is done with them, so the broker's memory does not
# grow with every replay; they leave the record too.
delete_topics() {
  local topic
  for topic in "$1.requests" "$1.responses" "$1.dead-letter" "$1.outbound"; do
    if [ "$fresh_broker" = 1 ]; then forget_recorded topic "$topic"; else forget topic "$topic"; fi
  done
}

# The tap publishes to the live topics, which only `record` reads; the replays go to their
# own, which a correlator reads, as in a CI job that replays a recording to a pipeline of its
# own. So no correlator ever sees the recorded traffic itself.
live_prefix="$run_id.live"
create_topics "$live_prefix"

# run_database NAME: a fresh database for one replay, $database_NAME, recorded; sets run_db.
# Whatever writes to it first makes its tables.
run_database() {
  run_db="${database}_${1//[^a-zA-Z0-9]/_}"
  remember database "$run_db"
  ch_query "DROP DATABASE IF EXISTS $run_db" >/dev/null
}
# in_run_database OUT: $tmp/OUT.toml's [clickhouse] database made run_db.
in_run_database() { sed -i "s/^database = \"$database\"\$/database = \"$run_db\"/" "$tmp/$1.toml"; }

# --- configs: the demo's, with this run's names ----------------------------------------------

# drop_sections FILE TABLE...: FILE without these tables ([t] and [[t]]) and their keys.
drop_sections() {
  local file="$1"; shift
  awk -v names="$(printf '%s\n' "$@")" '
    BEGIN { n = split(names, list, "\n"); for (i = 1; i <= n; i++) if (list[i] != "") drop[list[i]] = 1 }
    /^\[/ { t = $0; gsub(/^\[+|\]+.*$/, "", t); skipping = (t in drop) }
    !skipping' "$file"
}

# derive NAME OUT TOPIC_PREFIX [TABLE...]: deploy/local/config/NAME.toml as $tmp/OUT.toml,
# with the bench's ports, database, group ids (named after OUT) and topics (none for the
# prefix -), and without the tables named.
derive() {
  local name="$1" out="$tmp/$2.toml" group="$run_id-$2" prefix="$3"; shift 3
  {
    echo "# deploy/local/config/$name.toml as deploy/bench/replay.sh runs it: its own ports, topics,"
    echo "# database and group ids, so it never meets the demo or another run."
    # Its comments go: they speak of the demo's ports and neighbours.
    drop_sections "$config_dir/$name.toml" "$@" | sed \
      -e '/^[[:space:]]*#/d' \
      -e "s/127\.0\.0\.1:18080\b/127.0.0.1:$tap_port/g" \
      -e "s/127\.0\.0\.1:18081\b/127.0.0.1:$primary_port/g" \
      -e "s/127\.0\.0\.1:18082\b/127.0.0.1:$candidate_port/g" \
      -e "s/127\.0\.0\.1:18083\b/127.0.0.1:$baseline_port/g" \
      -e "s/127\.0\.0\.1:18090\b/127.0.0.1:$verdict_port/g" \
      -e "s/127\.0\.0\.1:19464\b/127.0.0.1:$tap_admin_port/g" \
      -e "s/127\.0\.0\.1:19465\b/127.0.0.1:$mirror_admin_port/g" \
      -e "s/127\.0\.0\.1:19466\b/127.0.0.1:$correlator_admin_port/g" \
      -e "s/127\.0\.0\.1:19467\b/127.0.0.1:$verdict_admin_port/g" \
      -e "s/127\.0\.0\.1:9092\b/$brokers/g" \
      -e "s|http://127\.0\.0\.1:8123\b|$ch_url|g" \
      -e "s/\bshadowdiff_demo\b/$database/g" \
      -e "s/^group_id = \"shadowdiff-[a-z]*\"/group_id = \"$group\"/" \
      -e "s/^id = \"tap-local\"/id = \"$run_id\"/"
    if [ "$prefix" != - ]; then cat <<EOF

[topics]
requests = "$prefix.requests"
responses = "$prefix.responses"
dead_letter = "$prefix.dead-letter"
outbound = "$prefix.outbound"
partitions = $partitions
# Made by deploy/bench/replay.sh, which deletes them after the run.
create = false
EOF
    fi
    printf '\n[log]\nlevel = "warn"\n'
  } >"$out"
  # Nothing of the demo's may be left: it would meet the demo's services, or another run's.
  if grep -nE '1808[0-3]|18090|1946[4-7]|shadowdiff_demo|"shadowdiff-(correlator|mirror)"|tap-local' "$out" >&2; then
    die "$name.toml still names the demo's ports, database or groups (above); the sed in derive() needs updating"
  fi
}

# check_config SERVICE OUT: $tmp/OUT.toml passes SERVICE's --check-config.
check_config() {
  env "${clean_env[@]}" "$bin_dir/shadowdiff-$1" --config "$tmp/$2.toml" --check-config >/dev/null \
    || die "$tmp/$2.toml does not pass --check-config"
}
derive tap tap "$live_prefix"
derive verdict verdict - console
check_config tap tap
check_config verdict verdict
# Judged here: the mirror's [mirror] and the correlator's rules as a published replay has
# them, no topics, and [kafka] where nothing listens, so a replay that reached for a broker
# would fail rather than pass unnoticed.
if judging here; then
  derive mirror mirror-here - mirror.profiles mirror.profiles.targets
  derive correlator correlator-here - correlator.outbound
  sed -i 's/^brokers = .*/brokers = "127.0.0.1:1"/' "$tmp/mirror-here.toml" "$tmp/correlator-here.toml"
  check_config correlator correlator-here
fi
correlator_window_ms="$(sed -n 's/^window_ms = \([0-9]*\).*/\1/p' "$config_dir/correlator.toml")"

# replay_pipeline NAME: for a published replay, fresh topics $run_id.NAME.* and database
# (run_database), the mirror config a replay to them runs by ($tmp/mirror-NAME.toml), and a
# verdict service and a correlator on them ($tmp/verdict-NAME.toml, correlator-NAME.toml),
# started; sets replay_prefix, run_db, verdict_pid and correlator_pid. The mirror's [mirror]
# section (allowed targets, the tap's hmac key, loopback allowed) and [kafka] are what the
# replay runs by; its profiles are the demo's, and the replay brings its own. The
# correlator's [correlator.outbound] goes: its settle waits for the demo's egress taps, and no
# backend here calls anything downstream, so a whole exchange is written at once (the
# default) rather than a second later.
replay_pipeline() {
  replay_prefix="$run_id.$1"
  create_topics "$replay_prefix"
  run_database "$1"
  derive mirror "mirror-$1" "$replay_prefix" mirror.profiles mirror.profiles.targets
  if [ -n "$linger_ms" ]; then sed -i "/^\[kafka\]/a linger_ms = $linger_ms" "$tmp/mirror-$1.toml"; fi
  derive verdict "verdict-$1" - console
  in_run_database "verdict-$1"
  derive correlator "correlator-$1" "$replay_prefix" correlator.outbound
  in_run_database "correlator-$1"
  check_config correlator "correlator-$1"
  # One after the other: each makes the database's tables at start-up.
  start "verdict-$1" "http://127.0.0.1:$verdict_admin_port/healthz" "$bin_dir/shadowdiff-verdict" \
    --config "$tmp/verdict-$1.toml"
  verdict_pid="$started"
  start "correlator-$1" "http://127.0.0.1:$correlator_admin_port/healthz" "$bin_dir/shadowdiff-correlator" \
    --config "$tmp/correlator-$1.toml"
  correlator_pid="$started"
}
# replay_pipeline_done: stops the correlator and the verdict service, and deletes the topics
# and the database.
replay_pipeline_done() {
  stop_pid "$correlator_pid" "$tmp"
  stop_pid "$verdict_pid" "$tmp"
  delete_topics "$replay_prefix"
  forget database "$run_db"
}
# here_pipeline NAME: for a replay judged here, a fresh database (run_database) and the
# correlator config naming it, $tmp/correlator-NAME.toml; sets run_db. shadowctl makes its tables.
here_pipeline() {
  run_database "$1"
  cp "$tmp/correlator-here.toml" "$tmp/correlator-$1.toml"
  in_run_database "correlator-$1"
}

# --- the services ------------------------------------------------------------------------------

# start NAME HEALTH_URL COMMAND...: COMMAND in the background (SHADOWDIFF_* unset, so every
# config runs as written), logged to $tmp/NAME.log, until HEALTH_URL answers; sets `started`.
start() {
  local name="$1" url="$2"; shift 2
  env "${clean_env[@]}" "$@" >"$tmp/$name.log" 2>&1 9>&- &
  started=$!
  remember_pid "$started"
  up_or_dead() {
    kill -0 "$started" 2>/dev/null || { tail -20 "$tmp/$name.log" >&2; die "$name exited at start-up"; }
    http_ok "$url"
  }
  poll 60 up_or_dead || { tail -20 "$tmp/$name.log" >&2; die "$name did not answer $url within 60s"; }
}

# The demo's backends, with their honest noise (timestamps, trace ids, instance headers,
# variants in random order), as deploy/local/demo.sh runs them. Every backend here is the
# same version, so the build under test should pass.
# A backend's command line names no file of the run, and deploy/lib.sh stops only processes
# whose command line names the run's temp dir (pids get reused): so they run as a link there.
ln -s "$bin_dir/shadowdiff-demo" "$tmp/shadowdiff-demo"
backend() {
  start "$1" "http://127.0.0.1:$2/healthz" "$tmp/shadowdiff-demo" backend --listen "127.0.0.1:$2" \
    --noise --shuffle --instance "$1-0"
}
log "starting the primary backend and the tap (release)"
backend primary "$primary_port"
primary_pid="$started"
start tap "http://127.0.0.1:$tap_admin_port/healthz" "$bin_dir/shadowdiff-tap" --config "$tmp/tap.toml"
tap_pid="$started"

# --- the recorded traffic --------------------------------------------------------------------

iso() { date -u -d "@$1" '+%Y-%m-%dT%H:%M:%S.%3NZ'; }
log "sending $exchanges reads of /items/{n} through the tap (wrk -t$wrk_threads -c$wrk_connections)"
from="$(calc "printf \"%.3f\", $(now) - 1")"
# Each wrk thread leaves a file in $tmp/wrk-done once it has its share of answers; wrk, which
# only knows durations, is then stopped with SIGINT (through timeout, which passes it on) and
# prints its totals.
mkdir "$tmp/wrk-done"
READS="$exchanges" WRK_THREADS="$wrk_threads" DONE_DIR="$tmp/wrk-done" timeout --kill-after=5 600 \
  wrk -t"$wrk_threads" -c"$wrk_connections" -d600s -s "$here/replay-reads.lua" "http://127.0.0.1:$tap_port/" \
  >"$tmp/wrk.txt" 2>&1 9>&- &
wrk_pid=$!
wrk_done() { [ "$(find "$tmp/wrk-done" -type f | wc -l)" -ge "$wrk_threads" ] || ! kill -0 "$wrk_pid" 2>/dev/null; }
poll 590 wrk_done || true
kill -INT "$wrk_pid" 2>/dev/null || true
wrk_status=0
wait "$wrk_pid" || wrk_status=$?
to="$(calc "printf \"%.3f\", $(now) + 1")"
[ "$wrk_status" = 0 ] || { cat "$tmp/wrk.txt" >&2; die "wrk exited $wrk_status"; }
wrk_requests="$(awk '/requests in/ { print $1 }' "$tmp/wrk.txt")"
wrk_rate="$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$tmp/wrk.txt")"
wrk_errors="$(awk '/Non-2xx/ { print $NF } /Socket errors/ { print }' "$tmp/wrk.txt")"
[ -z "$wrk_errors" ] || log "wrk saw errors: $wrk_errors"
log "wrk: $wrk_requests requests at $wrk_rate req/s"

# The tap publishes each exchange after answering, with a producer linger: give the last ones
# time to land, then take the window. --limit keeps exactly the first EXCHANGES, when wrk's
# requests still in flight at its stop made more.
sleep 2
log "shadowctl record --from $(iso "$from") --to $(iso "$to") --grace $grace --limit $exchanges"
record_started="$(now)"
env "${clean_env[@]}" "$bin_dir/shadowctl" record --from "$(iso "$from")" --to "$(iso "$to")" --grace "$grace" \
  --limit "$exchanges" --config "$tmp/tap.toml" -o "$tmp/window.avro" >"$tmp/record.txt" 2>&1 9>&- \
  || { cat "$tmp/record.txt" >&2; die "shadowctl record failed"; }
record_secs="$(calc "printf \"%.1f\", $(now) - $record_started")"
sed 's/^/    /' "$tmp/record.txt" >&2
recorded="$(sed -n 's/^recorded \([0-9]*\) exchanges.*/\1/p' "$tmp/record.txt")"
file_bytes="$(stat -c %s "$tmp/window.avro")"
file_mib="$(calc "printf \"%.1f\", $file_bytes / 1048576")"
[ "${recorded:-0}" -gt 0 ] || die "nothing recorded"
[ "$recorded" = "$exchanges" ] || log "recorded $recorded exchanges, not $exchanges (see the summary above)"
# The floor's recording: the window's first exchange alone (a replay's --limit refuses a
# recording that holds more, rather than cut it).
env "${clean_env[@]}" "$bin_dir/shadowctl" record --from "$(iso "$from")" --to "$(iso "$to")" --grace "$grace" \
  --limit 1 --config "$tmp/tap.toml" -o "$tmp/window-floor.avro" >"$tmp/record-floor.txt" 2>&1 9>&- \
  || { cat "$tmp/record-floor.txt" >&2; die "shadowctl record --limit 1 failed"; }

# The recorded traffic is done: the tap and the primary would only share the CPUs.
stop_pid "$tap_pid" "$tmp"
stop_pid "$primary_pid" "$tmp"

# --- the replays ---------------------------------------------------------------------------------

log "starting the build under test and the baseline (demo backends)"
backend candidate "$candidate_port"
candidate_pid="$started"
backend baseline "$baseline_port"
baseline_pid="$started"

clk_tck="$(getconf CLK_TCK)"
ch_pid="$(pid_of clickhouse)"

# count_rows RUN: the candidate's rows of the run in its database (run_db) so far.
count_rows() {
  ch_query "SELECT count() FROM $run_db.exchanges WHERE run = '$1' AND role = 'candidate'" 2>/dev/null || echo -1
}

# rows_timeline RUN EXPECTED FILE: "TIME ROWS" every 0.25 s until the run's EXPECTED rows are
# all in, or the script is gone (a SIGKILLed run leaves no poller behind for long).
rows_timeline() {
  local run="$1" expected="$2" file="$3" rows parent=$$
  while kill -0 "$parent" 2>/dev/null; do
    rows="$(count_rows "$run")"
    echo "$(now) $rows" >>"$file"
    if [ "$rows" -ge "$expected" ]; then return 0; fi
    sleep 0.25
  done
}

# replay_once JUDGE CONCURRENCY BASELINE ROUND [floor]: one timed `shadowctl replay`, judged
# JUDGE's way (published, here), of the recording, or of the floor's (one exchange; round 0);
# appends a line to $tmp/runs.tsv: config, round, run id, replayed, replay s,
# req/s, rows in ClickHouse at the replay's end, s from the end to the last row, s from the
# end to the verdict, wall s, verdict, CPU s of the correlator, broker, ClickHouse, shadowctl
# and the backends, how busy the whole machine was in percent, shadowctl's peak RSS in MiB,
# and (judged here) s from the end to the "compared here" line, when the last rows are written.
replay_once() {
  local judge="$1" c="$2" with_baseline="$3" round="$4" floor="${5:-}" config run name args status began ended line_at
  local file="$tmp/window.avro" expected="$recorded"
  if [ "$floor" = floor ]; then config="$judge-floor"; file="$tmp/window-floor.avro"; expected=1
  else config="$judge-c$c-$([ "$with_baseline" = yes ] && echo baseline || echo alone)"; fi
  run="bench-$stamp-$config-r$round"
  if [ "$judge" = here ]; then name=here; here_pipeline "$config-r$round"
  elif [ "$shared_topics" = 1 ]; then name=shared
  else name="$config-r$round"; replay_pipeline "$name"; fi
  args=(replay --file "$file" --config "$tmp/mirror-$name.toml" --candidate "build=http://127.0.0.1:$candidate_port"
    --speed max --concurrency "$c" --rate "$rate" --run "$run" --wait "$wait_for")
  if [ "$with_baseline" = yes ]; then args+=(--baseline "primary=http://127.0.0.1:$baseline_port"); fi
  if [ "$judge" = here ]; then
    args+=(--correlator-config "$tmp/correlator-$config-r$round.toml" --verdict-config "$tmp/verdict.toml")
  fi
  local correlator_before=0 broker_before ch_before backends_before machine_before
  if [ "$judge" = published ]; then correlator_before="$(cpu_ticks "$correlator_pid")"; fi
  broker_before="$(ticks_or_zero "$broker_pid")"
  ch_before="$(ticks_or_zero "$ch_pid")"
  backends_before=$(($(cpu_ticks "$candidate_pid") + $(cpu_ticks "$baseline_pid")))
  machine_before="$(machine_ticks)"
  : >"$tmp/$run.rows"
  rows_timeline "$run" "$expected" "$tmp/$run.rows" &
  local poller=$!
  log "$config, round $round: shadowctl replay --speed max --concurrency $c --rate $rate$([ "$with_baseline" = yes ] && echo ' --baseline')$([ "$judge" = here ] && echo ' --correlator-config')$([ "$floor" = floor ] && echo ", one exchange")"
  began="$(now)"
  set +e
  # Each line of its output stamped as it arrives (Rust's stdout is line-buffered). GNU time
  # gives shadowctl's own CPU and its peak RSS (KiB).
  env "${clean_env[@]}" SHADOWCTL_VERDICT="http://127.0.0.1:$verdict_port" SHADOWCTL_TOKEN="$reader_token" NO_COLOR=1 \
    /usr/bin/time -f '%U %S %M' -o "$tmp/$run.time" "$bin_dir/shadowctl" "${args[@]}" 2>"$tmp/$run.err" 9>&- \
    | while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$tmp/$run.out"
  status="${PIPESTATUS[0]}"
  set -e
  ended="$(now)"
  # Its last count comes within a poll once shadowctl is done, unless the rows never will.
  poller_done() { ! kill -0 "$poller" 2>/dev/null; }
  poll 5 poller_done || kill "$poller" 2>/dev/null || true
  wait "$poller" 2>/dev/null || true
  case "$status" in
    0 | 1 | 2) ;;
    *) cat "$tmp/$run.out" "$tmp/$run.err" >&2; die "shadowctl replay exited $status on $config" ;;
  esac
  if grep -q 'replayed exchanges compared within --wait' "$tmp/$run.err"; then
    cat "$tmp/$run.err" >&2; die "not every exchange of $run was compared within $wait_for"
  fi
  # "run ID: replayed N exchanges in S.Ss (recorded over R.Rs)"
  local replay_line replayed replay_secs
  replay_line="$(grep -m1 ": replayed [0-9]* exchanges in " "$tmp/$run.out")" \
    || { cat "$tmp/$run.out" "$tmp/$run.err" >&2; die "no replay summary from $run"; }
  line_at="${replay_line%% *}"
  replayed="$(sed -n 's/.*: replayed \([0-9]*\) exchanges in .*/\1/p' <<<"$replay_line")"
  replay_secs="$(sed -n 's/.* exchanges in \([0-9.]*\)s .*/\1/p' <<<"$replay_line")"
  # Judged here: "compared here: N comparisons of M exchanges written, K complete", printed
  # once the last rows are written, before the report's queries. One comparison a leg.
  local written_after=–
  if [ "$judge" = here ]; then
    local written_line comparisons legs
    written_line="$(grep -m1 " compared here: [0-9]* comparisons of " "$tmp/$run.out")" \
      || { cat "$tmp/$run.out" "$tmp/$run.err" >&2; die "no \"compared here\" line from $run"; }
    comparisons="$(sed -n 's/.* compared here: \([0-9]*\) comparisons of .*/\1/p' <<<"$written_line")"
    legs="$([ "$with_baseline" = yes ] && echo 2 || echo 1)"
    [ "$comparisons" = $((replayed * legs)) ] \
      || { cat "$tmp/$run.out" >&2; die "$run wrote $comparisons comparisons of $replayed exchanges, not $((replayed * legs))"; }
    written_after="$(calc "printf \"%.1f\", ${written_line%% *} - $line_at")"
  fi
  local verdict rows_at_end rows_done_at
  verdict="$(case "$status" in 0) echo pass ;; 1) echo fail ;; 2) echo inconclusive ;; esac)"
  # The timeline: how many rows were in when the replay ended, and when the last came.
  rows_at_end="$(awk -v t="$line_at" '$1 <= t { r = $2 } END { print (r > 0 ? r : 0) }' "$tmp/$run.rows")"
  rows_done_at="$(awk -v n="$replayed" '$2 >= n { print $1; exit }' "$tmp/$run.rows")"
  local machine_after correlator_cpu=–
  machine_after="$(machine_ticks)"
  if [ "$judge" = published ]; then
    correlator_cpu="$(calc "printf \"%.1f\", ($(cpu_ticks "$correlator_pid") - $correlator_before) / $clk_tck")"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$round" "$run" "$replayed" "$replay_secs" \
    "$(calc "printf \"%.0f\", $replayed / $replay_secs")" "$rows_at_end" \
    "$(if [ -n "$rows_done_at" ]; then calc "printf \"%.1f\", $rows_done_at - $line_at"; else echo n/a; fi)" \
    "$(calc "printf \"%.1f\", $ended - $line_at")" "$(calc "printf \"%.1f\", $ended - $began")" "$verdict" \
    "$correlator_cpu" \
    "$(calc "printf \"%.1f\", ($(ticks_or_zero "$broker_pid") - $broker_before) / $clk_tck")" \
    "$(calc "printf \"%.1f\", ($(ticks_or_zero "$ch_pid") - $ch_before) / $clk_tck")" \
    "$(tail -1 "$tmp/$run.time" | awk '{ printf "%.1f", $1 + $2 }')" \
    "$(calc "printf \"%.1f\", ($(cpu_ticks "$candidate_pid") + $(cpu_ticks "$baseline_pid") - $backends_before) / $clk_tck")" \
    "$(read -r b0 a0 <<<"$machine_before"; read -r b1 a1 <<<"$machine_after"; calc "printf \"%.0f\", 100 * ($b1 - $b0) / ($a1 - $a0)")" \
    "$(tail -1 "$tmp/$run.time" | awk '{ printf "%.1f", $3 / 1024 }')" "$written_after" \
    >>"$tmp/runs.tsv"
  if [ "$judge" = here ]; then forget database "$run_db"
  elif [ "$shared_topics" != 1 ]; then replay_pipeline_done; fi
  log "  $(tail -1 "$tmp/runs.tsv" | awk -F'\t' '{ printf "%s exchanges in %s s (%s/s); %s rows in at the end, the last %s s later, the verdict (%s) %s s later; peak RSS %s MiB", $4, $5, $6, $7, $8, $11, $9, $18 }')"
}

: >"$tmp/runs.tsv"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
if judging published && [ "$shared_topics" = 1 ]; then replay_pipeline shared; fi
# The floor: shadowctl's peak RSS with one exchange to hold, each way of judging.
for judge in "${judges[@]}"; do replay_once "$judge" "${concurrencies[0]}" no 0 floor; done
for ((round = 1; round <= runs; round++)); do
  for judge in "${judges[@]}"; do
    for with_baseline in "${baselines[@]}"; do
      for c in "${concurrencies[@]}"; do
        replay_once "$judge" "$c" "$with_baseline" "$round"
      done
    done
  done
done

# --- the numbers -------------------------------------------------------------------------

# median COLUMN CONFIG: of the runs of CONFIG (nearest rank, the lower of two).
median() {
  awk -F'\t' -v col="$1" -v config="$2" '$1 == config && $col != "n/a" { print $col }' "$tmp/runs.tsv" \
    | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "n/a" }'
}
range() {
  awk -F'\t' -v col="$1" -v config="$2" '$1 == config && $col != "n/a" { print $col }' "$tmp/runs.tsv" \
    | sort -g | awk '{ v[NR] = $1 } END { if (NR > 1) printf "%s–%s", v[1], v[NR]; else if (NR) print v[1] }'
}
verdicts() { awk -F'\t' -v config="$1" '$1 == config { print $11 }' "$tmp/runs.tsv" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }'; }

ch_version="$(ch_query "SELECT version()")"
max_batch_rows="$(sed -n 's/^max_batch_rows = \([0-9]*\).*/\1/p' "$config_dir/correlator.toml")"
# config_of JUDGE BASELINE C: the configuration's name in runs.tsv.
config_of() { echo "$1-c$3-$([ "$2" = yes ] && echo baseline || echo alone)"; }
# held CONFIG: shadowctl's median peak RSS over its way's floor, in KiB an exchange recorded.
held() {
  local peak floor
  peak="$(median 18 "$1")"; floor="$(median 18 "${1%%-*}-floor")"
  calc "printf \"%.1f\", ($peak - $floor) * 1024 / $recorded"
}
report="$tmp/results.md"
{
  echo "# shadowdiff replay throughput and time to verdict"
  echo
  run_stamp
  if [ "$fresh_broker" = 1 ]; then broker_kind="a fresh broker of the run's own"
  else broker_kind="the shared broker of deploy/local/services.sh, up $(ps -o etime= -p "$broker_pid" 2>/dev/null | tr -d ' ' || echo '?'), $(tansu topic list --broker "tcp://$kafka_host" 2>/dev/null | grep -o '"partition_index"' | wc -l) partitions in all"; fi
  echo "$(nproc) CPUs shared by everything: $broker_kind ($(tansu --version 2>/dev/null | head -1 || echo '?'), memory storage),"
  echo "ClickHouse $ch_version, the correlator and verdict service, shadowctl and the demo backends."
  echo
  echo "The window: $recorded exchanges (GET /items/{n}, n from 0) sent through a release tap in front of a"
  echo "demo backend by wrk -t$wrk_threads -c$wrk_connections ($wrk_requests requests at $wrk_rate req/s, with the tap"
  echo "publishing every exchange), then \`shadowctl record --grace $grace --limit $exchanges\` in $record_secs s:"
  echo "$recorded exchanges, $file_mib MiB ($file_bytes bytes, $(calc "printf \"%.0f\", $file_bytes / $recorded") bytes an exchange)."
  echo
  echo "Each run: \`shadowctl replay --file window.avro --speed max --concurrency C --rate $rate --run ID\`"
  echo "against a demo backend as the build under test (\`--candidate build=...\`), with or without a second"
  echo "one as the baseline (\`--baseline primary=...\`), all three backends with the demo's noise and the"
  echo "same version, judged one of two ways:"
  echo
  if judging published; then
    if [ "$shared_topics" = 1 ]; then
      echo "- **published**: the run's events (each exchange's at once) to the same topics as every other run,"
      echo "  read by one release correlator throughout (\`SHARED_TOPICS=1\`), and the verdict asked of one release"
      echo "  verdict service, on one database,"
    else
      echo "- **published**: the run's events (each exchange's at once) to fresh topics, read by a release"
      echo "  correlator started for the run as in a CI job, and the verdict asked of a release verdict service"
      echo "  started for it too, on a database of the run's own,"
    fi
    echo "  both on the demo's configs (deploy/local/config: \`window_ms = $correlator_window_ms\`, no settle for"
    echo "  downstream calls, a write to ClickHouse every second); the replay's producer with the mirror"
    if [ -n "$linger_ms" ]; then echo "  config's \`[kafka]\` and \`linger_ms = $linger_ms\`."
    else echo "  config's \`[kafka]\` as it is (\`linger_ms\` unset: 5 ms)."; fi
  fi
  if judging here; then
    echo "- **here**: \`--correlator-config correlator.toml --verdict-config verdict.toml\` (the demo's, \`[kafka]\`"
    echo "  pointing where nothing listens): each exchange compared inside shadowctl by the correlator's row"
    echo "  builder, the rows written to a database of the run's own in batches of \`max_batch_rows\`"
    echo "  (${max_batch_rows:-unset: 20000}) and the rest at the end, the run judged in process. No correlator or verdict"
    echo "  service runs for these runs."
  fi
  echo
  echo "Throughput is the replayed exchanges over the replay time shadowctl prints (first replay to last"
  echo "exchange handed over: published, or compared and, when a batch fills, written). The time to the"
  echo "verdict runs from that line to shadowctl's exit. Published, it is the correlator's lag and one-second"
  echo "write, then shadowctl's next ask of the verdict API (once a second) that counts every exchange"
  echo "compared; here, the write of the rows still pending (until the \`compared here\` line) and then the"
  echo "report's queries. Peak RSS is shadowctl's (GNU time's %M), which holds the whole window in memory"
  echo "(\`--limit\` bounds it); the floor is a replay of a recording of one exchange the same way, and \"held\" the"
  echo "median peak less the floor, over the $recorded exchanges. Configurations in turns, $runs runs each;"
  echo "medians, and the range of the runs. Load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after."
  echo
  echo "| judged | configuration | exchanges | replay exchanges/s | range | time to verdict s | range | peak RSS MiB | held KiB an exchange | verdicts |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
  for judge in "${judges[@]}"; do
    for with_baseline in "${baselines[@]}"; do
      for c in "${concurrencies[@]}"; do
        config="$(config_of "$judge" "$with_baseline" "$c")"
        what="concurrency $c, $([ "$with_baseline" = yes ] && echo "candidate and baseline" || echo "candidate only")"
        echo "| $judge | $what | $recorded | **$(median 6 "$config")** | $(range 6 "$config") | **$(median 9 "$config")** | $(range 9 "$config") | $(median 18 "$config") | $(held "$config") | $(verdicts "$config") |"
      done
    done
  done
  echo
  echo "Floor (one exchange, concurrency ${concurrencies[0]}, a candidate only): peak RSS $(for judge in "${judges[@]}"; do printf '%s%s %s MiB' "${sep:-}" "$judge" "$(median 18 "$judge-floor")"; sep=", "; done)."
  echo
  echo "## Every run, and where the time to the verdict goes"
  echo
  echo "The candidate's rows of the run in ClickHouse were counted every 0.25 s throughout: how many were"
  echo "in when the replay ended, and how long after that the last one was (published: the correlator's lag"
  echo "and its one-second flush; here: the final write). \"Written after\" is, judged here, when shadowctl"
  echo "printed its \`compared here\` line, its rows all written; the rest of its time to the verdict is the"
  echo "report's queries. CPU seconds are over the whole command, wall time; the broker's and ClickHouse's"
  echo "include whatever else used them at the time (the machine, broker and ClickHouse are shared). Round 0"
  echo "is the floor."
  echo
  echo "| run | replay s | req/s | rows in at the end | last row after s | written after s | verdict after s | wall s | verdict | CPU s: correlator | broker | ClickHouse | shadowctl | backends | machine busy | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '{ printf "| %s r%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%% | %s |\n", $1, $2, $5, $6, $7, $8, $19, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 }' "$tmp/runs.tsv"
} >"$report"

cp "$report" "$results"
echo
cat "$report"
log "written to ${results#"$repo/"}"
