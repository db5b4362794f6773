#!/usr/bin/env bash
# How much the shadowdiff tap costs a client, next to nginx doing the nearest thing it can
# (a reverse proxy with `mirror`), and what each does when its copy of the traffic has
# nowhere fast to go. Everything runs on 127.0.0.1. What the script starts (nginx, taps, the
# slow backend) stops when it exits; the shared Kafka and ClickHouse of
# deploy/local/services.sh are left up, as that script leaves them.
#
#   deploy/bench/tap-vs-nginx.sh                 both scenarios (the default)
#   deploy/bench/tap-vs-nginx.sh --baseline      only the first: direct, tap, nginx, nginx+mirror
#   deploy/bench/tap-vs-nginx.sh --slow-shadow   only the second: slow mirror vs dead broker
#   DURATION=2 deploy/bench/tap-vs-nginx.sh      a quick smoke run
#
# Knobs (environment):
#   DURATION                  seconds per measured wrk run (15)
#   ROUNDS                    times each path is measured, in turns; the median is reported (3)
#   WARMUP                    seconds of unmeasured load before each run, to fill pools (2)
#   THREADS, CONNECTIONS      wrk -t and -c for the full-load runs (2, 64)
#   LOW_CONNECTIONS           wrk -c for the half-load latency runs; by default enough paced
#                             connections (1 ms between requests, ~700 req/s each) for half
#                             the tap's median full-load req/s
#   BENCH_PORT_BASE           ports BASE+1..BASE+15 on 127.0.0.1 are used (18180)
#   BENCH_DEAD_BROKER         where the dead-broker tap looks for Kafka (127.0.0.1:19999)
#   SLOW_DELAY_MS             how late the slow mirror answers (200)
#   SHADOWDIFF_KAFKA_BROKERS  the live broker, started by deploy/local/services.sh (127.0.0.1:9092)
#   BENCH_KEEP=1              keep the temp dir (configs, logs, raw wrk output) for a look
#
# The tables go to stdout and to deploy/bench/results-latest.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

run_baseline=1
run_slow=1
case "${1:-}" in
  "") ;;
  --baseline) run_slow=0 ;;
  --slow-shadow) run_baseline=0 ;;
  -h | --help) header_help; exit 0 ;;
  *) echo "usage: $0 [--baseline | --slow-shadow]" >&2; exit 2 ;;
esac

duration="${DURATION:-15}"
rounds="${ROUNDS:-3}"
warmup="${WARMUP:-2}"
threads="${THREADS:-2}"
connections="${CONNECTIONS:-64}"
low_connections="${LOW_CONNECTIONS:-}"
base="${BENCH_PORT_BASE:-18180}"
dead_broker="${BENCH_DEAD_BROKER:-127.0.0.1:19999}"
live_broker="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
slow_delay_ms="${SLOW_DELAY_MS:-200}"
results="$here/results-latest.md"

backend_port=$((base + 1))
mirror_backend_port=$((base + 2))
slow_backend_port=$((base + 3))
proxy_plain_port=$((base + 4))
proxy_mirror_port=$((base + 5))
proxy_slow_mirror_port=$((base + 6))
tap_port=$((base + 7))
tap_admin_port=$((base + 8))
dead_tap_port=$((base + 9))
dead_tap_admin_port=$((base + 10))
mirror_empty_backend_port=$((base + 11))
proxy_mirror_empty_port=$((base + 12))
nocapture_tap_port=$((base + 13))
nocapture_tap_admin_port=$((base + 14))
bare_proxy_port=$((base + 15))

port_busy() { tcp_open 127.0.0.1 "$1"; }

# --- what this run starts: recorded (deploy/lib.sh), so a run killed with SIGKILL is
# --- cleaned by the next -----------------------------------------------------------------

# One run at a time: a second would take the first's processes for leftovers.
run_claim "$repo/.local/bench/lock" "$repo/.local/bench/running"
# The tap drains and flushes its producer for up to 5 s before it exits.
stop_grace_secs=8
if [ -s "$run_record" ]; then log "stopping what an earlier, interrupted run left behind"; fi
stop_recorded
run_tmpdir shadowdiff-bench

# --- prerequisites ---------------------------------------------------------------------

install_missing() {
  local apt_needed=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_needed+=(nginx)
  command -v wrk >/dev/null || apt_needed+=(wrk)
  command -v curl >/dev/null || apt_needed+=(curl)
  # Debian's nginx package enables and starts the system nginx on port 80 where it can;
  # this script never uses it, and leaves it as the package set it up.
  if [ "${#apt_needed[@]}" -gt 0 ]; then apt_install "${apt_needed[@]}"; fi
  command -v python3 >/dev/null || die "python3 is needed for the slow mirror backend"
}

