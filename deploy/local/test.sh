#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: starts the real Kafka-protocol
# broker and ClickHouse (installing them if needed), then checks formatting and lints and
# runs every test. `.ci/run` runs exactly this.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."

deploy/local/services.sh up
# Headless Chromium renders the drill-down page in tests/tests/verdict.rs.
if ! command -v chromium >/dev/null; then
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# The validators tests/tests/deploy_manifests.rs runs over docker-compose.yaml and deploy/k8s.
deploy/k8s/validators.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
