#!/usr/bin/env bash
# Installs fastavro, a stock Avro reader, into .local/avro-tools/venv (safe to run again;
# skips what is in place). tests/tests/replay_record.rs reads the recordings that
# `shadowctl record` writes with it, to show that any Avro reader opens them.
#
#   fastavro 1.12.2   PyPI
set -euo pipefail

# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
tools="$repo/.local/avro-tools"
pip_packages=(fastavro==1.12.2)
stamp="$tools/installed"
wanted="${pip_packages[*]}"

if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  mkdir -p "$tools"
  if [ ! -x "$tools/venv/bin/pip" ]; then
    python3 -m venv "$tools/venv" 2>/dev/null || { apt_install --no-install-recommends python3-venv; python3 -m venv "$tools/venv"; }
  fi
  log "installing ${pip_packages[*]} into $tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check "${pip_packages[@]}"
  echo "$wanted" >"$stamp"
fi
log "ready: $("$tools/venv/bin/python" -c 'import fastavro; print("fastavro", fastavro.__version__)')"
