#!/usr/bin/env bash
# Installs the validators that tests/tests/deploy_manifests/ runs over docker-compose.yaml
# and deploy/k8s, into .local/deploy-tools (safe to run again; skips what is in place):
#
#   check-jsonschema 0.39.0   PyPI  ships the Compose Specification JSON schema (vendor.compose-spec)
#   kubernetes-validate 1.37.0 PyPI ships the Kubernetes API JSON schemas (1.25 to 1.37)
#   PyYAML 6.0.3               PyPI  YAML to JSON for the test
#   @kubernetes-models/argo-rollouts 2.0.0  npm  validators generated from the Argo Rollouts CRDs
#   @kubernetes-models/keda 2.0.0  npm  validators generated from KEDA's API types (ScaledObject,
#                              TriggerAuthentication)
#   docker-compose 1.29        Debian  `docker-compose config -q`, offline
#   prometheus 2.42, prometheus-alertmanager 0.25   Debian  promtool and amtool, for the
#                              alert rules and the Prometheus and Alertmanager configs
#
# No registry reachable here ships a schema or models of the Altinity clickhouse-operator's
# CRDs (ClickHouseInstallation, ClickHouseKeeperInstallation): the test checks those objects
# against the CRDs' fields itself, and their pod templates with kubernetes-validate.
#
# kubectl (its built-in Kustomize renders deploy/k8s) comes with the machine image; no
# registry reachable here ships it, so a missing kubectl is reported, not installed.
set -euo pipefail

# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
tools="$repo/.local/deploy-tools"
pip_packages=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 PyYAML==6.0.3)
npm_packages=(@kubernetes-models/argo-rollouts@2.0.0 @kubernetes-models/keda@2.0.0)
stamp="$tools/installed"
wanted="${pip_packages[*]} ${npm_packages[*]}"

command -v docker-compose >/dev/null || apt_install --no-install-recommends docker-compose
command -v npm >/dev/null || apt_install --no-install-recommends nodejs npm
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
command -v amtool >/dev/null || apt_install --no-install-recommends prometheus-alertmanager
command -v kubectl >/dev/null || die "kubectl is missing (it renders the Kustomize trees); it is part of the machine image"

if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  mkdir -p "$tools"
  if [ ! -x "$tools/venv/bin/pip" ]; then
    python3 -m venv "$tools/venv" 2>/dev/null || { apt_install --no-install-recommends python3-venv; python3 -m venv "$tools/venv"; }
  fi
  log "installing ${pip_packages[*]} into $tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check "${pip_packages[@]}"
  log "installing ${npm_packages[*]} into $tools/npm"
  npm install --prefix "$tools/npm" --no-audit --no-fund --loglevel=error "${npm_packages[@]}" >/dev/null
  echo "$wanted" >"$stamp"
fi
log "ready: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
