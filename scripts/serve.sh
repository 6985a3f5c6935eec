#!/usr/bin/env bash
# Quick start: install what is missing into ./.venv, then run the service on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/tagsmith keys ensure   # a first start creates an admin API key and prints it, once
echo "[tagsmith] starting: .venv/bin/tagsmith serve $*"
exec .venv/bin/tagsmith serve "$@"
