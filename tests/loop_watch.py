"""How long an event loop stands still: for tests that hold a node's loop to a bound while it does
something heavy (derives keys, describes a full route table). Holds no tests itself."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType


class LoopWatch:
    """`async with LoopWatch(period) as watch:` runs a task that sleeps `period` again and again;
    `watch.longest` is the longest of those sleeps (the period included), which is how long the
    loop stood still at most while the block ran."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._watch())
        await asyncio.sleep(0)  # the watch is turning before the block begins
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.period)
            self.longest = max(self.longest, time.monotonic() - started)
