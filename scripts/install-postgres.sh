#!/usr/bin/env bash
# Install the PostgreSQL server the `postgres` test tier starts (and a single-machine
# deployment can use): Debian's `postgresql` packages (initdb, pg_ctl and postgres under
# /usr/lib/postgresql/<major>/bin). Idempotent and quick when present (no apt call at all).
# Installing does not matter for a running cluster: the tests initialise their own one in a
# temporary directory, as an unprivileged user, on a free loopback port, and remove it.
set -euo pipefail

say() { printf '\033[1m[tagsmith install-postgres]\033[0m %s\n' "$*"; }

found() { compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; }

if found; then
  say "PostgreSQL present ($(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1))"
  exit 0
fi
source "$(dirname "$0")/lib.sh"
apt_install postgres postgresql
found || { echo "error: postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl" >&2; exit 1; }
say "installed: $(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
