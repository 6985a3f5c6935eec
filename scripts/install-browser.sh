#!/usr/bin/env bash
# Install the browser the `browser` test tier drives: Debian's chromium and chromium-driver
# (headless Chromium and its WebDriver, at /usr/bin/chromium and /usr/bin/chromedriver).
# Idempotent and quick when both are installed (no apt call at all). Selenium never downloads
# a browser or driver: the tests name these two paths.
set -euo pipefail

say() { printf '\033[1m[tagsmith install-browser]\033[0m %s\n' "$*"; }

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  say "chromium and chromedriver present ($(/usr/bin/chromium --version 2>/dev/null | head -n1))"
  exit 0
fi
SUDO=""
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: run as root or install sudo (apt-get needs it)" >&2; exit 1; }
  SUDO="sudo"
fi
LOG=$(mktemp -t tagsmith-install-browser.XXXXXX.log)
say "installing chromium and chromium-driver with apt-get (log: $LOG)"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >>"$LOG" 2>&1 \
       || { $SUDO apt-get update -q >>"$LOG" 2>&1 \
            && $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >>"$LOG" 2>&1; }; }; then
  echo "error: apt-get failed; the last lines of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi
say "installed: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
