#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: starts the real Kafka-protocol
# broker and ClickHouse (installing them if needed), then checks formatting and lints and
# runs every test. `.ci/run` runs exactly this.
#
# The tests that need no servers run without it, in seconds once built:
#   cargo test --workspace --lib --bins     the unit tests of every crate
#   cargo test --workspace --lib --bins --test '*_properties' --test sigterm
#                                           those, the property tests and the demo's SIGTERM test
set -euo pipefail

# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$repo"

# A one-off build gains nothing from incremental state, which would double the target dir.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

deploy/local/services.sh up
# The scenarios that run sharded: ZooKeeper and two ClickHouse shards beside the single server.
deploy/local/services.sh up cluster
# Headless Chromium renders the drill-down page in tests/tests/verdict.rs; chromedriver
# drives it through the console's pages in tests/tests/console.rs.
command -v chromium >/dev/null || apt_install --no-install-recommends chromium
command -v chromedriver >/dev/null || apt_install --no-install-recommends chromium-driver
# Real Prometheus and Alertmanager deliver a failing candidate's alert in tests/tests/alerts.rs;
# promtool and amtool check the rules and configs in tests/tests/deploy_manifests/. Their
# postinst would start the packaged services where an init system runs them; the tests start
# their own, on free ports.
command -v prometheus >/dev/null || apt_install --no-install-recommends prometheus
command -v prometheus-alertmanager >/dev/null || apt_install --no-install-recommends prometheus-alertmanager
# The validators tests/tests/deploy_manifests/ runs over docker-compose.yaml and deploy/k8s.
deploy/k8s/validators.sh
# fastavro, the stock Avro reader tests/tests/replay_record.rs opens recordings with.
deploy/local/fastavro.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast
