"""What counters shared by several replicas (Redis, the database) have in common: a replica's
lease and its heartbeat, and the releases and token counts sent in the background.

Each replica counts its own generations in flight, under a lease it renews every third of
``lease_s``; a replica that dies stops renewing, and once its lease ends its slots stop
counting: a killed replica holds quota at most ``lease_s``. A release that cannot be sent
(the store unreachable) is retried by the next heartbeats, so a live replica leaks nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from fovea.services.background import BackgroundTasks
from fovea.services.quotas.counters import Clock, Outcome, Scope, Slot
from fovea.store.quotas import Quota

log = logging.getLogger(__name__)

# A replica whose lease ended this many leases ago is forgotten, with its slots. Until then a
# replica that was only paused (not killed) finds its slots counted again when it renews.
FORGET_AFTER_LEASES = 60


class SharedCounters(ABC):
    """The counters of every replica: ``take`` is atomic in the shared store; ``release`` and
    ``spend`` are sent in the background."""

    def __init__(self, replica_id: str, *, lease_s: float, clock: Clock = time.time) -> None:
        self.replica_id = replica_id
        self.lease_s = lease_s
        # The replicas' wall clocks (a monotonic clock means nothing on another machine).
        self.clock = clock
        self._sending: set[asyncio.Task[None]] = set()
        self._unsent: list[Callable[[], Awaitable[None]]] = []
        self._tasks = BackgroundTasks()

    # -- what a backend implements --------------------------------------------------------

    @abstractmethod
    async def _take(self, quotas: Sequence[Quota], interactive: bool, now: float) -> Outcome: ...

    @abstractmethod
    async def _release(self, scopes: Sequence[Scope]) -> None: ...

    @abstractmethod
    async def _spend(self, quotas: Sequence[Quota], tokens: int, now: float) -> None: ...

    @abstractmethod
    async def in_flight(self, scope: Scope) -> int: ...

    @abstractmethod
    async def heartbeat(self) -> None:
        """Renew this replica's lease now (and forget replicas long dead)."""

    @abstractmethod
    async def _leave(self) -> None: ...

    # -- the interface --------------------------------------------------------------------

    async def take(self, quotas: Sequence[Quota], *, interactive: bool) -> Outcome:
        # The store may take the slot even when the caller is cancelled before the answer (a
        # client gone): the take runs to its end, and a slot nobody will release is released.
        task = asyncio.ensure_future(self._take(quotas, interactive, self.clock()))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._abandoned)
            raise

    def _abandoned(self, task: asyncio.Future[Outcome]) -> None:
        if not task.cancelled() and task.exception() is None:
            slot = task.result().slot
            if slot is not None:
                self.release(slot)

    def release(self, slot: Slot) -> None:
        self._send(lambda: self._release(slot.scopes), "giving a generation slot back", True)

    def spend(self, quotas: Sequence[Quota], tokens: int) -> None:
        now = self.clock()
        self._send(lambda: self._spend(quotas, tokens, now), "counting a completion's tokens")

    def start(self) -> None:
        """Renew the lease every third of it (call on the event loop)."""
        self._tasks.spawn("quota heartbeat", self._heartbeats())

    async def flush(self) -> None:
        """Wait until the releases and token counts sent so far have arrived (or failed)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the heartbeat and give back the lease and what it holds: a stopped replica's
        slots are free at once, not after the lease."""
        await self.flush()
        await self._tasks.aclose()
        try:
            await self._leave()
        except Exception as error:
            log.warning("could not give back the quota lease of %s: %s", self.replica_id, error)

    # -- the background -------------------------------------------------------------------

    def _send(self, work: Callable[[], Awaitable[None]], what: str, retry: bool = False) -> None:
        # A task of its own: the request that released may be cancelled, the release is not.
        task = asyncio.get_running_loop().create_task(self._sent(work, what, retry))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _sent(self, work: Callable[[], Awaitable[None]], what: str, retry: bool) -> None:
        try:
            await work()
        except Exception as error:
            if retry:
                self._unsent.append(work)
            log.warning("%s failed (%s)%s", what, error, "; retrying" if retry else "")

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self._resend()
                await self.heartbeat()
            except Exception as error:
                log.warning("renewing the quota lease of %s failed: %s", self.replica_id, error)
            await asyncio.sleep(self.lease_s / 3)

    async def _resend(self) -> None:
        while self._unsent:
            await self._unsent[0]()
            self._unsent.pop(0)

    @property
    def forget_s(self) -> float:
        return self.lease_s * FORGET_AFTER_LEASES
