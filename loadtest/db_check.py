"""Reads what a load test run left in PostgreSQL, for the invariants of loadtest/locustfile.py.

Locust runs under gevent's monkey patching, which asyncpg's event loop does not mix with, so the
locustfile runs this as a subprocess and reads one JSON object from its standard output:

    {"now_ms": ..., "items": {sku: {...counters, ledger sums, held units...}},
     "overdue_active_holds": n, "bad_ledger_rows": n}

Everything is read in one REPEATABLE READ snapshot, so counters and ledger rows agree with each
other even while the expiry sweeper is still writing.

Run: python -m loadtest.db_check --database-url URL --sku-prefix P --order-prefix P
     --overdue-allowance-ms MS
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import asyncpg

from service.audit import ITEM_AUDIT_STATEMENT
from service.persistence import wait_projected

STATEMENT_TIMEOUT_S = 30.0

OVERDUE = """
SELECT count(*) FROM reservations
WHERE status = 'active' AND order_id LIKE $1 AND expires_at_ms < $2
"""

BAD_LEDGER_ROWS = """
SELECT count(*) FROM ledger
WHERE sku LIKE $1 AND (on_hand_after < 0 OR reserved_after < 0 OR reserved_after > on_hand_after
                       OR safety_after < 0)
"""


PROJECTION_WAIT_S = 60.0


def like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def read(database_url: str, sku_prefix: str, order_prefix: str,
               overdue_allowance_ms: int) -> dict:
    connection = await asyncpg.connect(database_url, timeout=STATEMENT_TIMEOUT_S,
                                       command_timeout=STATEMENT_TIMEOUT_S)
    try:
        # Large batches are durable in journal_log first; the service projects them into the
        # tables once load pauses (docs/PERSISTENCE.md, "The journal log").
        await wait_projected(connection, PROJECTION_WAIT_S)
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            now_ms = int(time.time() * 1000)
            rows = await connection.fetch(ITEM_AUDIT_STATEMENT, like_prefix(sku_prefix))
            overdue = await connection.fetchval(
                OVERDUE, like_prefix(order_prefix), now_ms - overdue_allowance_ms)
            bad_rows = await connection.fetchval(BAD_LEDGER_ROWS, like_prefix(sku_prefix))
    finally:
        await connection.close()
    items = {row["sku"] if not row["location"] else f"{row['sku']}@{row['location']}":
             {key: row[key] for key in row.keys() if key not in ("sku", "location")}
             for row in rows}
    return {"now_ms": now_ms, "items": items, "overdue_active_holds": overdue,
            "bad_ledger_rows": bad_rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sku-prefix", required=True)
    parser.add_argument("--order-prefix", required=True)
    parser.add_argument("--overdue-allowance-ms", type=int, required=True)
    arguments = parser.parse_args()
    print(json.dumps(asyncio.run(read(arguments.database_url, arguments.sku_prefix,
                                      arguments.order_prefix, arguments.overdue_allowance_ms)),
                     default=int))
