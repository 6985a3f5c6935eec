# Shared by the install scripts (sourced, not run): finding Python 3.11 and running a step
# quietly with its output in a log.

# find_python: set PYTHON to a Python 3.11 ($PYTHON if set), or stop with the reason.
find_python() {
  PYTHON="${PYTHON:-}"
  if [[ -z "$PYTHON" ]]; then
    local candidate
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1 && \
         "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
        PYTHON="$candidate"; break
      fi
    done
  fi
  [[ -n "$PYTHON" ]] || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
}

# quiet CMD...: run CMD with its output appended to $LOG; on failure show the log's tail and
# its path, and stop.
quiet() {
  if ! "$@" >>"$LOG" 2>&1; then
    echo "error: this step failed; the last lines of $LOG:" >&2
    tail -n "${TAGSMITH_INSTALL_LOG_TAIL:-40}" "$LOG" >&2
    echo "error: install failed (full log: $PWD/$LOG)" >&2
    exit 1
  fi
}
