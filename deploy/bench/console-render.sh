#!/usr/bin/env bash
# How long the verdict service's console takes to render its pages on a million stored
# exchanges: the overview, a candidate's page (the whole verdict report) and the comparisons
# list, filtered and paged. A fresh database on the shared ClickHouse of
# deploy/local/services.sh gets its schema from the verdict service's own migrations, then
# EXCHANGES exchanges of one candidate, loaded server-side (INSERT ... SELECT FROM numbers())
# as the correlator writes them: a candidate and a secondary row per request, difference rows
# for the diverged candidates and for noise on both legs, samples and a verdict history.
# Each page is then fetched WARMUP times, and RUNS times with the clock on, in turns; a
# second verdict service, reaching ClickHouse through an nginx that adds `log_queries=1`,
# renders each page once more, and system.query_log tells the rows each query read.
#
#   deploy/bench/console-render.sh                      the default run (1 000 000 exchanges)
#   EXCHANGES=100000 RUNS=3 deploy/bench/console-render.sh   a quick smoke run
#
# Knobs (environment):
#   EXCHANGES                 requests the candidate and the secondary were compared on (1000000)
#   SPAN_SECS                 the exchanges are spread over this long, ending at the load (3600)
#   CHUNK                     exchanges per INSERT, so the tables hold several parts (50000)
#   NOISE_PERCENT             exchanges where both legs differ at `served_at` and `trace_id` (20)
#   RUNS                      timed fetches of each page (10)
#   WARMUP                    untimed fetches of each page first (2)
#   BENCH_PORT_BASE           ports BASE..BASE+4 on 127.0.0.1 are used (18190)
#   SHADOWDIFF_CLICKHOUSE_URL the ClickHouse HTTP endpoint (http://127.0.0.1:8123)
#   BENCH_KEEP=1              keep the temp dir (configs, logs, pages) and the database
#
# The tables go to stdout and to deploy/bench/results-console.md. A benchmark, not a test:
# it fails when a page does not render what the data says it must, never because it was slow.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_tag=bench
# shellcheck source=SCRIPTDIR/../lib.sh
. "$here/../lib.sh"
cd "$repo"

knobs_only "$@"

exchanges="${EXCHANGES:-1000000}"
span_secs="${SPAN_SECS:-3600}"
chunk="${CHUNK:-50000}"
noise_percent="${NOISE_PERCENT:-20}"
runs="${RUNS:-10}"
warmup="${WARMUP:-2}"
base="${BENCH_PORT_BASE:-18190}"
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
results="$here/results-console.md"

database=shadowdiff_bench_console
candidate=candidate
secondary=secondary
verdict_port="$base"; verdict_admin_port=$((base + 1))
logged_port=$((base + 2)); logged_admin_port=$((base + 3)); proxy_port=$((base + 4))
# A bench token protects nothing; the service keeps only its digest.
token=shadowdiff-bench-console-reader
token_sha256="$(printf %s "$token" | sha256sum | cut -d' ' -f1)"

ch_hostport="${ch_url#http://}"; ch_hostport="${ch_hostport%%/*}"
ch_query() { curl -fsS --max-time 600 "$ch_url/" --data-binary "$1"; }
ch_db() { curl -fsS --max-time 600 "$ch_url/?database=$database" --data-binary "$1"; }

# --- what this run starts and creates: recorded (deploy/lib.sh), so a run killed with
# --- SIGKILL is cleaned by the next ----------------------------------------------------------

run_claim "$repo/.local/bench/console.lock" "$repo/.local/bench/console-running"
forget_recorded() {
  case "$1" in
    database)
      if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept database $2"
      else ch_query "DROP DATABASE IF EXISTS $2" >/dev/null 2>&1 || log "could not drop database $2"; fi ;;
  esac
}

services_up
if [ -s "$run_record" ]; then log "cleaning up what an earlier, interrupted run left behind"; fi
stop_recorded
run_tmpdir shadowdiff-bench-console

[ "$exchanges" -ge 1000 ] || die "EXCHANGES must be at least 1000"
[ "$runs" -ge 1 ] || die "RUNS must be at least 1"
for port in $(seq "$base" $((base + 4))); do
  tcp_open 127.0.0.1 "$port" && die "127.0.0.1:$port is in use; set BENCH_PORT_BASE to another range"
done
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

