"""Admission control: a server-wide budget of request-body bytes in flight.

Large images arrive as large bodies; each one is held (and parsed, and decoded) while its
request runs. Reserving the body's size before reading it keeps memory bounded under a burst:
requests over the budget wait their turn for a while, then get 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fovea.errors import RateLimitError


class ByteBudget:
    """At most ``capacity`` bytes reserved at once; first come, first served."""

    def __init__(self, capacity: int, wait_s: float) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.in_use = 0
        self.peak = 0
        self._changed = asyncio.Condition()
        self._waiting = 0

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.capacity)  # one request alone always fits
        if self._waiting or self.in_use + size > self.capacity:
            await self._wait_for_room(size)
        self.in_use += size
        self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            self.in_use -= size
            if self._waiting:
                async with self._changed:
                    self._changed.notify_all()

    async def _wait_for_room(self, size: int) -> None:
        # Only under pressure: the common case above takes no lock and starts no task.
        self._waiting += 1
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.in_use + size <= self.capacity),
                    timeout=self.wait_s,
                )
        except TimeoutError:
            raise RateLimitError(
                f"The server is busy with {self.in_use} bytes of requests in flight (its "
                f"limit is {self.capacity}, FOVEA_MAX_INFLIGHT_REQUEST_BYTES); retry shortly",
                headers={"Retry-After": "2"},
            ) from None
        finally:
            self._waiting -= 1
