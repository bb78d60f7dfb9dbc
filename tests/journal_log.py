"""Waiting for the service's journal log to reach the tables, for tests that read them."""

from __future__ import annotations

import asyncio
import time

# The service projects the journal log once bulk load pauses (service/projector.py QUIET_S).
PROJECTION_WAIT_S = 30.0
PROJECTION_POLL_S = 0.02


async def projected(db) -> None:
    """Returns once every journal_log row is projected into the tables. A large batch is
    durable in journal_log when its calls are answered, and in the tables shortly after
    (docs/PERSISTENCE.md, "The journal log"); tests that read the tables wait for that."""
    deadline = time.monotonic() + PROJECTION_WAIT_S
    while await db.fetchval("SELECT EXISTS (SELECT 1 FROM journal_log)"):
        assert time.monotonic() < deadline, f"journal_log not projected in {PROJECTION_WAIT_S} s"
        await asyncio.sleep(PROJECTION_POLL_S)