install_missing
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

for port in $(seq $((base + 1)) $((base + 15))); do
  port_busy "$port" && die "127.0.0.1:$port is in use; set BENCH_PORT_BASE to another range"
done
port_busy "${dead_broker##*:}" && die "something answers on $dead_broker; set BENCH_DEAD_BROKER to a free port"

# Both scenarios load the healthy tap, which needs the broker; idempotent when it is up.
services_up

log "building shadowdiff-tap and its bare_proxy example (release)"
cargo build --release --quiet -p shadowdiff-tap --bin shadowdiff-tap --example bare_proxy
tap_bin="$(target_dir)/release/shadowdiff-tap"
bare_bin="$(target_dir)/release/examples/bare_proxy"
[ -x "$tap_bin" ] || die "no $tap_bin after the build"
[ -x "$bare_bin" ] || die "no $bare_bin after the build"

# --- configs -----------------------------------------------------------------------------

# render TEMPLATE OUT NAME=VALUE...: replaces each @NAME@, and refuses to leave one behind.
render() {
  local template="$1" out="$2" pair name value
  shift 2
  cp "$template" "$out"
  for pair in "$@"; do
    name="${pair%%=*}"; value="${pair#*=}"
    value="$(printf '%s' "$value" | sed 's/[&|\\]/\\&/g')"
    sed -i "s|@$name@|$value|g" "$out"
  done
  if grep -q '@[A-Z_]*@' "$out"; then die "unrendered placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)"; fi
}

# Workers run as the invoking user so they can read the temp dir; nginx only honours
# `user` when started as root.
user_directive=""
if [ "$(id -u)" -eq 0 ]; then user_directive="user root root;"; fi

mkdir -p "$tmp/www" "$tmp/tmp"
cp "$here/payload.json" "$tmp/www/payload.json"
nginx_vars=(
  PREFIX="$tmp" USER_DIRECTIVE="$user_directive" SLOW_DELAY_MS="$slow_delay_ms"
  BACKEND_PORT="$backend_port" MIRROR_BACKEND_PORT="$mirror_backend_port" SLOW_BACKEND_PORT="$slow_backend_port"
  PROXY_PLAIN_PORT="$proxy_plain_port" PROXY_MIRROR_PORT="$proxy_mirror_port"
  PROXY_SLOW_MIRROR_PORT="$proxy_slow_mirror_port"
  MIRROR_EMPTY_BACKEND_PORT="$mirror_empty_backend_port" PROXY_MIRROR_EMPTY_PORT="$proxy_mirror_empty_port"
)
render "$here/nginx-backend.conf.in" "$tmp/nginx-backend.conf" "${nginx_vars[@]}"
render "$here/nginx-proxy.conf.in" "$tmp/nginx-proxy.conf" "${nginx_vars[@]}"

run_id="bench-$(date +%Y%m%d%H%M%S)-$$"
render "$here/tap.toml.in" "$tmp/tap.toml" \
  LISTEN_PORT="$tap_port" UPSTREAM_PORT="$backend_port" TAP_ID="$run_id" BROKERS="$live_broker" CAPTURE_PERCENT=100 \
  MESSAGE_TIMEOUT_MS=30000 TOPIC_PREFIX="$run_id" CREATE_TOPICS=true ADMIN_PORT="$tap_admin_port"
# The same tap capturing nothing: what proxying alone costs, publishing apart.
render "$here/tap.toml.in" "$tmp/tap-nocapture.toml" \
  LISTEN_PORT="$nocapture_tap_port" UPSTREAM_PORT="$backend_port" TAP_ID="$run_id-nocapture" BROKERS="$live_broker" \
  CAPTURE_PERCENT=0 MESSAGE_TIMEOUT_MS=30000 TOPIC_PREFIX="$run_id" CREATE_TOPICS=false ADMIN_PORT="$nocapture_tap_admin_port"
render "$here/tap.toml.in" "$tmp/tap-dead-broker.toml" \
  LISTEN_PORT="$dead_tap_port" UPSTREAM_PORT="$backend_port" TAP_ID="$run_id-dead-broker" BROKERS="$dead_broker" CAPTURE_PERCENT=100 \
  MESSAGE_TIMEOUT_MS=2000 TOPIC_PREFIX="$run_id" CREATE_TOPICS=false ADMIN_PORT="$dead_tap_admin_port"
