#!/usr/bin/env bash
# Make sure what the test suite needs is on this Debian machine and running:
# Chromium (browser tests), redis-server, PostgreSQL, unshare/ip (private network namespace),
# coturn's turnserver (the TURN tests start their own turnserver processes inside their namespaces;
# the package's system service is not used), CJK fonts (the pages' Chinese labels in screenshots).
# Installs what is missing, starts what is stopped.
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)  # Chromium in a network namespace
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
# netlab (impairment tests): tc filters and sysctl inside a namespace.
command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
    echo "test-services: installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# PostgreSQL: start the cluster if it is stopped; the tests reach it over its Unix socket (they run
# in a private network namespace) as the role `root`.
if ! pg_isready -q -h /var/run/postgresql; then
    echo "test-services: starting PostgreSQL"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    for _ in $(seq 1 50); do pg_isready -q -h /var/run/postgresql && break; sleep 0.2; done
fi
pg_isready -h /var/run/postgresql
$SUDO runuser -u postgres -- psql -h /var/run/postgresql -qtAc \
    "DO \$\$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END\$\$;"

# Redis: the machine's server must answer; the live-state tests also start private redis-server
# processes inside their namespace, from the same binary.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "test-services: starting redis-server"
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping
