#!/usr/bin/env bash
# Real local infrastructure for shadowdiff, without Docker:
#   a Kafka-protocol broker (tansu 0.6, from crates.io) and ClickHouse (Debian's package).
#
#   deploy/local/services.sh up       install what is missing, start both, create topics
#   deploy/local/services.sh up clickhouse
#                                     ClickHouse alone: enough for `shadowctl replay
#                                     --correlator-config`, which needs no broker
#   deploy/local/services.sh up cluster
#                                     a ClickHouse cluster beside the single server: ZooKeeper
#                                     (Debian's package) and SHADOWDIFF_CLICKHOUSE_SHARDS (2)
#                                     shards of SHADOWDIFF_CLICKHOUSE_REPLICAS (2) replicas
#                                     each, as cluster `shadowdiff`; server N (shard by shard)
#                                     answers HTTP on 8130+N (native 9130+N). Services join it
#                                     with `[clickhouse] cluster = "shadowdiff"`.
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
shards="${SHADOWDIFF_CLICKHOUSE_SHARDS:-2}"
replicas="${SHADOWDIFF_CLICKHOUSE_REPLICAS:-2}"
zookeeper_port="${SHADOWDIFF_ZOOKEEPER_PORT:-2181}"

# $1: `clickhouse` to leave the broker out, `cluster` to add ZooKeeper.
install_missing() {
  local apt_needed=()
  if [ "${1:-}" = cluster ] && [ ! -f /usr/share/java/zookeeper.jar ]; then apt_needed+=(zookeeper); fi
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
  if [ "${1:-}" = "" ] && ! tansu --version 2>/dev/null | grep -q "$tansu_version"; then
    log "installing tansu $tansu_version from crates.io (takes ~15 minutes on 2 cores, once)"
    cargo install --locked tansu --version "$tansu_version" --features dynostore
  fi
}

kafka_up() { tcp_open "$kafka_host" "$kafka_port"; }
clickhouse_up() { [ "$(curl -fsS "$ch_url/ping" 2>/dev/null)" = "Ok." ]; }

# wait_for NAME SECONDS CHECK...
wait_for() {
  local what="$1" seconds="$2"
  shift 2
  poll "$seconds" "$@" || die "$what did not come up within ${seconds}s; see $state/$what.log"
}

start_kafka() {
  if kafka_up; then log "kafka already answering on $kafka_host:$kafka_port"; return; fi
  log "starting tansu on $kafka_host:$kafka_port (memory storage)"
  nohup tansu broker \
    --listener-url "tcp://$kafka_host:$kafka_port" \
    --advertised-listener-url "tcp://$kafka_host:$kafka_port" \
    --storage-engine memory://tansu/ >"$state/kafka.log" 2>&1 &
  echo $! >"$state/kafka.pid"
  wait_for kafka 30 kafka_up
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
  wait_for clickhouse 60 clickhouse_up
}

zookeeper_up() { [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$zookeeper_port" && echo ruok >&3 && cat <&3) 2>/dev/null)" = imok ]; }

# ZooKeeper standalone, which replicated tables and ON CLUSTER DDL need on ClickHouse 18.16.
start_zookeeper() {
  if zookeeper_up; then log "zookeeper already answering on 127.0.0.1:$zookeeper_port"; return; fi
  log "starting zookeeper on 127.0.0.1:$zookeeper_port (data in $state/zookeeper)"
  mkdir -p "$state/zookeeper"
  # `ruok` is the health check above; ZooKeeper 3.5+ answers only whitelisted words.
  nohup java -Xmx512m -Dzookeeper.4lw.commands.whitelist=ruok,srvr \
    -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$zookeeper_port" "$state/zookeeper" \
    >"$state/zookeeper.log" 2>&1 &
  echo $! >"$state/zookeeper.pid"
  wait_for zookeeper 60 zookeeper_up
}