cp "$here/slow_backend.py" "$tmp/slow_backend.py"   # run from $tmp so its pid is recognisably ours

# --- servers -----------------------------------------------------------------------------

wait_until() {
  local what="$1" seconds="$2"; shift 2
  poll "$seconds" "$@" || die "$what did not come up within ${seconds}s (logs in $tmp; rerun with BENCH_KEEP=1 to keep them)"
}
# Any HTTP status will do: the dead-broker tap's /healthz answers 503, as it should.
http_answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null)" != 000 ]; }

start_nginx() {
  local name="$1"
  # -e: the error log before the config is read, else nginx opens the system's log path.
  "$nginx_bin" -p "$tmp" -e "$tmp/$name-startup.log" -c "$tmp/nginx-$name.conf" -t -q \
    || die "nginx-$name.conf does not pass nginx -t"
  "$nginx_bin" -p "$tmp" -e "$tmp/$name-startup.log" -c "$tmp/nginx-$name.conf" 9>&-
  wait_until "nginx $name" 10 test -s "$tmp/$name.pid"
  remember_pid "$(cat "$tmp/$name.pid")"
}

# start_tap NAME ADMIN_PORT CHECK: CHECK is http_ok (healthy, broker reachable) or
# http_answers (serving, whatever /healthz says). The tap runs its config file as written
# (clean_env): an exported SHADOWDIFF_KAFKA_BROKERS would otherwise revive the dead-broker tap.
start_tap() {
  local name="$1" admin_port="$2" check="$3" pid
  env "${clean_env[@]}" "$tap_bin" --config "$tmp/$name.toml" >"$tmp/$name.log" 2>&1 9>&- &
  pid=$!
  remember_pid "$pid"
  # up_or_dead: whether it passes CHECK; dies as soon as it has exited.
  up_or_dead() {
    kill -0 "$pid" 2>/dev/null || { tail -20 "$tmp/$name.log" >&2; die "$name exited at start-up"; }
    "$check" "http://127.0.0.1:$admin_port/healthz"
  }
  poll 30 up_or_dead && return 0
  tail -20 "$tmp/$name.log" >&2
  die "$name's /healthz on 127.0.0.1:$admin_port did not pass within 30s"
}

log "starting the backends and the nginx proxies under $tmp"
start_nginx backend
start_nginx proxy
python3 "$tmp/slow_backend.py" "$slow_backend_port" "$(awk -v ms="$slow_delay_ms" 'BEGIN { print ms / 1000 }')" \
  >"$tmp/slow-backend.log" 2>&1 9>&- &
remember_pid $!
wait_until "backend" 10 http_ok "http://127.0.0.1:$backend_port/payload.json"
wait_until "nginx proxy" 10 http_ok "http://127.0.0.1:$proxy_plain_port/payload.json"
wait_until "slow backend" 10 http_ok "http://127.0.0.1:$slow_backend_port/"

# --- measuring ---------------------------------------------------------------------------

# bench NAME URL CONNECTIONS [wrk options]: a warm-up, then the measured run; prints
# "req/s p50 p99 errors" with latencies in ms. `timeout` bounds each run even if wrk hangs
# on a dead server.
bench() {
  local name="$1" url="$2" conns="$3" out="$tmp/wrk-$1.txt"
  shift 3
  local t="$threads"; [ "$conns" -lt "$t" ] && t="$conns"
  log "wrk $name: -t$t -c$conns -d${duration}s $* $url"
  if [ "$warmup" -gt 0 ]; then
    timeout --kill-after=5 $((warmup + 30)) wrk -t"$t" -c"$conns" -d"${warmup}s" "$@" "$url" >/dev/null 2>&1 || true
  fi
  timeout --kill-after=5 $((duration + 30)) wrk -t"$t" -c"$conns" -d"${duration}s" --latency "$@" "$url" >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk $name failed"; }
  # wrk prints latencies as 812.00us, 1.23ms, 2.01s or 1.00m; errors are non-2xx/3xx
  # responses plus socket errors, which a broken path would otherwise hide behind speed.
  awk '
    function ms(v,   n, unit) { n = v + 0; unit = v; sub(/^[0-9.]+/, "", unit)
      if (unit == "us") return n / 1000; if (unit == "s") return n * 1000
      if (unit == "m") return n * 60000; if (unit == "h") return n * 3600000; return n }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { errors += $NF }
    /Socket errors:/ { for (i = 3; i <= NF; i++) { gsub(/,/, "", $i); if ($i ~ /^[0-9]+$/) errors += $i } }
    END { if (rps == "") exit 1; printf "%.0f %.2f %.2f %d\n", rps, p50, p99, errors }
  ' "$out" || { cat "$out" >&2; die "cannot read wrk's output for $name"; }
}