log "building shadowdiff-verdict (release)"
cargo build --release --quiet -p shadowdiff-verdict
verdict_bin="$(target_dir)/release/shadowdiff-verdict"
[ -x "$verdict_bin" ] || die "no $verdict_bin after the build"

# --- the verdict services -------------------------------------------------------------------

window_secs=$((span_secs + 3600))
# verdict_config PORT ADMIN_PORT CLICKHOUSE_URL
verdict_config() {
  cat <<EOF
# Written by deploy/bench/console-render.sh for one run.
[verdict]
listen = "127.0.0.1:$1"
# The whole load is in the window, with an hour to spare for the run itself.
default_window_secs = $window_secs
max_window_secs = $window_secs
# No per-candidate gauges: their refresh runs every candidate's report in the background,
# which would be timed with the pages.
gauge_interval_secs = 0

[clickhouse]
url = "$3"
database = "$database"

[admin]
listen = "127.0.0.1:$2"

[[auth.tokens]]
name = "bench-reader"
# printf %s $token | sha256sum
sha256 = "$token_sha256"
scopes = ["read"]

[log]
level = "warn"
EOF
}

# start_verdict NAME: runs $tmp/NAME.toml as written (clean_env) until its /healthz passes.
start_verdict() {
  local name="$1" admin pid
  admin="$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"$/\1/p' "$tmp/$name.toml" | tail -1)"
  "$verdict_bin" --config "$tmp/$name.toml" --check-config >/dev/null || die "$name.toml does not pass --check-config"
  env "${clean_env[@]}" "$verdict_bin" --config "$tmp/$name.toml" >"$tmp/$name.log" 2>&1 9>&- &
  pid=$!
  remember_pid "$pid"
  up_or_dead() {
    kill -0 "$pid" 2>/dev/null || { tail -20 "$tmp/$name.log" >&2; die "$name exited at start-up"; }
    http_ok "http://127.0.0.1:$admin/healthz"
  }
  poll 60 up_or_dead || { tail -20 "$tmp/$name.log" >&2; die "$name's /healthz on 127.0.0.1:$admin did not pass within 60s"; }
}

remember database "$database"
ch_query "DROP DATABASE IF EXISTS $database" >/dev/null
verdict_config "$verdict_port" "$verdict_admin_port" "$ch_url" >"$tmp/verdict.toml"
log "starting the verdict service (release); its migrations make $database"
start_verdict verdict

# --- the load -------------------------------------------------------------------------------

now_secs="$(ch_query "SELECT toUInt32(now())")"
start_secs=$((now_secs - span_secs))
span_ms=$((span_secs * 1000))

