"""One background loop of the service (the projector, the expiry sweeper, the pruner): an
asyncio task started once and cancelled at shutdown. A subclass names it and writes `_run`."""

from __future__ import annotations

import asyncio


class BackgroundLoop:
    name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        assert self._task is None, f"{self.name} started twice"
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancels the loop and waits until it has ended; nothing if it never started."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
