#!/usr/bin/env bash
# Run the whole suite inside a private network namespace where only loopback exists, so that no
# test traffic (ICE candidates, Chromium's background requests) can leave the machine.
set -euo pipefail
PY="${1:-.venv/bin/python}"
shift || true
export TC_TEST_PG_DSN="${TC_TEST_PG_DSN:-postgresql+asyncpg://root@/postgres?host=/var/run/postgresql}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
exec $SUDO unshare -n -- bash -c 'ip link set lo up && exec "$0" -m pytest "$@"' "$PY" "$@"