# exchange OFFSET COUNT: one row per request n, with everything each leg's rows take from it.
# Every choice is a hash of n, so a rerun loads the same rows (at other times). Ids are
# UUIDv7, as the tap mints them: time-ordered, so (deployment, request_id) orders by time too.
exchange() {
  cat <<SQL
SELECT * FROM (
  SELECT
    number AS n,
    $start_secs * 1000 + intDiv(number * $span_ms, $exchanges) AS ts_ms,
    toDateTime(intDiv(ts_ms, 1000)) AS ts,
    hex(toUInt64(ts_ms)) AS t_hex,
    hex(bitOr(cityHash64(number, 7), 0x8000000000000000)) AS r1,
    hex(bitOr(cityHash64(number, 8), 0x8000000000000000)) AS r2,
    lower(concat(substring(t_hex, 1, 8), '-', substring(t_hex, 9, 4), '-7', substring(r1, 2, 3),
                 '-a', substring(r1, 5, 3), '-', substring(r2, 2, 12))) AS request_id,
    cityHash64(number, 1) % 10000 AS u_route,
    cityHash64(number, 2) % 10000 AS u_div,
    cityHash64(number, 3) % 10000 AS u_fail,
    cityHash64(number, 4) % 100 AS u_noise,
    cityHash64(number, 5) % 10000 AS u_sfail,
    multiIf(u_route < 5000, '/items/{id}', u_route < 7500, '/search',
            u_route < 9000, '/users/{id}/cart', '/categories/{slug}') AS route,
    -- Service time by route, and a log-normal spread: a part shared by the request's legs
    -- (what the request asks for), a part each leg's own.
    multiIf(route = '/search', 9000, route = '/users/{id}/cart', 5000, route = '/items/{id}', 4000, 6000) AS route_us,
    ((cityHash64(number, 10) % 1000000 + cityHash64(number, 11) % 1000000 + cityHash64(number, 12) % 1000000)
      / 1000000 - 1.5) * 2 AS z_req,
    ((cityHash64(number, 13) % 1000000 + cityHash64(number, 14) % 1000000 + cityHash64(number, 15) % 1000000)
      / 1000000 - 1.5) * 2 AS z_p,
    ((cityHash64(number, 16) % 1000000 + cityHash64(number, 17) % 1000000 + cityHash64(number, 18) % 1000000)
      / 1000000 - 1.5) * 2 AS z_s,
    ((cityHash64(number, 19) % 1000000 + cityHash64(number, 20) % 1000000 + cityHash64(number, 21) % 1000000)
      / 1000000 - 1.5) * 2 AS z_c,
    toUInt64(route_us * exp(0.3 * z_req + 0.25 * z_p)) AS primary_latency_us,
    -- 1% of item reads are for items that do not exist: 404 on every leg, nothing differs.
    route = '/items/{id}' AND u_fail >= 9000 AND u_fail < 9100 AS not_found,
    if(not_found, 404, 200) AS primary_status,
    -- The candidate: 0.1% timeouts, 0.05% legs that never came, 0.2% answered 500.
    multiIf(u_fail < 10, 'timeout', u_fail < 15, 'missing', u_fail < 35 AND NOT not_found, 'status', 'ok') AS c_kind,
    multiIf(c_kind = 'timeout', 'shadow_error', c_kind = 'missing', 'missing_shadow', 'complete') AS c_outcome,
    multiIf(c_kind IN ('timeout', 'missing'), 0, c_kind = 'status', 500, primary_status) AS c_status,
    multiIf(c_kind = 'timeout', 'timeout', c_kind = 'missing', 'missing', '') AS c_error,
    multiIf(c_kind = 'timeout', 5000000, c_kind = 'missing', 0,
            toUInt64(route_us * 1.03 * exp(0.3 * z_req + 0.25 * z_c))) AS c_latency_us,
    if(c_kind = 'missing', toInt64(0), toInt64(c_latency_us) - toInt64(primary_latency_us)) AS c_delta_us,
    -- The secondary, the primary's own version: 0.05% timeouts, else the primary's status.
    u_sfail < 5 AS s_timeout,
    if(s_timeout, 'shadow_error', 'complete') AS s_outcome,
    if(s_timeout, 0, primary_status) AS s_status,
    if(s_timeout, 'timeout', '') AS s_error,
    if(s_timeout, 5000000, toUInt64(route_us * exp(0.3 * z_req + 0.25 * z_s))) AS s_latency_us,
    -- Honest noise: a timestamp and a trace id the backends write differently every time.
    u_noise < $noise_percent AS noisy,
    concat('"', toString(ts_ms * 1000000 + cityHash64(number, 30) % 1000000), '"') AS served_p,
    concat('"', lower(hex(cityHash64(number, 31))), '"') AS trace_p,
    [('changed_value', 'served_at', served_p, concat('"', toString(ts_ms * 1000000 + cityHash64(number, 32) % 9000000), '"'), toUInt8(1)),
     ('changed_value', 'trace_id', trace_p, concat('"', lower(hex(cityHash64(number, 33))), '"'), toUInt8(1))] AS noise_diffs,
    toString((cityHash64(number, 34) % 100000) * 100) AS price,
    -- What the candidate changes, each on a share of its route's answers (per 10 000):
    -- the price of 2% of items, one result's price in 1.5% of searches, a cart line dropped
    -- in 1%, a stock count turned string in 0.5% of categories; and the 500s above.
    arrayFilter(d -> tupleElement(d, 6) = 1, [
      ('status', 'status', toString(primary_status), '500', toUInt8(0), toUInt8(c_kind = 'status')),
      ('extra_field', 'error', '', '"internal error"', toUInt8(0), toUInt8(c_kind = 'status')),
      ('changed_value', 'price', price, toString(toUInt64(price) + 1), toUInt8(0),
        toUInt8(c_kind = 'ok' AND route = '/items/{id}' AND NOT not_found AND u_div < 200)),
      ('changed_value', concat('items[', toString(u_div % 5), '].price'), price, toString(toUInt64(price) + 1), toUInt8(0),
        toUInt8(c_kind = 'ok' AND route = '/search' AND u_div < 150)),
      ('array_length', 'lines', '3', '2', toUInt8(0), toUInt8(c_kind = 'ok' AND route = '/users/{id}/cart' AND u_div < 100)),
      ('changed_type', concat('products[', toString(u_div % 8), '].stock'), '12', '"12"', toUInt8(0),
        toUInt8(c_kind = 'ok' AND route = '/categories/{slug}' AND u_div < 50)),
      (tupleElement(noise_diffs[1], 1), tupleElement(noise_diffs[1], 2), tupleElement(noise_diffs[1], 3),
        tupleElement(noise_diffs[1], 4), toUInt8(1), toUInt8(noisy AND c_outcome = 'complete')),
      (tupleElement(noise_diffs[2], 1), tupleElement(noise_diffs[2], 2), tupleElement(noise_diffs[2], 3),
        tupleElement(noise_diffs[2], 4), toUInt8(1), toUInt8(noisy AND c_outcome = 'complete'))
    ]) AS c_diffs,
    if(noisy AND NOT s_timeout, noise_diffs, arrayFilter(d -> 0, noise_diffs)) AS s_diffs
  FROM numbers($1, $2)
)
SQL
}

