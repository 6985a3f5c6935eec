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

# apt_install NAME PACKAGE...: install Debian packages with apt-get (sudo when not root),
# running `apt-get update` only if the first try fails; output in a temporary log whose tail
# is shown on failure. Used by install-browser.sh and install-postgres.sh.
apt_install() {
  local name="$1" sudo="" log
  shift
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: run as root or install sudo (apt-get needs it)" >&2; exit 1; }
    sudo="sudo"
  fi
  log=$(mktemp -t "tagsmith-install-$name.XXXXXX.log")
  echo "installing $* with apt-get (log: $log)"
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 \
         || { $sudo apt-get update -q >>"$log" 2>&1 \
              && $sudo apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1; }; }; then
    echo "error: apt-get failed; the last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
