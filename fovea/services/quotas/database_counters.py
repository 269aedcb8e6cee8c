"""Quota counters in the database, shared by replicas on one PostgreSQL (when there is no
Redis): each admission is one transaction holding its scopes' counter rows; the store says how
(``fovea.store.quota_counters``). A database that cannot answer is ``transaction``'s 503."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from anyio import to_thread

from fovea.services.quotas.counters import (
    Clock,
    Outcome,
    Refusal,
    Scope,
    ScopeState,
    Slot,
    bucket,
    check_and_take,
    scope_of,
)
from fovea.services.quotas.shared import SharedCounters
from fovea.store.quota_counters import QuotaCounterStore, ScopeCounters
from fovea.store.quotas import Quota


class DatabaseCounters(SharedCounters):
    def __init__(
        self,
        store: QuotaCounterStore,
        replica_id: str,
        *,
        lease_s: float,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(replica_id, lease_s=lease_s, clock=clock)
        self._store = store
        self._renewed_at: float | None = None
        self._renewing = asyncio.Lock()

    async def _take(self, quotas: Sequence[Quota], interactive: bool, now: float) -> Outcome:
        await self._renew_if_due(now)
        refusal: Refusal | None = None
        states: list[ScopeState] = []

        def decide(counters: list[ScopeCounters]) -> bool:
            nonlocal refusal
            states[:] = [_state(c, q, now) for c, q in zip(counters, quotas, strict=True)]
            refusal = check_and_take(states, quotas, interactive)
            for state, found in zip(states, counters, strict=True):
                _store_levels(state, found, now)
            return refusal is None and interactive

        scopes = [scope_of(quota) for quota in quotas]
        await to_thread.run_sync(
            lambda: self._store.update(scopes, now, decide, replica_id=self.replica_id)
        )
        if refusal is not None:
            return Outcome(states[: refusal.index + 1], refusal)
        return Outcome(states, slot=Slot(tuple(scopes)) if interactive else None)

    async def _renew_if_due(self, now: float) -> None:
        """This replica's slots count only under its lease: renew it here too when the
        heartbeat is late (or has not run yet), once for every admission waiting."""
        if not self._renewal_due(now):
            return
        async with self._renewing:
            if self._renewal_due(now):
                await self.heartbeat()

    def _renewal_due(self, now: float) -> bool:
        return self._renewed_at is None or now - self._renewed_at > self.lease_s / 3

    async def _release(self, scopes: Sequence[Scope]) -> None:
        await to_thread.run_sync(self._store.release, scopes, self.replica_id)

    async def _spend(self, quotas: Sequence[Quota], tokens: int, now: float) -> None:
        def decide(counters: list[ScopeCounters]) -> bool:
            for found, quota in zip(counters, quotas, strict=True):
                state = _state(found, quota, now)
                if state.tokens is not None:
                    state.tokens.level -= tokens
                _store_levels(state, found, now)
            return False

        # The limiter's quotas always include the folder's: every update of a folder locks
        # its row first, so updates never wait for each other in a circle.
        scopes = [scope_of(quota) for quota in quotas]
        await to_thread.run_sync(lambda: self._store.update(scopes, now, decide))

    async def in_flight(self, scope: Scope) -> int:
        return await to_thread.run_sync(self._store.in_flight, scope, self.clock())

    async def heartbeat(self) -> None:
        now = self.clock()
        await to_thread.run_sync(
            self._store.heartbeat, self.replica_id, now + self.lease_s, now - self.forget_s
        )
        self._renewed_at = now

    async def _leave(self) -> None:
        await to_thread.run_sync(self._store.leave, self.replica_id)


def _state(found: ScopeCounters, quota: Quota, now: float) -> ScopeState:
    return ScopeState(
        requests=bucket(quota.requests_per_minute, found.requests_level, found.refilled_at, now),
        tokens=bucket(quota.tokens_per_minute, found.tokens_level, found.refilled_at, now),
        in_flight=found.in_flight,
    )


def _store_levels(state: ScopeState, found: ScopeCounters, now: float) -> None:
    """Both buckets refilled to ``now``: one time stamps them (never an earlier one: another
    replica's clock may run a little ahead)."""
    found.requests_level = state.requests.level if state.requests is not None else None
    found.tokens_level = state.tokens.level if state.tokens is not None else None
    found.refilled_at = max(found.refilled_at, now)