exchange_columns="ts, request_id, route, method, deployment, role, outcome, primary_status, shadow_status,
  primary_error, shadow_error, primary_latency_us, shadow_latency_us, latency_delta_us, status_differs,
  body_differs, differences, noise, stage"
difference_columns="ts, request_id, route, deployment, role, kind, path, primary_value, shadow_value, noise"

load_chunk() {
  local rows
  rows="$(exchange "$1" "$2")"
  # The rows as RowBuilder::add and Fields::compared write them: body_differs counts any
  # difference but status and headers, noise included; a missing leg has no answer at all.
  ch_db "INSERT INTO exchanges ($exchange_columns)
    SELECT ts, request_id, route, 'GET', '$candidate', 'candidate', c_outcome, primary_status, c_status, '', c_error,
      primary_latency_us, c_latency_us, c_delta_us, toUInt8(c_kind = 'status'),
      toUInt8(arrayExists(d -> tupleElement(d, 1) != 'status', c_diffs)), length(c_diffs),
      toUInt32(arraySum(arrayMap(d -> tupleElement(d, 5), c_diffs))), 'shadow'
    FROM ($rows)"
  ch_db "INSERT INTO exchanges ($exchange_columns)
    SELECT ts, request_id, route, 'GET', '$secondary', 'secondary', s_outcome, primary_status, s_status, '', s_error,
      primary_latency_us, s_latency_us, toInt64(s_latency_us) - toInt64(primary_latency_us), 0,
      toUInt8(length(s_diffs) > 0), length(s_diffs), length(s_diffs), 'shadow'
    FROM ($rows)"
  ch_db "INSERT INTO differences ($difference_columns)
    SELECT ts, request_id, route, '$candidate', 'candidate', tupleElement(d, 1), tupleElement(d, 2),
      tupleElement(d, 3), tupleElement(d, 4), tupleElement(d, 5)
    FROM ($rows) ARRAY JOIN c_diffs AS d"
  ch_db "INSERT INTO differences ($difference_columns)
    SELECT ts, request_id, route, '$secondary', 'secondary', tupleElement(d, 1), tupleElement(d, 2),
      tupleElement(d, 3), tupleElement(d, 4), tupleElement(d, 5)
    FROM ($rows) ARRAY JOIN s_diffs AS d"
}

log "loading $exchanges exchanges over the last $span_secs s into $database, $chunk per insert"
load_started="$(date +%s.%N)"
for ((offset = 0; offset < exchanges; offset += chunk)); do
  load_chunk "$offset" $((exchanges - offset < chunk ? exchanges - offset : chunk))
done
# Bodies of at most 5 divergent exchanges per route and minute, the primary's and the
# candidate's, as the correlator samples them (stand-in bodies: no page reads them).
ch_db "INSERT INTO samples (ts, request_id, route, method, deployment, role, status, content_type, headers, body,
    body_length, truncated)
  SELECT ts, request_id, route, method, if(leg = 'primary', 'primary', deployment), leg,
    if(leg = 'primary', primary_status, shadow_status), 'application/json', 'content-type: application/json\n',
    concat('{\"request_id\":\"', request_id, '\",\"route\":\"', route, '\",\"served_by\":\"', leg, '\"}') AS body,
    length(body), 0
  FROM (SELECT ts, request_id, route, method, deployment, primary_status, shadow_status, toStartOfMinute(ts) AS minute
        FROM exchanges WHERE deployment = '$candidate' AND differences > noise LIMIT 5 BY route, minute)
  ARRAY JOIN ['primary', 'candidate'] AS leg"
