# shellcheck shell=bash
# What the deploy scripts share. deploy/local/*.sh, deploy/bench/*.sh, deploy/k8s/validators.sh
# and deploy/fuzz/run.sh source it after `set -euo pipefail`, with log_tag set to the word
# their log lines start with (default: the script's name):
#
#   repo                          the repository's root, absolute
#   log MESSAGE, die MESSAGE      a line on stderr, "[tag] MESSAGE"; die exits 1
#   as_root COMMAND...            COMMAND as root: itself when root, else through sudo
#   apt_install [OPTION...] PKG...  Debian packages, quietly, after an apt-get update
#   tcp_open HOST PORT            whether something accepts TCP connections there
#   http_ok URL                   whether URL answers 2xx or 3xx within 2 s
#   poll SECONDS COMMAND...       COMMAND every 0.2 s until it succeeds; status 1 after SECONDS
#   target_dir                    where cargo builds: $CARGO_TARGET_DIR, or target/
#   header_help                   prints the script's header comment, for --help
#   run_stamp                     "DATE UTC, commit ABC (dirty tree)," for a results file
#
# and, for the benchmarks, which start servers that must stop even after a SIGKILL, the run
# bookkeeping at the end of this file.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log_tag="${log_tag:-$(basename "$0" .sh)}"

log() { printf '[%s] %s\n' "$log_tag" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root for: $*"
  fi
}

apt_install() {
  local packages=() arg
  for arg in "$@"; do case "$arg" in -*) ;; *) packages+=("$arg") ;; esac; done
  log "installing Debian packages: ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

poll() {
  local seconds="$1" i
  shift
  for ((i = 0; i < seconds * 5; i++)); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  return 1
}

target_dir() { echo "${CARGO_TARGET_DIR:-$repo/target}"; }

header_help() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# A script whose only options are its header's environment knobs: --help prints the header,
# any argument is a usage error.
knobs_only() {
  case "${1:-}" in
    "") ;;
    -h | --help) header_help; exit 0 ;;
    *) echo "usage: $0   (knobs are environment variables; see --help)" >&2; exit 2 ;;
  esac
}

run_stamp() {
  local commit dirty=""
  commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
  git -C "$repo" diff --quiet HEAD 2>/dev/null || dirty=" (dirty tree)"
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit$dirty,"
}

# --- benchmark runs: one at a time, and everything they start or create remembered -------
#
# A run records what it starts in a file, one line each: "pid PID DIR" for a process whose
# command line names the run's temp dir DIR, "dir DIR" for that temp dir, and "KIND ARG" for
# anything else the script undoes itself (a topic, a database) in forget_recorded KIND ARG.
# The next run, or this one's exit, stops and removes it all, so a run killed with SIGKILL is
# cleaned by the next. Give every server `9>&-` so none of them keeps the run's lock.
#
#   run_claim LOCK RECORD     takes LOCK (on fd 9) or dies; RECORD is the file above
#   stop_recorded             stops and removes what RECORD names, and empties it
#   run_tmpdir PREFIX         sets tmp to a fresh recorded temp dir, and the traps that clean
#                             up on exit (the dir is kept with BENCH_KEEP=1)
#   remember KIND ARG...      one more line in RECORD; remember_pid PID for a process in $tmp
#   stop_pid PID DIR          TERM, then KILL after stop_grace_secs (8) if it still runs
#   services_up               deploy/local/services.sh up, its output shown only on failure
#   clean_env                 an array of `env` arguments unsetting every SHADOWDIFF_*
#                             variable, so a server runs its config file as written

run_claim() {
  run_lock="$1"
  run_record="$2"
  mkdir -p "$(dirname "$run_lock")"
  exec 9>"$run_lock"
  flock -n 9 || die "another $(basename "$0") run is in progress"
}

remember() { echo "$*" >>"$run_record"; }
remember_pid() { remember pid "$1" "$tmp"; }

# A pid is only ours if its command line still names the run's temp dir: pids get reused.
ours() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF "$2"; }

stop_pid() {
  local pid="$1" dir="$2" i
  ours "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < ${stop_grace_secs:-8} * 5; i++)); do
    ours "$pid" "$dir" || return 0
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
}

stop_recorded() {
  [ -f "$run_record" ] || return 0
  local kind a b
  # Processes first, so nothing uses a topic or a dir while it goes.
  while read -r kind a b; do
    if [ "$kind" = pid ]; then stop_pid "$a" "$b"; fi
  done <"$run_record"
  while read -r kind a b; do
    case "$kind" in
      pid | "") ;;
      # An interrupted run's temp dir goes too; this run's own is left to run_cleanup.
      dir) case "$a" in */shadowdiff-bench*) [ "$a" = "${tmp:-}" ] || rm -rf "$a" ;; esac ;;
      *) if declare -F forget_recorded >/dev/null; then forget_recorded "$kind" "$a"; fi ;;
    esac
  done <"$run_record"
  : >"$run_record"
}

run_tmpdir() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  remember dir "$tmp"
  trap run_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

run_cleanup() {
  local status=$?
  stop_recorded
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
  exit "$status"
}

services_up() {
  local out
  log "local Kafka and ClickHouse (deploy/local/services.sh up)"
  out="$(mktemp)"
  "$repo/deploy/local/services.sh" up >"$out" 2>&1 9>&- || { cat "$out" >&2; rm -f "$out"; die "services.sh up failed"; }
  rm -f "$out"
}

clean_env=()
for name in $(compgen -e); do
  case "$name" in SHADOWDIFF_*) clean_env+=(-u "$name") ;; esac
done
unset name

# --- benchmark measurements, and the shared Kafka and ClickHouse ------------------------------
#
#   cpu_ticks PID             utime + stime of a live process, in clock ticks (0 once it is gone)
#   ticks_or_zero PID         cpu_ticks PID, or 0 when PID is "" (a server pid_of did not find)
#   calc PROGRAM              awk's BEGIN { PROGRAM }: the benchmarks' arithmetic and formatting
#   machine_ticks             "BUSY ALL": the whole machine's CPU ticks (idle and iowait are not busy)
#   pid_of NAME               the pid of deploy/local/services.sh's NAME (kafka, clickhouse), or ""
#   ch_query SQL              SQL on $ch_url (ch_query_secs, 30, at most), the answer on stdout
#   forget_recorded KIND NAME removes a recorded "topic NAME" (on the first of $brokers, with
#                             tansu) or "database NAME"; a script with kinds of its own defines it again
#   forget KIND NAME          forget_recorded now, and its line out of the record
#   results_section FILE NAME REPORT  REPORT's text as the section NAME of the results FILE, between
#                             "<!-- NAME -->" and "<!-- /NAME -->" lines: the section replaced, or
#                             added at the end, the rest kept, so two benchmarks share one file
#   correlator_bench_toml GROUP DATABASE ADMIN_PORT  a correlator config for a benchmark run on
#                             stdout, from the caller's window_ms, flush_interval_ms, max_open_bytes,
#                             settle_ms, {requests,responses,dead_letter,outbound}_topic, partitions,
#                             brokers and ch_url

# Fields 14 and 15 of /proc/PID/stat, counted after the parenthesised command name, which
# may hold spaces.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
ticks_or_zero() { if [ -n "$1" ]; then cpu_ticks "$1"; else echo 0; fi; }
calc() { awk "BEGIN { $1 }"; }
machine_ticks() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
pid_of() { local f="$repo/.local/$1.pid"; if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then cat "$f"; else echo ""; fi; }
ch_query() { curl -fsS --max-time "${ch_query_secs:-30}" "$ch_url/" --data-binary "$1"; }

forget_recorded() {
  case "$1" in
    topic) tansu topic delete "$2" --broker "tcp://${brokers%%,*}" >/dev/null 2>&1 || log "could not delete topic $2" ;;
    database) ch_query "DROP DATABASE IF EXISTS $2" >/dev/null 2>&1 || log "could not drop database $2" ;;
  esac
}
forget() {
  forget_recorded "$1" "$2"
  grep -vxF "$1 $2" "$run_record" >"$run_record.tmp" || true
  mv "$run_record.tmp" "$run_record"
}

# A benchmark's rounds: every configuration CONFIG ran `rounds` times, its figures in the
# associative array `stat` under "CONFIG-rROUND:KEY".
# median_run CONFIG: the label of CONFIG's run with the median exchanges/s (wall, `per_wall`);
# of two middle runs, the slower.
median_run() {
  local round
  for round in $(seq "$rounds"); do echo "${stat[$1-r$round:per_wall]} $1-r$round"; done \
    | sort -n | awk '{ l[NR] = $2 } END { print l[int((NR + 1) / 2)] }'
}
# every_run CONFIG KEY: KEY of each of CONFIG's runs, in the order run.
every_run() {
  local round out=""
  for round in $(seq "$rounds"); do out+="${out:+, }${stat[$1-r$round:$2]}"; done
  echo "$out"
}

results_section() {
  local file="$1" name="$2" report="$3"
  touch "$file"
  awk -v name="$name" -v report="$report" '
    function emit() { print "<!-- " name " -->"; while ((getline line < report) > 0) print line; print "<!-- /" name " -->"; done = 1 }
    $0 == "<!-- " name " -->" { skip = 1; emit(); next }
    $0 == "<!-- /" name " -->" { skip = 0; next }
    !skip { print }
    END { if (!done) { if (NR) print ""; emit() } }' "$file" >"$file.tmp"
  mv "$file.tmp" "$file"
}

correlator_bench_toml() {
  cat <<EOT
# Written by a benchmark under deploy/bench for one run.
[correlator]
group_id = "$1"
# Exchanges complete as soon as their expected legs are in; the window only bounds stragglers.
# A backlog's requests are read far ahead of their answers, and wait for them this long.
window_ms = $window_ms
# One insert per table and interval: ClickHouse prefers few large inserts.
flush_interval_ms = $flush_interval_ms
# Exchanges wait for their answers in memory, their requests and calls read far ahead.
max_open_bytes = $max_open_bytes
# No hourly retention task on a throwaway database.
retention_days = 0
samples_retention_days = 0

[correlator.outbound]
settle_ms = ${settle_ms:-0}

[topics]
requests = "$requests_topic"
responses = "$responses_topic"
dead_letter = "$dead_letter_topic"
outbound = "$outbound_topic"
partitions = $partitions
create = false

[kafka]
brokers = "$brokers"

[clickhouse]
url = "$ch_url"
database = "$2"

[admin]
listen = "127.0.0.1:$3"

[log]
level = "warn"
EOT
}
