"""Quotas across replicas: two rate limiters on one Redis, or on one PostgreSQL, enforce one
limit together; a replica that dies gives its generation slots back after its lease, one that
stops at once; a store that cannot answer is a 503 to retry."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from fovea.errors import DatabaseUnavailableError, RateLimitError, RateLimiterUnavailableError
from fovea.iam.types import Principal
from fovea.services.quotas import RateLimiter
from fovea.services.quotas.counters import Clock
from fovea.services.quotas.database_counters import DatabaseCounters
from fovea.services.quotas.redis_counters import RedisCounters
from fovea.services.quotas.shared import SharedCounters
from fovea.services.redis_client import connect
from fovea.store.database import Database
from fovea.store.quota_counters import QuotaCounterStore
from fovea.store.quotas import Quota

pytestmark = pytest.mark.anyio

ALICE = Principal("key-alice", "sa", "folder", frozenset())
LEASE_S = 10.0
DEADLINE_S = 20.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


NewCounters = Callable[[str, float, Clock], SharedCounters]


@dataclass
class Fleet:
    """Replicas of one gateway sharing one store: each its own limiter and counters."""

    new_counters: NewCounters

    def replica(
        self,
        name: str,
        *quotas: Quota,
        clock: Clock = time.time,
        lease_s: float = LEASE_S,
        default_concurrent: int = 10,
    ) -> tuple[RateLimiter, SharedCounters]:
        counters = self.new_counters(name, lease_s, clock)
        limiter = RateLimiter(None, default_concurrent, counters=counters)
        limiter.apply(quotas)
        return limiter, counters


@pytest.fixture(params=["redis", "postgresql"])
async def fleet(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Fleet]:
    if request.param == "redis":
        redis = connect(request.getfixturevalue("redis_url"))
        yield Fleet(
            lambda name, lease_s, clock: RedisCounters(redis, name, lease_s=lease_s, clock=clock)
        )
        await redis.aclose()
    else:
        database = Database(request.getfixturevalue("migrated_postgres_url"))
        store = QuotaCounterStore(database)
        yield Fleet(
            lambda name, lease_s, clock: DatabaseCounters(store, name, lease_s=lease_s, clock=clock)
        )
        database.dispose()


def _closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _outcomes(limiter: RateLimiter, count: int) -> list[bool]:
    async def one() -> bool:
        try:
            await limiter.admit(ALICE, "folder", interactive=True)
        except RateLimitError:
            return False
        return True

    return await asyncio.gather(*(one() for _ in range(count)))


async def test_two_replicas_hold_one_concurrency_limit_together(fleet: Fleet) -> None:
    a, _ = fleet.replica("replica-a")
    b, _ = fleet.replica("replica-b")
    # 11 admissions at once at the default limit of 10, spread over both replicas.
    outcomes = await asyncio.gather(_outcomes(a, 6), _outcomes(b, 5))
    admitted = [ok for replica in outcomes for ok in replica]
    assert admitted.count(False) == 1
    assert await a.in_flight("folder") == await b.in_flight("folder") == 10


async def test_two_replicas_share_the_request_and_token_buckets(fleet: Fleet) -> None:
    quota = Quota("folder", requests_per_minute=3, tokens_per_minute=1000)
    a, _ = fleet.replica("replica-a", quota)
    b, _ = fleet.replica("replica-b", quota)
    await a.admit(ALICE, "folder", interactive=True)
    await b.admit(ALICE, "folder", interactive=True)
    last = await a.admit(ALICE, "folder", interactive=True)
    assert last.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimitError, match="3 requests per minute"):
        await b.admit(ALICE, "folder", interactive=True)


async def test_a_dead_replicas_slots_come_back_after_its_lease(fleet: Fleet) -> None:
    clock = FakeClock()
    a, a_counters = fleet.replica("replica-a", clock=clock, default_concurrent=4)
    b, b_counters = fleet.replica("replica-b", clock=clock, default_concurrent=4)
    assert (await _outcomes(a, 4)).count(True) == 4
    assert await _outcomes(b, 1) == [False]

    # Alive: its heartbeat keeps its slots past the first lease.
    clock.now += 0.6 * LEASE_S
    await a_counters.heartbeat()
    await b_counters.heartbeat()
    clock.now += 0.6 * LEASE_S
    assert await _outcomes(b, 1) == [False]

    # Dead (no heartbeat since): once its lease is over, its slots are free.
    clock.now += LEASE_S
    await b_counters.heartbeat()
    assert await b.in_flight("folder") == 0
    assert (await _outcomes(b, 5)).count(True) == 4


async def test_a_killed_replicas_slots_come_back_on_the_real_clock(fleet: Fleet) -> None:
    lease_s = 0.5
    a, _ = fleet.replica("replica-a", lease_s=lease_s, default_concurrent=2)
    b, b_counters = fleet.replica("replica-b", lease_s=lease_s, default_concurrent=2)
    b_counters.start()
    try:
        assert (await _outcomes(a, 2)).count(True) == 2
        # Replica a is "killed": no heartbeat, no release, no goodbye.
        deadline = time.monotonic() + DEADLINE_S
        while not (await _outcomes(b, 1))[0]:
            assert time.monotonic() < deadline, "replica a's slots never came back"
            await asyncio.sleep(0.05)
    finally:
        await b.aclose()


async def test_a_stopped_replica_gives_its_slots_back_at_once(fleet: Fleet) -> None:
    a, _ = fleet.replica("replica-a", default_concurrent=2)
    b, _ = fleet.replica("replica-b", default_concurrent=2)
    await _outcomes(a, 2)
    assert await _outcomes(b, 1) == [False]
    await a.aclose()
    assert await b.in_flight("folder") == 0
    assert await _outcomes(b, 2) == [True, True]


async def test_a_redis_that_is_down_is_a_503_to_retry(anyio_backend: str) -> None:
    redis = connect(f"redis://127.0.0.1:{_closed_port()}/0")  # nothing listens there
    try:
        limiter = RateLimiter(None, 10, counters=RedisCounters(redis, "replica", lease_s=LEASE_S))
        with pytest.raises(RateLimiterUnavailableError) as refused:
            await limiter.admit(ALICE, "folder", interactive=True)
        assert refused.value.status_code == 503
        assert refused.value.headers["Retry-After"]
        await limiter.aclose()  # its goodbye fails too, quietly
    finally:
        await redis.aclose()


async def test_a_database_that_is_down_is_a_503_to_retry(anyio_backend: str) -> None:
    database = Database(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/fovea")
    try:
        counters = DatabaseCounters(QuotaCounterStore(database), "replica", lease_s=LEASE_S)
        limiter = RateLimiter(None, 10, counters=counters)
        with pytest.raises(DatabaseUnavailableError) as refused:
            await limiter.admit(ALICE, "folder", interactive=True)
        assert refused.value.status_code == 503
        assert refused.value.headers["Retry-After"]
    finally:
        database.dispose()