# The stage history: a CD system asked once a minute, and was told fail.
ch_db "INSERT INTO verdicts (ts, candidate, stage, verdict, caller, samples, compared, divergence_rate, new_errors,
    p95_delta, reasons, revision, since)
  SELECT toDateTime($start_secs + (number + 1) * 60), '$candidate', 'shadow', 'fail', 'flagger-check',
    toUInt64((number + 1) * $exchanges * 60 / $span_secs), toUInt64((number + 1) * $exchanges * 60 / $span_secs),
    0.017, 3, 0.03, 'price on /items/{id} changes systematically (secondary never)', 'bench-1', toDateTime($start_secs)
  FROM numbers(least(intDiv($span_secs, 60), 200))"
load_secs="$(awk -v a="$load_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')"

# Background merges settle, as they would have on a live store; the state is reported.
merges_idle() { [ "$(ch_query "SELECT count() FROM system.merges WHERE database = '$database'")" = 0 ]; }
for _ in 1 2 3; do poll 300 merges_idle || log "merges still running after 300s; measuring anyway"; sleep 2; done

read -r cand_rows diverged noise_only incomplete < <(ch_db "SELECT count(), countIf(differences > noise),
    countIf(differences > 0 AND differences = noise), countIf(outcome != 'complete')
  FROM exchanges FINAL WHERE role = 'candidate' FORMAT TSV")
read -r sec_rows id_len < <(ch_db "SELECT countIf(role = 'secondary'), min(length(request_id)) FROM exchanges FORMAT TSV")
read -r diff_rows diff_cand diff_noise < <(ch_db "SELECT count(), countIf(role = 'candidate'), countIf(noise = 1)
  FROM differences FORMAT TSV")
price_rows="$(ch_db "SELECT count() FROM exchanges WHERE role = 'candidate' AND request_id IN
  (SELECT request_id FROM differences WHERE deployment = '$candidate' AND path = 'price' AND kind = 'changed_value')")"
sample_rows="$(ch_db "SELECT count() FROM samples")"
if [ "$cand_rows" != "$exchanges" ] || [ "$sec_rows" != "$exchanges" ]; then
  die "loaded $cand_rows candidate and $sec_rows secondary rows, not $exchanges each"
fi
[ "$id_len" = 36 ] || die "request ids of $id_len characters: the clock is outside UUIDv7's 12 hex digits"
[ "$price_rows" -gt 102 ] || die "only $price_rows exchanges differ at price: the second page needs more than 101"
parts="$(ch_query "SELECT table, count(), sum(rows), sum(marks), formatReadableSize(sum(bytes_on_disk))
  FROM system.parts WHERE database = '$database' AND active AND table IN ('exchanges', 'differences')
  GROUP BY table ORDER BY table FORMAT TSV" 2>/dev/null \
  || ch_query "SELECT table, count(), sum(rows), sum(marks), formatReadableSize(sum(bytes))
  FROM system.parts WHERE database = '$database' AND active AND table IN ('exchanges', 'differences')
  GROUP BY table ORDER BY table FORMAT TSV")"
log "loaded in ${load_secs}s: $cand_rows candidate rows ($diverged diverged), $diff_rows difference rows"

# --- the pages ------------------------------------------------------------------------------

comparisons="/comparisons?candidate=$candidate"
filtered="/comparisons?candidate=$candidate&path=price&kind=changed_value"
# page NAME PATH: "name|path" lines, in the order they are measured and reported.
pages=(
  "overview|/"
  "candidate page, stage shadow|/candidates/$candidate?stage=shadow"
  "comparisons, candidate only|$comparisons"
  "comparisons, path + kind|$filtered"
)

# fetch PORT PATH OUT: the page's body to OUT; prints its total time in seconds. A page
# that does not answer 200 ends the run.
fetch() {
  local out code time
  out="$(curl -sS --max-time 300 -o "$3" -w '%{http_code} %{time_total}' \
    -H "Authorization: Bearer $token" "http://127.0.0.1:$1$2")" || die "GET $2 failed"
  read -r code time <<<"$out"
  [ "$code" = 200 ] || { head -c 400 "$3" >&2; echo >&2; die "GET $2 answered $code"; }
  echo "$time"
}

# The second pages: the "Older" link of each list's first page, as a person would follow it.
older() {
  local link
  fetch "$verdict_port" "$1" "$tmp/first.html" >/dev/null
  link="$(grep -o '<a id="older" href="[^"]*"' "$tmp/first.html" | sed 's/^.*href="//; s/"$//; s/&amp;/\&/g')"
  [ -n "$link" ] || die "no Older link on $1"
  echo "$link"
}
pages+=("comparisons, candidate only, page 2|$(older "$comparisons")")
pages+=("comparisons, path + kind, page 2|$(older "$filtered")")

log "timing ${#pages[@]} pages: $warmup warm-up and $runs timed fetches each, in turns"
for ((round = 0; round < warmup + runs; round++)); do
  for i in "${!pages[@]}"; do
    time="$(fetch "$verdict_port" "${pages[$i]#*|}" "$tmp/page-$i.html")"
    if [ "$round" -ge "$warmup" ]; then echo "$time" >>"$tmp/times-$i"; fi
  done
done

# What each page must show, from the data: the work timed was the work asked for.
rows_on() { grep -o '<a href="/exchanges/[^"]*"' "$tmp/page-$1.html" | sort -u | wc -l; }
if ! grep -q 'id="candidates"' "$tmp/page-0.html" || ! grep -q ">$exchanges<" "$tmp/page-0.html"; then
  die "the overview does not list $candidate with $exchanges comparisons"
fi
if ! grep -q 'id="verdict"' "$tmp/page-1.html" || ! grep -q '<code>price</code>' "$tmp/page-1.html"; then
  die "the candidate page shows no verdict, or not the systematic path price"
fi
for i in 2 3 4 5; do
  [ "$(rows_on "$i")" = 50 ] || die "${pages[$i]%%|*} lists $(rows_on "$i") comparisons, not 50"
done
overlap() { comm -12 <(grep -o '<a href="/exchanges/[^"]*"' "$tmp/page-$1.html" | sort -u) \
  <(grep -o '<a href="/exchanges/[^"]*"' "$tmp/page-$2.html" | sort -u) | wc -l; }
if [ "$(overlap 2 4)" != 0 ] || [ "$(overlap 3 5)" != 0 ]; then die "a second page repeats comparisons of its first"; fi
verdict_shown="$(grep -o 'id="verdict"[^<]*<span class="[a-z]*"' "$tmp/page-1.html" | sed 's/.*class="//; s/"$//')"
[ -n "$verdict_shown" ] || die "no verdict on the candidate page"

# stats FILE: median, p95 (nearest rank), min and max, in milliseconds.
stats() {
  sort -g "$1" | awk '{ t[NR] = $1 * 1000 } END {
    m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    r = int(0.95 * NR); if (r < 0.95 * NR) r++
    printf "%.0f %.0f %.0f %.0f\n", m, t[r], t[1], t[NR] }'
}

# --- the rows each query read: the same pages, once, through a logging proxy ---------------

user_directive=""
if [ "$(id -u)" -eq 0 ]; then user_directive="user root root;"; fi
agent="shadowdiff-bench-console-$$"
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
# Written by deploy/bench/console-render.sh: ClickHouse with log_queries=1 on every query.
$user_directive
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    client_max_body_size 64m;
    upstream clickhouse { server $ch_hostport; keepalive 8; }
    server {
        listen 127.0.0.1:$proxy_port;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Marks this run's queries in system.query_log.
            proxy_set_header User-Agent "$agent";
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_pass http://clickhouse\$uri?log_queries=1&\$args;
        }
    }
}
EOF
"$nginx_bin" -p "$tmp" -e "$tmp/nginx-startup.log" -c "$tmp/nginx.conf" -t -q || die "nginx.conf does not pass nginx -t"
"$nginx_bin" -p "$tmp" -e "$tmp/nginx-startup.log" -c "$tmp/nginx.conf" 9>&-
poll 10 test -s "$tmp/nginx.pid" || die "nginx did not start (see $tmp/nginx-error.log)"
remember_pid "$(cat "$tmp/nginx.pid")"

verdict_config "$logged_port" "$logged_admin_port" "http://127.0.0.1:$proxy_port" >"$tmp/logged.toml"
log "reading each page's queries from system.query_log (a second verdict service, through nginx)"
start_verdict logged

# The query a line of query_log is, by what only its SQL says (services/verdict/src/query.rs,
# console/, accept.rs).
label="multiIf(
  position(query, 'ANY LEFT JOIN') > 0 AND position(query, 'FROM verdicts GROUP BY') > 0, 'candidates and latest verdicts',
  position(query, 'FROM acceptances') > 0, 'acceptances in force',
  position(query, 'AS bucket') > 0 AND position(query, 'AS secondary FROM') > 0,
    'secondary latency per bucket (query::secondary_timeline)',
  position(query, 'AS bucket') > 0, 'comparisons per bucket (query::timeline)',
  position(query, 'WHERE noise = 1') > 0, 'noise paths (query::noisy_paths)',
  position(query, 'groupArrayIf') > 0, 'paths: differences per route and path (query::paths)',
  position(query, 'uniqExact(request_id)') > 0, 'diverged exchanges per route (query::diverged)',
  position(query, 'AS route, count() AS samples') > 0, 'counts (query::evidence)',
  position(query, 'quantilesExact') > 0 AND position(query, 'role = ''secondary''') > 0, 'latency quantiles, secondary',
  position(query, 'quantilesExact') > 0, 'latency quantiles, candidate',
  position(query, 'toUInt8(1) AS secondary') > 0, 'latency pairs (query::latency_pairs)',
  position(query, 'SELECT route, count() AS samples') > 0, 'counts per route (query::routes)',
  position(query, 'kind = ''status'' DESC') > 0, 'top paths (query::top_paths)',
  position(query, 'FROM verdicts') > 0, 'stage history',
  position(query, 'ORDER BY ts DESC, request_id DESC') > 0, 'the page of comparisons',
  substring(query, 1, 60))"
