#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1, starting (or installing) them if not.
# Idempotent: a second run with both up does nothing but check.
set -euo pipefail

PG_WAIT_SECONDS_MAX=30
REDIS_WAIT_SECONDS_MAX=10

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_ready; then return 0; fi
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        echo "ensure_services: installing PostgreSQL" >&2
        apt_install postgresql postgresql-client
    fi
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    echo "ensure_services: starting PostgreSQL $version" >&2
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq "$PG_WAIT_SECONDS_MAX"); do pg_ready && break; sleep 1; done
    pg_ready || { echo "ensure_services: PostgreSQL did not come up" >&2; exit 1; }
}

ensure_redis() {
    if command -v redis-cli >/dev/null && redis_ready; then return 0; fi
    if ! command -v redis-server >/dev/null; then
        echo "ensure_services: installing Redis" >&2
        apt_install redis-server
    fi
    echo "ensure_services: starting Redis" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq "$REDIS_WAIT_SECONDS_MAX"); do redis_ready && break; sleep 1; done
    redis_ready || { echo "ensure_services: Redis did not come up" >&2; exit 1; }
}

# PostgreSQL trust auth accepts either role; pick the first one that logs in.
ensure_pg_role_works() {
    for role in postgres root; do
        if psql -h 127.0.0.1 -U "$role" -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
            echo "$role" > "${STAMP_DIR:-.stamps}/pg_user"
            return 0
        fi
    done
    echo "ensure_services: no PostgreSQL role (postgres, root) could log in on 127.0.0.1" >&2
    exit 1
}

mkdir -p "${STAMP_DIR:-.stamps}"
ensure_postgres
ensure_redis
ensure_pg_role_works
