#!/usr/bin/env bash
# Quick start: install what is missing into ./.venv, then run the service on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "[tagsmith] starting: .venv/bin/tagsmith serve $*"
exec .venv/bin/tagsmith serve "$@"