: >"$tmp/queries.tsv"
for i in "${!pages[@]}"; do
  t0="$(ch_query "SELECT toUInt32(now())")"
  sleep 1.1
  fetch "$logged_port" "${pages[$i]#*|}" "$tmp/logged-$i.html" >/dev/null
  t1="$(ch_query "SELECT toUInt32(now())")"
  ch_query "SYSTEM FLUSH LOGS" >/dev/null
  # Raw: the service's queries are one line each, and the filtered one is read back below.
  ch_query "SELECT $i, $label, read_rows, read_bytes, query_duration_ms, query
    FROM system.query_log
    WHERE type = 2 AND http_user_agent = '$agent' AND query_start_time > toDateTime($t0)
      AND query_start_time <= toDateTime($t1) AND position(query, 'version()') = 0
    ORDER BY query_start_time, query_duration_ms FORMAT TSVRaw" >>"$tmp/queries.tsv"
done

# ClickHouse 18.16 does not always count an IN subquery's reads in its query's read_rows
# (the filtered page's are left out): that subquery on `differences` is run alone, as the
# service wrote it, for its own numbers.
filtered_sql="$(awk -F'\t' '$1 == 3 && $2 == "the page of comparisons" { print $6; exit }' "$tmp/queries.tsv")"
# ENVIRON, not -v: awk would undo the backslashes of the path's regular expression.
subquery="$(q="$filtered_sql" awk 'BEGIN {
  q = ENVIRON["q"]; start = index(q, "request_id IN (SELECT"); if (!start) exit
  depth = 0
  for (i = start + length("request_id IN "); i <= length(q); i++) {
    c = substr(q, i, 1)
    if (c == "(") depth++
    if (c == ")" && --depth == 0) { print substr(q, start + length("request_id IN ("), i - start - length("request_id IN (")); exit }
  } }')"
