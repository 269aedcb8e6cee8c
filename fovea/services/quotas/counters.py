"""Where the rate limiter keeps what folders and keys have used: the interface, the arithmetic
of token buckets, and the counters of this process alone.

An admission checks and takes in one step, atomic wherever the counters live: for each scope
(the folder, then the key when it has a quota of its own) the concurrency, the requests and
the tokens, in that order; the first one exceeded refuses, and nothing is taken.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from fovea.store.quotas import Quota

Clock = Callable[[], float]
Scope = tuple[str, str]  # (folder_id, key_id): key_id empty for the folder's own counters
Limit = Literal["concurrent", "requests", "tokens"]


@dataclass
class TokenBucket:
    """Up to ``capacity`` units; refills ``capacity`` per minute. May go into debt."""

    capacity: int
    level: float
    updated: float

    @property
    def per_s(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        # max(): replicas' clocks may disagree a little; time never runs backwards here.
        self.level = min(self.capacity, self.level + max(0.0, now - self.updated) * self.per_s)
        self.updated = max(self.updated, now)

    def wait_for(self, units: float) -> float:
        """Seconds until the bucket holds ``units``."""
        return max(0.0, (units - self.level) / self.per_s)

    def until_full(self) -> float:
        return self.wait_for(self.capacity)


def bucket(
    capacity: int | None, level: float | None, updated: float, now: float
) -> TokenBucket | None:
    """The bucket of a limit (None: not limited) as stored (``level`` None: full), refilled to
    ``now``; a lowered limit caps what it holds."""
    if capacity is None:
        return None
    if level is None:
        return TokenBucket(capacity, capacity, now)
    found = TokenBucket(capacity, min(level, capacity), updated)
    found.refill(now)
    return found


@dataclass
class ScopeState:
    """What one folder, or one key, has used."""

    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    in_flight: int = 0

    def copy(self) -> ScopeState:
        return ScopeState(
            requests=dataclasses.replace(self.requests) if self.requests else None,
            tokens=dataclasses.replace(self.tokens) if self.tokens else None,
            in_flight=self.in_flight,
        )


@dataclass(frozen=True)
class Refusal:
    """Which scope (its index in the admission's quotas) refused, and for which limit."""

    index: int
    limit: Limit


@dataclass(frozen=True)
class Slot:
    """Generation slots an interactive admission holds, one per scope, until released."""

    scopes: tuple[Scope, ...]


@dataclass(frozen=True)
class Outcome:
    """An admission's result: the scopes' states (after the take; when refused, as found, up
    to the scope that refused), the refusal, and the slot taken (interactive admissions)."""

    states: list[ScopeState]
    refusal: Refusal | None = None
    slot: Slot | None = None


def exceeded(state: ScopeState, quota: Quota, interactive: bool) -> Limit | None:
    """The first limit of ``quota`` that ``state`` leaves no room under. Batch lines take no
    request slot and no concurrency, only tokens."""
    if interactive and quota.concurrent is not None and state.in_flight >= quota.concurrent:
        return "concurrent"
    if interactive and state.requests is not None and state.requests.level < 1:
        return "requests"
    if state.tokens is not None and state.tokens.level <= 0:
        return "tokens"
    return None


def check_and_take(
    states: Sequence[ScopeState], quotas: Sequence[Quota], interactive: bool
) -> Refusal | None:
    """Refuse on the first limit exceeded, or take a request and a generation slot on every
    scope (interactive admissions; a batch line takes nothing here)."""
    for index, (state, quota) in enumerate(zip(states, quotas, strict=True)):
        limit = exceeded(state, quota, interactive)
        if limit is not None:
            return Refusal(index, limit)
    if interactive:
        for state in states:
            if state.requests is not None:
                state.requests.level -= 1
            state.in_flight += 1
    return None


def scope_of(quota: Quota) -> Scope:
    return (quota.folder_id, quota.key_id)


class QuotaCounters(Protocol):
    """The counters behind the rate limiter: this process's, Redis's or the database's.

    ``take`` is the one atomic check-and-take; ``release`` and ``spend`` return at once (a
    slot's end and a completion's tokens reach shared counters in the background: ``flush``
    waits for them). ``start`` begins the replica's heartbeat; ``aclose`` gives back what this
    replica holds."""

    async def take(self, quotas: Sequence[Quota], *, interactive: bool) -> Outcome: ...

    def release(self, slot: Slot) -> None: ...

    def spend(self, quotas: Sequence[Quota], tokens: int) -> None: ...

    async def in_flight(self, scope: Scope) -> int: ...

    def start(self) -> None: ...

    async def flush(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class LocalCounters:
    """Counters in this process: one replica (or SQLite, which replicas cannot share)."""

    clock: Clock = time.monotonic
    _states: dict[Scope, ScopeState] = field(default_factory=dict)

    async def take(self, quotas: Sequence[Quota], *, interactive: bool) -> Outcome:
        now = self.clock()
        states = [self._state(quota, now) for quota in quotas]
        refusal = check_and_take(states, quotas, interactive)
        slot = None
        if refusal is None and interactive:
            slot = Slot(tuple(scope_of(quota) for quota in quotas))
        return Outcome([state.copy() for state in states], refusal, slot)

    def release(self, slot: Slot) -> None:
        for scope in slot.scopes:
            self._states[scope].in_flight -= 1

    def spend(self, quotas: Sequence[Quota], tokens: int) -> None:
        now = self.clock()
        for quota in quotas:
            state = self._state(quota, now)
            if state.tokens is not None:
                state.tokens.level -= tokens

    async def in_flight(self, scope: Scope) -> int:
        state = self._states.get(scope)
        return state.in_flight if state is not None else 0

    def start(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def _state(self, quota: Quota, now: float) -> ScopeState:
        """The scope's state, its buckets refilled to ``now`` and sized to ``quota``."""
        state = self._states.setdefault(scope_of(quota), ScopeState())
        state.requests = _resized(state.requests, quota.requests_per_minute, now)
        state.tokens = _resized(state.tokens, quota.tokens_per_minute, now)
        return state


def _resized(found: TokenBucket | None, capacity: int | None, now: float) -> TokenBucket | None:
    if found is None:
        return bucket(capacity, None, now, now)
    return bucket(capacity, found.level, found.updated, now)
