#!/usr/bin/env bash
# What an egress tap adds to each downstream call a deployment makes through it. A small
# backend (the demo's inventory, `GET /stock/{n}`) is called at a steady, modest rate by wrk,
# each call with an X-Request-Id of its own, three ways in turns:
#
#   direct   straight to the backend;
#   egress   through an egress tap (`[tap.mode] kind = "egress"`, role primary) used as the
#            HTTP proxy, absolute-form targets as `http_proxy` clients send them, each call
#            published to the outbound topic on the local broker;
#   stub     through a second egress tap in stub mode (`[tap.mode.stub]`, role candidate),
#            which answers each call from the primary tap's recording of the same request id
#            and never reaches the backend: each stub run sends the ids of the egress run
#            before it, in the same order, and stops when they run out.
#
# Everything runs on 127.0.0.1. What the script starts (the backend, both taps) stops when it
# exits, and the run's topics go; the shared Kafka of deploy/local/services.sh is left up.
#
#   deploy/bench/egress-tap.sh                         the default run
#   DURATION=2 ROUNDS=1 deploy/bench/egress-tap.sh     a quick smoke run
#
# Knobs (environment):
#   DURATION                  seconds of each measured direct and egress run; stub runs take
#                             three quarters of it, so the recorded ids last (15)
#   ROUNDS                    times each path is measured, in turns; medians reported (3)
#   WARMUP                    seconds of unmeasured calls before each run (2)
#   THREADS, CONNECTIONS      wrk -t and -c (2, 4)
#   PACE_MS                   each connection's pause after an answer before its next call (4):
#                             with 4 connections about 900 calls a second
#   STUB=0                    leave out the stub tap and its runs
#   PARTITIONS                partitions of the run's topics (6)
#   BENCH_PORT_BASE           ports BASE..BASE+4 on 127.0.0.1 are used (18260)
#   SHADOWDIFF_KAFKA_BROKERS  the broker, started by deploy/local/services.sh (127.0.0.1:9092)
#   BENCH_KEEP=1              keep the temp dir (configs, logs, raw wrk output) for a look
#
# The tables go to stdout and to deploy/bench/results-egress.md. A benchmark, not a test: it
# fails when something does not start or a run fails, never because it was slow.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

knobs_only "$@"

duration="${DURATION:-15}"
rounds="${ROUNDS:-3}"
warmup="${WARMUP:-2}"
threads="${THREADS:-2}"
connections="${CONNECTIONS:-4}"
pace_ms="${PACE_MS:-4}"
stub_on="${STUB:-1}"
partitions="${PARTITIONS:-6}"
base="${BENCH_PORT_BASE:-18260}"
brokers="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
results="$here/results-egress.md"
script="$here/egress-calls.lua"
stub_duration=$(( (3 * duration + 3) / 4 ))

backend_port="$base"
egress_port=$((base + 1))
egress_admin_port=$((base + 2))
stub_port=$((base + 3))
stub_admin_port=$((base + 4))
kafka_host="${brokers%%,*}"

# --- what this run starts and creates: recorded (deploy/lib.sh), so a run killed with
# --- SIGKILL is cleaned by the next ----------------------------------------------------------

run_claim "$repo/.local/bench/egress.lock" "$repo/.local/bench/egress-running"
# The taps drain and flush their producers for up to 5 s before they exit.
stop_grace_secs=8
forget_recorded() {
  case "$1" in
    topic) tansu topic delete "$2" --broker "tcp://$kafka_host" >/dev/null 2>&1 || log "could not delete topic $2" ;;
  esac
}

# --- prerequisites ---------------------------------------------------------------------

command -v wrk >/dev/null || apt_install wrk
command -v curl >/dev/null || apt_install curl
# Before the cleanup below: deleting an earlier run's topics needs the broker.
services_up
command -v tansu >/dev/null || die "tansu (installed by deploy/local/services.sh) is needed to create topics"

if [ -s "$run_record" ]; then log "cleaning up what an earlier, interrupted run left behind"; fi
stop_recorded
run_tmpdir shadowdiff-bench-egress

for port in $(seq "$base" $((base + 4))); do
  tcp_open 127.0.0.1 "$port" && die "127.0.0.1:$port is in use; set BENCH_PORT_BASE to another range"
done

