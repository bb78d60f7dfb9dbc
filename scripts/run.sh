#!/usr/bin/env bash
# `make run`: serves the stock service in the foreground. Without STOCK_DATABASE_URL it uses (and
# creates if missing) the local database `stock`, as the role ensure_services.sh found working.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${STOCK_DATABASE_URL:-}" ]; then
    pg_user="$(cat "${STAMP_DIR:-.stamps}/pg_user" 2>/dev/null || echo postgres)"
    exists="$(psql -h 127.0.0.1 -U "$pg_user" -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'stock'")"
    if [ "$exists" != 1 ]; then
        echo "run: creating database stock" >&2
        psql -h 127.0.0.1 -U "$pg_user" -d postgres -qc 'CREATE DATABASE stock'
    fi
    export STOCK_DATABASE_URL="postgresql://${pg_user}@127.0.0.1:5432/stock"
fi
# PostgreSQL runs on this same host: let the event loop's thread have a core first
# (docs/OPERATIONS.md, "Sharing the host"). Without CAP_SYS_NICE the service warns and runs as
# it was started.
export STOCK_LOOP_NICE="${STOCK_LOOP_NICE:--10}"
exec .venv/bin/python -m service
