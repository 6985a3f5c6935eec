#!/usr/bin/env bash
# Install the ray extra (tagsmith[ray]: ray[data] with pyarrow, pinned in pyproject.toml) into
# ./.venv: `tagsmith tag-file --engine ray`, Parquet input, and their process-tier tests.
# Idempotent: a stamp of pyproject.toml and this script skips pip when nothing changed.
# Run scripts/install.sh first (it creates .venv); pip's output goes to .venv/install-ray.log.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

say() { printf '\033[1m[tagsmith install-ray]\033[0m %s\n' "$*"; }

[[ -x .venv/bin/python ]] || { echo "error: no .venv: run scripts/install.sh first" >&2; exit 1; }
# the pins come from pyproject.toml's ray extra: one place for the version
mapfile -t SPECS < <(.venv/bin/python -c '
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["ray"]))')
stamp=".venv/.tagsmith-ray-$(cat pyproject.toml scripts/install-ray.sh | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]] && .venv/bin/python -c 'import ray, ray.data, pyarrow' 2>/dev/null; then
  say "${SPECS[*]} up to date ($stamp)"
  exit 0
fi
LOG=.venv/install-ray.log
: >"$LOG"
read -r -a PIP <<<"${TAGSMITH_PIP:-.venv/bin/python -m pip --disable-pip-version-check}"
# ~100 MB of wheels (ray, pyarrow, pandas); the constraints keep what tagsmith pins
say "installing ${SPECS[*]} (log: $LOG)"
quiet "${PIP[@]}" install -q -c requirements/constraints.txt "${SPECS[@]}"
say "$(.venv/bin/python -c 'import ray, pyarrow; print("ray", ray.__version__, "pyarrow", pyarrow.__version__)')"
rm -f .venv/.tagsmith-ray-*
touch "$stamp"
say "done"