log "building shadowdiff-tap and shadowdiff-demo (release)"
cargo build --release --quiet -p shadowdiff-tap -p shadowdiff-demo
bin_dir="$(target_dir)/release"
{ [ -x "$bin_dir/shadowdiff-tap" ] && [ -x "$bin_dir/shadowdiff-demo" ]; } || die "no release binaries in $bin_dir after the build"
# Started through links in $tmp, so their command lines name the run's temp dir (lib.sh's `ours`).
ln -s "$bin_dir/shadowdiff-tap" "$tmp/shadowdiff-tap"
ln -s "$bin_dir/shadowdiff-demo" "$tmp/shadowdiff-demo"

# --- topics and configs ------------------------------------------------------------------

run_id="bench-egress-$(date +%Y%m%d%H%M%S)-$$"
for topic in requests responses dead-letter outbound; do
  remember topic "$run_id.$topic"
  out="$(tansu topic create "$run_id.$topic" --partitions "$partitions" --broker "tcp://$kafka_host" 2>&1)" \
    || die "cannot create topic $run_id.$topic: $out"
done

# tap_config NAME PORT ADMIN_PORT MODE: a tap config in $tmp/NAME.toml, MODE its [tap.mode] body.
tap_config() {
  cat >"$tmp/$1.toml" <<EOF
# Written by deploy/bench/egress-tap.sh for one run.
[tap]
listen = "127.0.0.1:$2"
id = "$run_id-$1"

[tap.mode]
$4

[tap.redaction]
# Benchmark only; never a real key. Known placeholders are refused unless this says so.
hmac_key = "bench-only-hmac-key-not-secret"
allow_demo_keys = true

[kafka]
brokers = "$brokers"

[topics]
requests = "$run_id.requests"
responses = "$run_id.responses"
dead_letter = "$run_id.dead-letter"
outbound = "$run_id.outbound"
create = false

[admin]
listen = "127.0.0.1:$3"
EOF
}
tap_config egress "$egress_port" "$egress_admin_port" 'kind = "egress"
role = "primary"
deployment = "primary"'
# Recordings held long enough, and enough of them, for every round's ids.
tap_config stub "$stub_port" "$stub_admin_port" 'kind = "egress"
role = "candidate"
deployment = "candidate"

[tap.mode.stub]
wait_ms = 2000
keep_secs = 3600
max_requests = 10000000'

# --- servers -----------------------------------------------------------------------------

http_answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null)" != 000 ]; }

# start NAME CHECK_URL COMMAND...: COMMAND in the background, logged to $tmp/NAME.log, until
# CHECK_URL answers 2xx; dies as soon as it exits; sets started_pid. Taps run their config
# files as written.
start() {
  local name="$1" url="$2" pid
  shift 2
  env "${clean_env[@]}" "$@" >"$tmp/$name.log" 2>&1 9>&- &
  pid=$!
  started_pid="$pid"
  remember_pid "$pid"
  up_or_dead() {
    kill -0 "$pid" 2>/dev/null || { tail -20 "$tmp/$name.log" >&2; die "$name exited at start-up"; }
    http_ok "$url"
  }
  poll 30 up_or_dead && return 0
  tail -20 "$tmp/$name.log" >&2
  die "$name did not pass $url within 30s"
}

log "starting the backend and the taps under $tmp"
start backend "http://127.0.0.1:$backend_port/healthz" "$tmp/shadowdiff-demo" inventory --listen "127.0.0.1:$backend_port"
start egress "http://127.0.0.1:$egress_admin_port/healthz" "$tmp/shadowdiff-tap" --config "$tmp/egress.toml"
egress_pid="$started_pid"
if [ "$stub_on" = 1 ]; then
  # Before any call: a stub tap reads the outbound topic from its end.
  start stub "http://127.0.0.1:$stub_admin_port/healthz" "$tmp/shadowdiff-tap" --config "$tmp/stub.toml"
fi
curl -fsS --max-time 2 "http://127.0.0.1:$backend_port/stock/7" >/dev/null || die "the backend does not answer /stock/7"

# --- measuring ---------------------------------------------------------------------------

clk_tck="$(getconf CLK_TCK)"

