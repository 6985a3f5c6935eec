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
source "$(dirname "$0")/lib.sh"
apt_install browser chromium chromium-driver
say "installed: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