# Server N of the cluster (1-based, shard by shard): shard (N-1)/replicas+1, its replica
# (N-1)%replicas+1; HTTP on 8130+N, native on 9130+N, replication on 9230+N.
servers=$((shards * replicas))
server_http_port() { echo $((8130 + $1)); }
server_up() { [ "$(curl -fsS "http://127.0.0.1:$(server_http_port "$1")/ping" 2>/dev/null)" = "Ok." ]; }

# The cluster as every server sees it: `shadowdiff`, its shards and their replicas, and this
# server's {shard} and {replica}, which replicated tables name their ZooKeeper paths by.
cluster_config() {
  local server="$1" s r
  echo "<yandex>"
  echo "  <remote_servers><shadowdiff>"
  for s in $(seq 1 "$shards"); do
    echo "    <shard><internal_replication>true</internal_replication>"
    for r in $(seq 1 "$replicas"); do
      echo "      <replica><host>127.0.0.1</host><port>$((9130 + (s - 1) * replicas + r))</port></replica>"
    done
    echo "    </shard>"
  done
  echo "  </shadowdiff></remote_servers>"
  echo "  <zookeeper><node><host>127.0.0.1</host><port>$zookeeper_port</port></node></zookeeper>"
  printf '  <macros><shard>%02d</shard><replica>r%d</replica></macros>\n' \
    $(((server - 1) / replicas + 1)) $(((server - 1) % replicas + 1))
  echo "  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"
  echo "</yandex>"
}

# The default profile's settings for queries over Distributed tables, for everyone who queries
# the cluster (Grafana, clickhouse-client; the services set them on their own connections):
# a subquery over a Distributed table inside another runs once and is sent to every shard
# (GLOBAL IN), an insert returns once its rows are on their shards, and reads and writes go
# to the first live replica of each shard, so what was just written is read back.
cluster_profile() {
  echo "<yandex><profiles><default>"
  echo "  <distributed_product_mode>global</distributed_product_mode>"
  echo "  <insert_distributed_sync>1</insert_distributed_sync>"
  echo "  <load_balancing>in_order</load_balancing>"
  echo "</default></profiles></yandex>"
}

start_server() {
  local server="$1" dir="$state/clickhouse-cluster/server$1" port
  port="$(server_http_port "$server")"
  if server_up "$server"; then log "clickhouse server $server already answering on :$port"; return; fi
  log "starting clickhouse server $server of the cluster on http://127.0.0.1:$port (data in $dir)"
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/config.d" "$dir/users.d"
  cp /etc/clickhouse-server/config.xml /etc/clickhouse-server/users.xml "$dir/"
  cluster_config "$server" >"$dir/config.d/cluster.xml"
  cluster_profile >"$dir/users.d/cluster.xml"
  nohup clickhouse-server --config-file="$dir/config.xml" -- \
    --users_config="$dir/users.xml" \
    --path="$dir/data/" --tmp_path="$dir/tmp/" --user_files_path="$dir/user_files/" \
    --format_schema_path="$dir/format_schemas/" \
    --logger.log="$dir/server.log" --logger.errorlog="$dir/error.log" \
    --listen_host=127.0.0.1 --http_port="$port" --tcp_port=$((9130 + server)) \
    --interserver_http_port=$((9230 + server)) --interserver_http_host=127.0.0.1 \
    >"$state/clickhouse-server$server.log" 2>&1 &
  echo $! >"$state/clickhouse-server$server.pid"
  wait_for "clickhouse-server$server" 60 server_up "$server"
}

start_cluster() {
  start_zookeeper
  local i
  for i in $(seq 1 "$servers"); do start_server "$i"; done
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

# $1: `clickhouse` to report ClickHouse alone, `cluster` for the cluster.
status() {
  local ok=0 i
  if [ "${1:-}" = cluster ]; then
    if zookeeper_up; then echo "zookeeper   up    127.0.0.1:$zookeeper_port"; else echo "zookeeper   down  (127.0.0.1:$zookeeper_port)"; ok=1; fi
    for i in $(seq 1 "$servers"); do
      if server_up "$i"; then echo "server $i    up    http://127.0.0.1:$(server_http_port "$i")"
      else echo "server $i    down  (http://127.0.0.1:$(server_http_port "$i"))"; ok=1; fi
    done
    return $ok
  fi
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
      cluster)
        install_missing cluster
        start_cluster
        status cluster
        ;;
      *) echo "usage: $0 up [clickhouse|cluster]" >&2; exit 2 ;;
    esac
    ;;
  down)
    stop kafka; stop clickhouse
    for pidfile in "$state"/clickhouse-server*.pid; do [ -f "$pidfile" ] && stop "$(basename "$pidfile" .pid)"; done
    stop zookeeper
    ;;
  status) status; if [ -f "$state/zookeeper.pid" ]; then status cluster; fi ;;
  *) echo "usage: $0 up [clickhouse|cluster]|down|status" >&2; exit 2 ;;
esac