# calls NAME URL SECONDS [NAME=VALUE...]: one wrk run of egress-calls.lua with those
# variables set; prints "calls/s p50 p90 p99 p99.9 errors", latencies in ms. `timeout`
# bounds the run even if wrk hangs on a dead server.
calls() {
  local name="$1" url="$2" seconds="$3" out="$tmp/wrk-$1.txt"
  shift 3
  env BACKEND="127.0.0.1:$backend_port" PACE_MS="$pace_ms" "$@" \
    timeout --kill-after=5 $((seconds + 30)) wrk -t"$threads" -c"$connections" -d"${seconds}s" -s "$script" "$url" \
    >"$out" 2>&1 || { cat "$out" >&2; die "wrk $name failed"; }
  awk '$1 == "RESULT" {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "%.0f %.3f %.3f %.3f %.3f %d\n", v["requests"] / v["seconds"], v["p50"] / 1000, v["p90"] / 1000,
        v["p99"] / 1000, v["p999"] / 1000, v["non2xx"] + v["socket_errors"]; found = 1 }
    END { if (!found) exit 1 }' "$out" || { cat "$out" >&2; die "no RESULT line in wrk's output for $name"; }
}

declare -A runs
# The egress tap's CPU ticks over the measured runs of each path (idle during the others).
declare -A egress_ticks
# measure PATH ROUND URL SECONDS [NAME=VALUE...]: a warm-up, then one measured run of PATH,
# kept in runs[PATH]. Ids: $run_id-rROUND (measured) and -rROUNDw (warm-up), the same for
# the egress and stub runs of a round; the egress runs write how many calls each wrk thread
# completed, and the stub runs stop there.
measure() {
  local path="$1" round="$2" url="$3" seconds="$4" ids
  shift 4
  local limits=()
  for ids in "r${round}w" "r$round"; do
    case "$path" in
      egress) limits=(SENT_OUT="$tmp/sent-$ids") ;;
      stub) limits=(LIMITS_IN="$tmp/sent-$ids") ;;
    esac
    if [ "$ids" = "r${round}w" ]; then
      [ "$warmup" -gt 0 ] || continue
      calls "$path-$ids" "$url" "$warmup" ID_PREFIX="$run_id-$ids" "${limits[@]}" "$@" >/dev/null
    else
      # The tap publishes a call within its 200 ms linger; the stub reads it within 10 ms.
      if [ "$path" = stub ]; then sleep 1; fi
      log "  $path, round $round: ${seconds}s"
      local before
      before="$(cpu_ticks "$egress_pid")"
      runs[$path]+="$(calls "$path-$ids" "$url" "$seconds" ID_PREFIX="$run_id-$ids" "${limits[@]}" "$@")"$'\n'
      egress_ticks[$path]=$(( ${egress_ticks[$path]:-0} + $(cpu_ticks "$egress_pid") - before ))
    fi
  done
}

egress_calls=0
for round in $(seq "$rounds"); do
  log "round $round of $rounds"
  measure direct "$round" "http://127.0.0.1:$backend_port/" "$duration" PROXY=0
  measure egress "$round" "http://127.0.0.1:$egress_port/" "$duration" PROXY=1
  egress_calls=$((egress_calls + $(awk '{ s += $2 } END { print s + 0 }' "$tmp/sent-r$round")))
  if [ "$stub_on" = 1 ]; then measure stub "$round" "http://127.0.0.1:$stub_port/" "$stub_duration" PROXY=1; fi
done

# What a tap did with its calls, from its /metrics: "published dropped".
tap_events() {
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk '
    /^shadowdiff_tap_events_published_total/ { published += $NF }
    /^shadowdiff_tap_events_dropped_total/ { dropped += $NF }
    END { printf "%d %d\n", published, dropped }'
}
# A call is counted published once the broker has it: within the 200 ms linger, and a moment.
sleep 1
read -r egress_published egress_dropped < <(tap_events "$egress_admin_port")
# The egress tap's CPU seconds by thread name, digits dropped, largest first, over the whole run.
egress_threads="$(for task in /proc/"$egress_pid"/task/*; do
    printf '%s %s\n' "$(tr -d '0-9 ' <"$task/comm" 2>/dev/null)" "$(cpu_ticks "${task#/proc/}")"
  done | awk -v hz="$clk_tck" '{ t[$1] += $2 } END { for (n in t) printf "%.1f %s\n", t[n] / hz, n }' \
  | sort -rn | awk '$1 > 0 { printf "%s%s %s s", sep, $2, $1; sep = ", " }')"
