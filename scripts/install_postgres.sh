#!/usr/bin/env bash
# Installs the PostgreSQL server the shared-study sweep test starts (tests/test_sweep_postgres.py): Debian's
# postgresql package. The test makes its own throwaway cluster (initdb, pg_ctl) as an unprivileged user; no
# system cluster is needed. Idempotent: does nothing when initdb and pg_ctl are already there. Needs root
# (or sudo) and apt.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    echo "PostgreSQL already installed: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
    exit 0
fi

bash "$(dirname "$0")/apt_install.sh" postgresql
ls -d /usr/lib/postgresql/*/bin
