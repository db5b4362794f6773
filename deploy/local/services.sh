#!/usr/bin/env bash
# Real local infrastructure for shadowdiff, without Docker:
#   a Kafka-protocol broker (tansu 0.6, from crates.io) and ClickHouse (Debian's package).
#
#   deploy/local/services.sh up       install what is missing, start both, create topics
#   deploy/local/services.sh up clickhouse
#                                     ClickHouse alone: enough for `shadowctl replay
#                                     --correlator-config`, which needs no broker
#   deploy/local/services.sh down     stop what `up` started
#   deploy/local/services.sh status   show what is running and where
#
# Idempotent: `up` skips installs that are present and servers that already answer.
# Endpoints (override with the same variables the services and tests read):
#   SHADOWDIFF_KAFKA_BROKERS   default 127.0.0.1:9092
#   SHADOWDIFF_CLICKHOUSE_URL  default http://127.0.0.1:8123
set -euo pipefail

# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
state="${SHADOWDIFF_STATE_DIR:-$repo/.local}"
brokers="${SHADOWDIFF_KAFKA_BROKERS:-127.0.0.1:9092}"
ch_url="${SHADOWDIFF_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
partitions="${SHADOWDIFF_TOPICS_PARTITIONS:-6}"
topics=(shadowdiff.requests shadowdiff.responses shadowdiff.dead-letter shadowdiff.outbound)
tansu_version="0.6.0"

kafka_host="${brokers%%,*}"; kafka_port="${kafka_host##*:}"; kafka_host="${kafka_host%:*}"
ch_hostport="${ch_url#http://}"; ch_hostport="${ch_hostport%%/*}"; ch_port="${ch_hostport##*:}"
ch_native_port="${SHADOWDIFF_CLICKHOUSE_NATIVE_PORT:-9000}"

# $1: `clickhouse` to leave the broker out.
install_missing() {
  local apt_needed=()
  command -v clickhouse-server >/dev/null || apt_needed+=(clickhouse-server clickhouse-client)
  command -v curl >/dev/null || apt_needed+=(curl)
  # rdkafka builds its bundled librdkafka with the C toolchain, make and zlib...
  command -v cc >/dev/null || apt_needed+=(build-essential)
  command -v make >/dev/null || apt_needed+=(make)
  dpkg -s zlib1g-dev >/dev/null 2>&1 || apt_needed+=(zlib1g-dev)
  # ... and links the system's OpenSSL for Kafka's SSL and SASL_SSL listeners.
  dpkg -s libssl-dev >/dev/null 2>&1 || apt_needed+=(libssl-dev)
  command -v pkg-config >/dev/null || apt_needed+=(pkg-config)
  if [ "${#apt_needed[@]}" -gt 0 ]; then apt_install "${apt_needed[@]}"; fi
  if [ "${1:-}" != clickhouse ] && ! tansu --version 2>/dev/null | grep -q "$tansu_version"; then
    log "installing tansu $tansu_version from crates.io (takes ~15 minutes on 2 cores, once)"
    cargo install --locked tansu --version "$tansu_version" --features dynostore
  fi
}

kafka_up() { tcp_open "$kafka_host" "$kafka_port"; }
clickhouse_up() { [ "$(curl -fsS "$ch_url/ping" 2>/dev/null)" = "Ok." ]; }

wait_for() {
  local what="$1" check="$2" seconds="$3"
  poll "$seconds" "$check" || die "$what did not come up within ${seconds}s; see $state/$what.log"
}

start_kafka() {
  if kafka_up; then log "kafka already answering on $kafka_host:$kafka_port"; return; fi
  log "starting tansu on $kafka_host:$kafka_port (memory storage)"
  nohup tansu broker \
    --listener-url "tcp://$kafka_host:$kafka_port" \
    --advertised-listener-url "tcp://$kafka_host:$kafka_port" \
    --storage-engine memory://tansu/ >"$state/kafka.log" 2>&1 &
  echo $! >"$state/kafka.pid"
  wait_for kafka kafka_up 30
}

start_clickhouse() {
  if clickhouse_up; then log "clickhouse already answering on $ch_url"; return; fi
  log "starting clickhouse-server on $ch_url (data in $state/clickhouse)"
  local dir="$state/clickhouse"
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
  nohup clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
    --path="$dir/data/" --tmp_path="$dir/tmp/" --user_files_path="$dir/user_files/" \
    --format_schema_path="$dir/format_schemas/" \
    --logger.log="$dir/server.log" --logger.errorlog="$dir/error.log" \
    --listen_host=127.0.0.1 --http_port="$ch_port" --tcp_port="$ch_native_port" \
    >"$state/clickhouse.log" 2>&1 &
  echo $! >"$state/clickhouse.pid"
  wait_for clickhouse clickhouse_up 60
}

create_topics() {
  for topic in "${topics[@]}"; do
    local out
    if out=$(tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$kafka_host:$kafka_port" 2>&1); then
      log "created topic $topic ($partitions partitions)"
    elif grep -q "already exists" <<<"$out"; then
      log "topic $topic exists"
    else
      die "cannot create topic $topic: $out"
    fi
  done
}

stop() {
  local name="$1" pidfile="$state/$1.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "stopping $name (pid $(cat "$pidfile"))"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
}

# $1: `clickhouse` to report ClickHouse alone.
status() {
  local ok=0
  if [ "${1:-}" = clickhouse ]; then :
  elif kafka_up; then echo "kafka       up    SHADOWDIFF_KAFKA_BROKERS=$brokers"; else echo "kafka       down  ($brokers)"; ok=1; fi
  if clickhouse_up; then
    echo "clickhouse  up    SHADOWDIFF_CLICKHOUSE_URL=$ch_url  (version $(curl -fsS "$ch_url/?query=SELECT%20version()"))"
  else echo "clickhouse  down  ($ch_url)"; ok=1; fi
  return $ok
}

case "${1:-}" in
  up)
    mkdir -p "$state"
    case "${2:-}" in
      "")
        install_missing
        start_kafka
        start_clickhouse
        create_topics
        status
        ;;
      clickhouse)
        install_missing clickhouse
        start_clickhouse
        status clickhouse
        ;;
      *) echo "usage: $0 up [clickhouse]" >&2; exit 2 ;;
    esac
    ;;
  down) stop kafka; stop clickhouse ;;
  status) status ;;
  *) echo "usage: $0 up [clickhouse]|down|status" >&2; exit 2 ;;
esac
