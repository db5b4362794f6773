#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: starts the real Kafka-protocol
# broker and ClickHouse (installing them if needed), then checks formatting and lints and
# runs every test. `.ci/run` runs exactly this.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."

deploy/local/services.sh up
# The validators tests/tests/deploy_manifests.rs runs over docker-compose.yaml and deploy/k8s.
deploy/k8s/validators.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