# The machine's speed drifts over minutes (shared cores), so the paths are measured in
# turns, ROUNDS times, and each is reported by its median run: a slow spell then lands on
# every path alike instead of on whichever ran during it.
declare -A runs
# measure NAME URL CONNECTIONS: one more run of NAME.
measure() {
  local result
  result="$(bench "$@")"
  runs[$1]+="$result"$'\n'
}
# median NAME: "req/s p50 p99 errors" of the run with the median req/s, errors summed
# over every run (a failure in any round shows).
median() {
  printf '%s' "${runs[$1]}" | sort -n | awk '
    { line[NR] = $0; errors += $4 }
    END { split(line[int((NR + 1) / 2)], m, " "); printf "%s %s %s %d\n", m[1], m[2], m[3], errors }'
}
# spread NAME: every run's req/s, in the order measured.
spread() { printf '%s' "${runs[$1]}" | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $1 }'; }

row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }           # label req/s p50 p99 errors
ratio_row() { printf '| %s | %s | %s | %s |\n' "$@"; }      # label req/s p50 p99
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f", a - b }'; }

# What the tap did with the events: scraped from its /metrics before it stops.
tap_events() {
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk '
    /^shadowdiff_tap_events_published_total/ { published += $NF }
    /^shadowdiff_tap_events_dropped_total/ { dropped += $NF; split($0, a, "reason=\""); split(a[2], r, "\""); by[r[1]] += $NF }
    END { printf "%d published, %d dropped", published, dropped
      first = 1; for (k in by) { printf "%s%s %d", (first ? " (" : ", "), k, by[k]; first = 0 } if (!first) printf ")"
      printf "\n" }'
}

report="$tmp/results.md"
{
  echo "# shadowdiff tap vs nginx"
  echo
  run_stamp
  echo "$(nproc) CPUs, $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }'),"
  echo "wrk -t$threads -c$connections -d${duration}s --latency after a ${warmup}s warm-up; backend: nginx, 2 workers, a $(wc -c <"$here/payload.json")-byte JSON file."
  echo "Each path measured $rounds times, in turns with the others; each row is its median run."
  echo "Everything shares the same CPUs (wrk, backends, proxies, Kafka): compare rows, not machines."
} >"$report"

path="/payload.json"
start_tap tap "$tap_admin_port" http_ok

