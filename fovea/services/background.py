"""Background work a service starts and the server stops: tasks kept until they end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    """A set of tasks that outlive the request which started them; ``aclose`` cancels the rest
    (their state is in the database, so the next start resumes them)."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` unless a task under ``key`` is running already."""
        if key in self._tasks:
            work.close()
            return
        task = asyncio.create_task(work, name=key)
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))

    def cancel(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", key, exc_info=task.exception())


async def every(interval_s: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``work`` every ``interval_s`` until cancelled; a failure is logged, and the next
    period tries again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await work()
        except Exception:
            log.exception("%s failed; trying again in %g s", what, interval_s)
