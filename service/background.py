"""One background loop of the service (the projector, the expiry sweeper, the pruner): an
asyncio task started once and cancelled at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundLoop:
    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]):
        self._name = name
        self._run = run
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        assert self._task is None, f"{self._name} started twice"
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Cancels the loop and waits until it has ended; nothing if it never started."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