if [ "$run_baseline" = 1 ]; then
  # What the tap costs apart from publishing, and apart from its HTTP stack.
  start_tap tap-nocapture "$nocapture_tap_admin_port" http_ok
  cp "$bare_bin" "$tmp/bare_proxy"   # run from $tmp, so its pid is recognisably ours
  "$tmp/bare_proxy" "127.0.0.1:$bare_proxy_port" "http://127.0.0.1:$backend_port" 2 >"$tmp/bare-proxy.log" 2>&1 9>&- &
  remember_pid $!
  wait_until "bare proxy" 10 http_ok "http://127.0.0.1:$bare_proxy_port/payload.json"
  for round in $(seq "$rounds"); do
    log "round $round of $rounds"
    measure direct "http://127.0.0.1:$backend_port$path" "$connections"
    measure tap "http://127.0.0.1:$tap_port$path" "$connections"
    measure nginx-plain "http://127.0.0.1:$proxy_plain_port$path" "$connections"
    measure tap-nocapture "http://127.0.0.1:$nocapture_tap_port$path" "$connections"
    measure bare "http://127.0.0.1:$bare_proxy_port$path" "$connections"
    measure nginx-mirror "http://127.0.0.1:$proxy_mirror_port$path" "$connections"
    measure nginx-mirror-204 "http://127.0.0.1:$proxy_mirror_empty_port$path" "$connections"
  done
  read -r t_rps t_p50 t_p99 t_err < <(median tap)
  # Half the tap's load: a paced connection sends about 700 requests a second (1 ms of
  # pause, the response, and the timer's slack).
  [ -n "$low_connections" ] || low_connections=$(( (t_rps / 2 + 699) / 700 ))
  paced=(-s "$here/paced.lua")
  for round in $(seq "$rounds"); do
    log "half-load round $round of $rounds"
    measure direct-low "http://127.0.0.1:$backend_port$path" "$low_connections" "${paced[@]}"
    measure tap-low "http://127.0.0.1:$tap_port$path" "$low_connections" "${paced[@]}"
    measure nginx-plain-low "http://127.0.0.1:$proxy_plain_port$path" "$low_connections" "${paced[@]}"
    measure bare-low "http://127.0.0.1:$bare_proxy_port$path" "$low_connections" "${paced[@]}"
  done
  read -r d_rps d_p50 d_p99 d_err < <(median direct)
  read -r n_rps n_p50 n_p99 n_err < <(median nginx-plain)
  read -r c_rps c_p50 c_p99 c_err < <(median tap-nocapture)
  read -r b_rps b_p50 b_p99 b_err < <(median bare)
  read -r m_rps m_p50 m_p99 m_err < <(median nginx-mirror)
  read -r e_rps e_p50 e_p99 e_err < <(median nginx-mirror-204)
  read -r dl_rps dl_p50 dl_p99 dl_err < <(median direct-low)
  read -r tl_rps tl_p50 tl_p99 tl_err < <(median tap-low)
  read -r nl_rps nl_p50 nl_p99 nl_err < <(median nginx-plain-low)
  read -r bl_rps bl_p50 bl_p99 bl_err < <(median bare-low)
  tap_summary="$(tap_events "$tap_admin_port")"

  {
    echo
    echo "## Full load ($connections connections)"
    echo
    echo "| path | req/s | p50 ms | p99 ms | errors |"
    echo "|---|---:|---:|---:|---:|"
    row "direct to the backend" "$d_rps" "$d_p50" "$d_p99" "$d_err"
    row "shadowdiff tap → backend, publishing to Kafka" "$t_rps" "$t_p50" "$t_p99" "$t_err"
    row "nginx reverse proxy" "$n_rps" "$n_p50" "$n_p99" "$n_err"
    row "nginx reverse proxy + mirror" "$m_rps" "$m_p50" "$m_p99" "$m_err"
    row "nginx reverse proxy + mirror answering 204 (nginx's best case)" "$e_rps" "$e_p50" "$e_p99" "$e_err"
    row "shadowdiff tap capturing nothing (\`capture_percent = 0\`)" "$c_rps" "$c_p50" "$c_p99" "$c_err"
    row "hyper's server and pooled client alone (\`bare_proxy\` example)" "$b_rps" "$b_p50" "$b_p99" "$b_err"
    echo
    echo "| ratio | req/s | p50 | p99 |"
    echo "|---|---:|---:|---:|"
    ratio_row "tap / nginx + mirror" "$(ratio "$t_rps" "$m_rps")" "$(ratio "$t_p50" "$m_p50")" "$(ratio "$t_p99" "$m_p99")"
    ratio_row "tap / nginx + mirror answering 204" "$(ratio "$t_rps" "$e_rps")" "$(ratio "$t_p50" "$e_p50")" "$(ratio "$t_p99" "$e_p99")"
    ratio_row "tap / nginx plain" "$(ratio "$t_rps" "$n_rps")" "$(ratio "$t_p50" "$n_p50")" "$(ratio "$t_p99" "$n_p99")"
    ratio_row "tap capturing nothing / nginx plain" "$(ratio "$c_rps" "$n_rps")" "$(ratio "$c_p50" "$n_p50")" "$(ratio "$c_p99" "$n_p99")"
    ratio_row "hyper alone / nginx plain" "$(ratio "$b_rps" "$n_rps")" "$(ratio "$b_p50" "$n_p50")" "$(ratio "$b_p99" "$n_p99")"
    echo
    echo "req/s of every round: tap $(spread tap); nginx plain $(spread nginx-plain); nginx + mirror $(spread nginx-mirror);"
    echo "tap capturing nothing $(spread tap-nocapture); hyper alone $(spread bare)."
    echo "Tap events over all its runs (warm-ups included): $tap_summary."
    echo "nginx does not read a mirror response's body, so it closes each mirror connection when"
    echo "the shadow answers with one (as a real shadow does); the 204 row is the same proxy with a"
    echo "mirror that keeps its connections."
    echo
    echo "## Latency added at half load ($low_connections connections)"
    echo
    echo "wrk2 (constant rate) is not packaged, so paced connections stand in for it: each waits"
    echo "1 ms after a response before its next request (\`paced.lua\`), and there are enough of them"
    echo "to offer about half the tap's median full-load rate ($t_rps req/s). nginx and hyper alone"
    echo "are offered the same load, for what any proxy adds on this machine."
    echo
    echo "| path | req/s | p50 ms | p99 ms | errors |"
    echo "|---|---:|---:|---:|---:|"
    row "direct to the backend" "$dl_rps" "$dl_p50" "$dl_p99" "$dl_err"
    row "shadowdiff tap" "$tl_rps" "$tl_p50" "$tl_p99" "$tl_err"
    row "nginx reverse proxy" "$nl_rps" "$nl_p50" "$nl_p99" "$nl_err"
    row "hyper's server and pooled client alone" "$bl_rps" "$bl_p50" "$bl_p99" "$bl_err"
    row "**added by the tap**" "" "$(diff_ms "$tl_p50" "$dl_p50")" "$(diff_ms "$tl_p99" "$dl_p99")" ""
    row "added by nginx" "" "$(diff_ms "$nl_p50" "$dl_p50")" "$(diff_ms "$nl_p99" "$dl_p99")" ""
    row "added by hyper alone" "" "$(diff_ms "$bl_p50" "$dl_p50")" "$(diff_ms "$bl_p99" "$dl_p99")" ""
  } >>"$report"