[ -n "$subquery" ] || die "no IN subquery in the filtered page's query: $filtered_sql"
t0="$(ch_query "SELECT toUInt32(now())")"
sleep 1.1
curl -fsS --max-time 600 -H "User-Agent: $agent" "$ch_url/?database=$database&log_queries=1" \
  --data-binary "SELECT count() FROM ($subquery)" >/dev/null
ch_query "SYSTEM FLUSH LOGS" >/dev/null
ch_query "SELECT 3, 'its IN subquery on differences, run alone', read_rows, read_bytes, query_duration_ms, query
  FROM system.query_log WHERE type = 2 AND http_user_agent = '$agent' AND query_start_time > toDateTime($t0)
  FORMAT TSVRaw" >>"$tmp/queries.tsv"

# --- the numbers ----------------------------------------------------------------------------

ch_version="$(ch_query "SELECT version()")"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
report="$tmp/results.md"
{
  echo "# shadowdiff console render times"
  echo
  run_stamp
  echo "$(nproc) CPUs shared with ClickHouse $ch_version and whatever else the machine runs. The verdict service:"
  echo "release build, \`default_window_secs = $window_secs\`, so every loaded row is in the pages' window."
  echo
  echo "The store: $exchanges exchanges over ${span_secs} s, loaded in ${load_secs} s with INSERT ... SELECT FROM"
  echo "numbers() in inserts of $chunk, one candidate and one secondary row each ($cand_rows + $sec_rows rows"
  echo "in \`exchanges\`), on four routes. $diverged candidates diverged ($(awk -v a="$diverged" -v b="$exchanges" \
    'BEGIN { printf "%.2f%%", 100 * a / b }'): a price on 2% of item reads, a search"
  echo "result's price, a cart line, a stock's type, 500s on 0.2%), $noise_only differ by noise only (both legs"
  echo "at \`served_at\` and \`trace_id\` on $noise_percent% of requests), $incomplete are timeouts or missing legs;"
  echo "$diff_rows rows in \`differences\` ($diff_cand the candidate's, $diff_noise noise), $sample_rows in \`samples\`."
  echo "Active parts after the background merges settled (table, parts, rows, granules, size):"
  echo
  echo '```'
  echo "$parts"
  echo '```'
  echo
  echo "Each page fetched with curl (\`time_total\`), $warmup times untimed and then $runs times, all pages in"
  echo "turns; median and 95th percentile (nearest rank) of the $runs, in milliseconds."
  echo
  echo "| page | median | p95 | min | max | URL |"
  echo "|---|---:|---:|---:|---:|---|"
  for i in "${!pages[@]}"; do
    read -r med p95 lo hi < <(stats "$tmp/times-$i")
    url="${pages[$i]#*|}"
    echo "| ${pages[$i]%%|*} | **$med** | $p95 | $lo | $hi | \`${url:0:90}$([ "${#url}" -gt 90 ] && echo …)\` |"
  done
  echo
  echo "The candidate page gave **$verdict_shown** at stage shadow, naming \`price\`; each comparisons page listed 50"
  echo "rows, and no second page repeated its first."
  echo
  echo "## What each page's queries read"
  echo
  echo "From \`system.query_log\` (\`log_queries=1\`, added by an nginx in front of ClickHouse for a second"
  echo "verdict service): each page rendered once more, every query it sent, in order, with the rows and"
  echo "bytes ClickHouse read for it and its time on the server. ClickHouse 18.16 does not always count an IN"
  echo "subquery's reads in read_rows (the filtered page's are left out), so that subquery was also run alone."
  echo
  echo "| page | query | rows read | MiB read | ms |"
  echo "|---|---|---:|---:|---:|"
  while IFS=$'\t' read -r i what rows bytes ms _; do
    echo "| ${pages[$i]%%|*} | $what | $rows | $(mib "$bytes") | $ms |"
  done <"$tmp/queries.tsv"
  echo
  echo "Per page (sums):"
  echo
  echo "| page | queries | rows read | MiB read | ClickHouse ms |"
  echo "|---|---:|---:|---:|---:|"
  awk -F'\t' '$2 !~ /run alone/ { n[$1]++; r[$1] += $3; b[$1] += $4; t[$1] += $5 }
    END { for (i in n) printf "%s\t%d\t%d\t%.1f\t%d\n", i, n[i], r[i], b[i] / 1048576, t[i] }' "$tmp/queries.tsv" \
    | sort -n | while IFS=$'\t' read -r i n r b t; do echo "| ${pages[$i]%%|*} | $n | $r | $b | $t |"; done
  echo
  echo "The filtered page's query, as the service sent it:"
  echo
  echo '```sql'
  echo "$filtered_sql"
  echo '```'
} >"$report"

cp "$report" "$results"
echo
cat "$report"
log "written to ${results#"$repo/"}"
