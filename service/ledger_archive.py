"""Ledger archive: moves the ledger's oldest rows to a file and leaves, per item, one row of kind
'opening' in their place (migration 0008; docs/PERSISTENCE.md, "Ledger archive").

The service appends a ledger row for every change and never deletes one, so the table and
`stockctl reconcile`'s scans grow for as long as the service runs. An operator archives with
`stockctl archive-ledger --before TIME --out FILE`, in one repeatable-read transaction:

1. refused while the journal log holds operations: their ledger rows are not in the table yet;
2. per item, the rows archived are a prefix of its chain in change order (stamp, id): every
   row up to the last one dated before the cutoff;
3. those rows go to FILE (CSV with a header, gzip when the name ends in .gz), flushed to disk;
4. they are deleted, and each item gets one 'opening' row: deltas = their sums, levels after =
   the last one's, and the last one's id, stamp, LSN and time, so it sorts where they were;
   reason and actor are the operator's;
5. it commits only if the rows deleted are the rows written and every opening row chains from
   zero (its deltas equal its levels after). A prefix that does not (a break `stockctl
   reconcile` reports) is refused, not hidden in a sum.

Afterwards every item's counters still equal the sums of its ledger and its chain continues, so
reconcile finds what it found before. The file holds the rows as they were, for audits.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.audit import JOURNAL_LOG_OPERATIONS

# The cutoff must be at least this old: recent rows stay in the table for incident review, and
# no write still under way (statements time out within seconds) can add a row dated before it.
ARCHIVE_AGE_MIN_MS = 24 * 60 * 60 * 1000
# One run deletes at most this many rows in its transaction; more is archived in steps, oldest
# cutoff first.
ARCHIVE_ROWS_MAX = 5_000_000

# Per item, the last row (in change order) dated before the cutoff: found once per run (one
# scan of the ledger, which has no index on at_ms) into a table of the transaction's own, which
# the count, the export and the delete then join. Its columns are the ledger's, collation
# included, so that its joins with the ledger compare as the ledger's index does.
BOUNDS_TABLE_STATEMENT = ("CREATE TEMPORARY TABLE archive_bounds ON COMMIT DROP AS"
                          " SELECT location, sku, stamp, id FROM ledger WITH NO DATA")
BOUNDS_STATEMENT = """
INSERT INTO archive_bounds
SELECT DISTINCT ON (location, sku) location, sku, stamp, id
  FROM ledger WHERE at_ms < $1
 ORDER BY location, sku, stamp DESC, id DESC"""
_ARCHIVED = ("ledger l JOIN archive_bounds b ON l.location = b.location AND l.sku = b.sku"
             " AND (l.stamp, l.id) <= (b.stamp, b.id)")
# One bound per item: the items to archive are the bounds.
COUNT_STATEMENT = (f"SELECT count(*) AS rows, (SELECT count(*) FROM archive_bounds) AS items"
                   f" FROM {_ARCHIVED}")
EXPORT_STATEMENT = f"SELECT l.* FROM {_ARCHIVED} ORDER BY l.location, l.sku, l.stamp, l.id"
# The ledger's trigger lets a DELETE through for rows older than this, in this transaction only.
ALLOW_DELETE_STATEMENT = ("SELECT set_config('stock.ledger_archive_before_ms', $1::bigint::text,"
                          " true)")
# Deletes the archived rows and inserts the opening rows ($1 reason, $2 actor); answers, per
# item, how many rows went and whether its opening row chains from zero.
ARCHIVE_STATEMENT = """
WITH archived AS (
    DELETE FROM ledger l USING archive_bounds b
     WHERE l.location = b.location AND l.sku = b.sku AND (l.stamp, l.id) <= (b.stamp, b.id)
    RETURNING l.*),
openings AS (
    SELECT location, sku, count(*) AS archived_rows,
           sum(delta_on_hand)::bigint AS delta_on_hand,
           sum(delta_reserved)::bigint AS delta_reserved,
           sum(delta_safety)::bigint AS delta_safety,
           (array_agg(id ORDER BY stamp DESC, id DESC))[1] AS id,
           (array_agg(stamp ORDER BY stamp DESC, id DESC))[1] AS stamp,
           (array_agg(lsn ORDER BY stamp DESC, id DESC))[1] AS lsn,
           (array_agg(at_ms ORDER BY stamp DESC, id DESC))[1] AS at_ms,
           (array_agg(on_hand_after ORDER BY stamp DESC, id DESC))[1] AS on_hand_after,
           (array_agg(reserved_after ORDER BY stamp DESC, id DESC))[1] AS reserved_after,
           (array_agg(safety_after ORDER BY stamp DESC, id DESC))[1] AS safety_after
      FROM archived GROUP BY location, sku),
