"""Probe (not a test): how long `stockctl archive-ledger` and `stockctl reconcile` take on a
ledger of ROWS rows over 1,000 items (each item's rows one chain of +1 adjustments), in a fresh
database dropped afterwards.

    .venv/bin/python loadtest/reference/20261207T2110Z-ledger-archive/archive_time.py 5000000
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from loadtest import processes
from service.persistence import apply_migrations

ITEMS = 1_000
AT_MS = 1_700_000_000_000
STOCKCTL = str(processes.ROOT / ".venv" / "bin" / "stockctl")


def timed(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([STOCKCTL, *argv], capture_output=True, text=True, check=False)
    return result, time.monotonic() - started


async def fill(url: str, rows: int) -> int:
    """The ledger and items of the probe; answers the rows per item."""
    per_item = rows // ITEMS
    connection = await asyncpg.connect(url)
    try:
        await apply_migrations(connection)
        await connection.execute(f"""
            INSERT INTO ledger (lsn, at_ms, sku, location, kind, delta_on_hand, delta_reserved,
                                on_hand_after, reserved_after, reservation_id, order_id,
                                request_id, reason, actor, stamp, delta_safety, safety_after)
            SELECT n, {AT_MS} + n, 'sku-' || i, '', 'adjust', 1, 0, n, 0, '', '',
                   'q' || i || '-' || n, 'goods in', 'probe', n, 0, 0
              FROM generate_series(1, {ITEMS}) i, generate_series(1, {per_item}) n""")
        await connection.execute(
            f"INSERT INTO items (sku, location, on_hand, reserved)"
            f" SELECT 'sku-' || i, '', {per_item}, 0 FROM generate_series(1, {ITEMS}) i")
        await connection.execute("VACUUM ANALYZE ledger")
        size = await connection.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('ledger'))")
        print(f"ledger: {rows} rows, {size}", flush=True)
    finally:
        await connection.close()
    return per_item


def main() -> None:
    rows = int(sys.argv[1])
    with processes.fresh_database("archive_probe") as url, tempfile.TemporaryDirectory() as tmp:
        per_item = asyncio.run(fill(url, rows))
        database = ["--database-url", url, "--database-timeout", "3600"]
        result, seconds = timed(*database, "reconcile")
        print(f"reconcile before: exit {result.returncode}, {seconds:.1f} s", flush=True)
        out = Path(tmp) / "ledger.csv.gz"
        # Every row but each item's last: the cutoff is the last row's time.
        result, seconds = timed(*database, "--json", "archive-ledger", "--before",
                                str(AT_MS + per_item), "--out", str(out), "--reason", "probe")
        print(f"archive: exit {result.returncode}, {seconds:.1f} s, {result.stdout.strip()!r}"
              f" {result.stderr.strip()!r}, file {out.stat().st_size // 1024} KiB", flush=True)
        result, seconds = timed(*database, "reconcile")
        print(f"reconcile after: exit {result.returncode}, {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
