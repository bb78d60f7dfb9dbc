"""Projects the journal log into the tables, in the background, after bulk load has passed.

Large batches are made durable as one journal_log row each (the committer calls
`Persistence.append_log`); the tables catch up here, oldest row first, one row per statement
(`Persistence.project_next`, which deletes the row in the same transaction). While bulk load
goes on (a row was appended within `QUIET_S`) this task waits, so that a burst pays
PostgreSQL for the log only; once the log holds half of `lag_max_operations` it projects
regardless of load. The committer never lets the log grow past `lag_max_operations` (it then
writes batches into the tables directly), so the log, and the time recovery spends projecting
it before a load, stay bounded. docs/PERSISTENCE.md, "The journal log", has the whole design.
"""

from __future__ import annotations

import asyncio
import logging
import time

from service import metrics
from service.background import BackgroundLoop
from service.persistence import Persistence

log = logging.getLogger(__name__)

# Bulk load is over once no row was appended for this long.
QUIET_S = 0.2
# How often an idle projector looks at the log.
POLL_S = 0.05
# After a failed projection (PostgreSQL away): the committer's probe handles health; this
# task only retries, no faster than this.
RETRY_S = 1.0


class Projector(BackgroundLoop):
    """Stopped, it leaves what is not projected yet to the next start's recovery."""

    name = "projector"

    def __init__(self, persistence: Persistence, *, lag_max_operations: int):
        super().__init__()
        self._persistence = persistence
        self._lag_soft = lag_max_operations // 2

    def _due(self) -> bool:
        lag = self._persistence.log_operations
        metrics.JOURNAL_LOG_OPERATIONS.set(lag)
        if not lag:
            return False
        quiet = time.monotonic() - self._persistence.log_appended_at >= QUIET_S
        return quiet or lag >= self._lag_soft

    async def _run(self) -> None:
        while True:
            if not self._due():
                await asyncio.sleep(POLL_S)
                continue
            started = time.monotonic()
            try:
                projected = await self._persistence.project_next()
            except Exception as exc:
                metrics.PROJECTION_FAILURES.inc()
                log.warning("projecting the journal log failed (%r); retrying", exc)
                await asyncio.sleep(RETRY_S)
                continue
            if projected is not None:
                metrics.PROJECTION_SECONDS.observe(time.monotonic() - started)
                metrics.PROJECTED_OPERATIONS.inc(projected.operations)