inserted AS (
    INSERT INTO ledger (id, lsn, at_ms, sku, location, kind, delta_on_hand, delta_reserved,
                        on_hand_after, reserved_after, reservation_id, order_id, request_id,
                        reason, actor, stamp, delta_safety, safety_after)
    SELECT id, lsn, at_ms, sku, location, 'opening', delta_on_hand, delta_reserved,
           on_hand_after, reserved_after, '', '', '', $1, $2, stamp, delta_safety, safety_after
      FROM openings)
SELECT sku, location, archived_rows,
       delta_on_hand = on_hand_after AND delta_reserved = reserved_after
       AND delta_safety = safety_after AS chains
  FROM openings
"""


class ArchiveRefused(Exception):
    """Nothing was archived; the message says why and what to do."""


class ArchiveOutcomeUnknown(Exception):
    """COMMIT was sent but its answer was lost: the rows may be archived or not. The file is
    kept; `stockctl ledger` shows whether the items start with an 'opening' row."""


@dataclass(frozen=True)
class Archived:
    before_ms: int
    rows: int
    items: int
    path: Path | None  # None when nothing was written (nothing old enough, or a dry run)


async def archive(connection: Any, before_ms: int, path: Path, *, reason: str, actor: str,
                  now_ms: int | None = None, dry_run: bool = False) -> Archived:
    """Archives every ledger row dated before `before_ms` (module docstring) on an open
    asyncpg connection; with `dry_run`, only counts what would go (no file, no change).
    Raises ArchiveRefused (nothing changed, no file left) or ArchiveOutcomeUnknown."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if before_ms > now_ms - ARCHIVE_AGE_MIN_MS:
        raise ArchiveRefused(f"the cutoff must be at least {ARCHIVE_AGE_MIN_MS // 3_600_000} h"
                             " old: recent rows stay in the table")
    transaction = connection.transaction(isolation="repeatable_read")
    await transaction.start()
    created = False
    try:
        logged = await connection.fetchval(JOURNAL_LOG_OPERATIONS)
        if logged:
            raise ArchiveRefused(
                f"{logged} operations are durable in the journal log but not yet in the"
                " tables (their ledger rows among them); run again once they are projected")
        await connection.execute(BOUNDS_TABLE_STATEMENT)
        await connection.execute(BOUNDS_STATEMENT, before_ms)
        counted = await connection.fetchrow(COUNT_STATEMENT)
        if counted["rows"] > ARCHIVE_ROWS_MAX:
            raise ArchiveRefused(
                f"{counted['rows']} ledger rows are older than the cutoff, more than one run"
                f" archives ({ARCHIVE_ROWS_MAX}); archive in steps with an earlier --before")
        if counted["rows"] == 0 or dry_run:
            await transaction.rollback()
            return Archived(before_ms, counted["rows"], counted["items"], None)
        with open(path, "xb") as raw:  # never overwrites: FileExistsError
            created = True
            await write_rows(connection, raw, packed=path.name.endswith(".gz"))
        await connection.fetchval(ALLOW_DELETE_STATEMENT, before_ms)
        items = await connection.fetch(ARCHIVE_STATEMENT, reason, actor)
        rows = sum(item["archived_rows"] for item in items)
        if rows != counted["rows"] or len(items) != counted["items"]:
            raise ArchiveRefused(f"{rows} rows of {len(items)} items would have gone, but"
                                 f" {counted['rows']} of {counted['items']} were written")
        broken = [f"{item['sku']}@{item['location']}" for item in items if not item["chains"]]
        if broken:
            raise ArchiveRefused(
                f"the rows to archive of {len(broken)} item(s) do not chain from zero (first:"
                f" {', '.join(broken[:5])}); run `stockctl reconcile` and settle that first")
    except BaseException:
        with contextlib.suppress(Exception):
            await transaction.rollback()
        if created:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    try:
        await transaction.commit()
    except BaseException as error:
        raise ArchiveOutcomeUnknown(
            f"COMMIT's answer was lost ({type(error).__name__}: {error}); {path} is kept: check"
            " with `stockctl ledger` whether the items start with an 'opening' row") from error
    return Archived(before_ms, rows, len(items), path)


async def write_rows(connection: Any, raw: Any, *, packed: bool) -> None:
    """The rows to archive, in change order per item, as CSV with a header into the open file
    `raw` (gzip-compressed if `packed`), on disk (fsync) before anything is deleted."""
    packer = gzip.GzipFile(fileobj=raw, mode="wb") if packed else None
    output = packer or raw

    async def sink(chunk: bytes) -> None:
        output.write(chunk)

    await connection.copy_from_query(EXPORT_STATEMENT, output=sink, format="csv", header=True)
    if packer is not None:
        packer.close()  # writes the gzip trailer; `raw` stays open
    raw.flush()
    os.fsync(raw.fileno())