fi

if [ "$run_slow" = 1 ]; then
  start_tap tap-dead-broker "$dead_tap_admin_port" http_answers

  # The baselines are measured again here, next to the runs they are compared with.
  for round in $(seq "$rounds"); do
    log "slow-shadow round $round of $rounds"
    measure nginx-plain-2 "http://127.0.0.1:$proxy_plain_port$path" "$connections"
    measure nginx-slow-mirror "http://127.0.0.1:$proxy_slow_mirror_port$path" "$connections"
    measure direct-2 "http://127.0.0.1:$backend_port$path" "$connections"
    measure tap-2 "http://127.0.0.1:$tap_port$path" "$connections"
    measure tap-dead-broker "http://127.0.0.1:$dead_tap_port$path" "$connections"
  done
  read -r n2_rps n2_p50 n2_p99 n2_err < <(median nginx-plain-2)
  read -r s_rps s_p50 s_p99 s_err < <(median nginx-slow-mirror)
  read -r d2_rps d2_p50 d2_p99 d2_err < <(median direct-2)
  read -r t2_rps t2_p50 t2_p99 t2_err < <(median tap-2)
  read -r x_rps x_p50 x_p99 x_err < <(median tap-dead-broker)
  dead_summary="$(tap_events "$dead_tap_admin_port")"

  {
    echo
    echo "## Slow shadow ($connections connections)"
    echo
    echo "nginx's mirror answers after ${slow_delay_ms} ms; the tap's broker ($dead_broker) does not answer at all"
    echo "(\`message_timeout_ms = 2000\`). The primary's clients should not notice either."
    echo
    echo "| path | req/s | p50 ms | p99 ms | errors |"
    echo "|---|---:|---:|---:|---:|"
    row "nginx reverse proxy" "$n2_rps" "$n2_p50" "$n2_p99" "$n2_err"
    row "nginx reverse proxy + slow mirror" "$s_rps" "$s_p50" "$s_p99" "$s_err"
    row "direct to the backend" "$d2_rps" "$d2_p50" "$d2_p99" "$d2_err"
    row "shadowdiff tap, broker up" "$t2_rps" "$t2_p50" "$t2_p99" "$t2_err"
    row "shadowdiff tap, broker dead" "$x_rps" "$x_p50" "$x_p99" "$x_err"
    echo
    echo "| ratio | req/s | p50 | p99 |"
    echo "|---|---:|---:|---:|"
    ratio_row "nginx + slow mirror / nginx plain" "$(ratio "$s_rps" "$n2_rps")" "$(ratio "$s_p50" "$n2_p50")" "$(ratio "$s_p99" "$n2_p99")"
    # The tap's own cost is in the first section; this row isolates what the dead broker adds.
    ratio_row "tap, broker dead / tap, broker up" "$(ratio "$x_rps" "$t2_rps")" "$(ratio "$x_p50" "$t2_p50")" "$(ratio "$x_p99" "$t2_p99")"
    ratio_row "tap, broker dead / direct" "$(ratio "$x_rps" "$d2_rps")" "$(ratio "$x_p50" "$d2_p50")" "$(ratio "$x_p99" "$d2_p99")"
    echo
    echo "Dead-broker tap events (warm-up included): $dead_summary."
  } >>"$report"
fi

cp "$report" "$results"
echo
cat "$report"
log "written to ${results#"$repo/"}"