if [ "$stub_on" = 1 ]; then read -r stub_published stub_dropped < <(tap_events "$stub_admin_port"); fi

# --- the numbers -------------------------------------------------------------------------

# column PATH N: field N (1 calls/s, 2 p50, 3 p90, 4 p99, 5 p99.9, 6 errors) of every run of PATH.
column() { printf '%s' "${runs[$1]}" | awk -v n="$2" '{ print $n }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# added PATH N: field N of PATH less direct's, run by run (same round).
added() { paste -d' ' <(column "$1" "$2") <(column direct "$2") | awk '{ printf "%.3f\n", $1 - $2 }'; }
list() { paste -sd' ' | sed 's/ /, /g'; }
sum() { awk '{ s += $1 } END { print s + 0 }'; }
fmt() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
signed() { awk -v v="$1" 'BEGIN { printf "%+.2f", v }'; }

row() {
  local path="$1" label="$2"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(column "$path" 1 | median)" \
    "$(fmt "$(column "$path" 2 | median)")" "$(fmt "$(column "$path" 3 | median)")" \
    "$(fmt "$(column "$path" 4 | median)")" "$(fmt "$(column "$path" 5 | median)")" "$(column "$path" 6 | sum)"
}
added_row() {
  local path="$1" label="$2"
  printf '| %s |  | %s | %s | %s | %s |  |\n' "$label" "$(signed "$(added "$path" 2 | median)")" \
    "$(signed "$(added "$path" 3 | median)")" "$(signed "$(added "$path" 4 | median)")" \
    "$(signed "$(added "$path" 5 | median)")"
}

report="$tmp/results.md"
{
  echo "# shadowdiff egress tap: latency added per downstream call"
  echo
  run_stamp
  echo "$(nproc) CPUs shared by wrk, the backend, the taps and the broker ($(tansu --version 2>/dev/null | head -1 || echo '?'), memory storage),"
  echo "$(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }'). Backend: \`shadowdiff-demo inventory\` (\`GET /stock/{n}\`, a JSON answer of about 30 bytes)."
  echo "wrk -t$threads -c$connections, each connection pausing ${pace_ms} ms after every answer (\`egress-calls.lua\`),"
  echo "every call with its own X-Request-Id; ${duration} s a run (stub: ${stub_duration} s) after ${warmup} s of warm-up."
  echo "The paths are measured in turns, $rounds rounds; each figure is the median over the rounds, and an"
  echo "\"added\" row the median of the round-by-round differences from direct."
  echo
  echo "| path | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  row direct "direct to the backend"
  row egress "through the egress tap, publishing every call"
  if [ "$stub_on" = 1 ]; then row stub "through an egress tap in stub mode (no backend)"; fi
  added_row egress "**added by the egress tap**"
  if [ "$stub_on" = 1 ]; then added_row stub "stub answer against the direct call"; fi
  echo
  echo "Every round: egress p50 added $(added egress 2 | list) ms; p99 added $(added egress 4 | list) ms."
  if [ "$stub_on" = 1 ]; then
    echo "Stub p50 against direct $(added stub 2 | list) ms; p99 $(added stub 4 | list) ms."
  fi
  # Its CPU while idle (the direct runs, as long as the egress runs) is its background work:
  # the producer's and the admin server's threads.
  echo "The egress tap's CPU: $(awk -v busy="${egress_ticks[egress]}" -v idle="${egress_ticks[direct]}" -v hz="$clk_tck" \
    -v n="$egress_calls" 'BEGIN {
      printf "%.2f s over its measured runs (%d calls), %.2f s idle over as long (the direct runs):", busy / hz, n, idle / hz
      printf " %.0f µs a call beyond idle", (n ? (busy - idle) / hz * 1e6 / n : 0) }')."
  echo "Its CPU by thread over the whole run, warm-ups included: ${egress_threads:-n/a}."
  echo "Events published by the egress tap, warm-ups included: $egress_published ($egress_dropped dropped)."
  if [ "$stub_on" = 1 ]; then
    echo "The stub tap answered every call from a recording unless errors say otherwise (an unmatched call"
    echo "is answered 502 after waiting 2 s); it published $stub_published calls of its own ($stub_dropped dropped)."
    echo "Its reader follows the outbound topic throughout, on the same CPUs as everything else."
  fi
} >"$report"

cp "$report" "$results"
echo
cat "$report"
log "written to ${results#"$repo/"}"
