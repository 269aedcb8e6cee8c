"""The rate limiter on a fake clock, with its counters in this process, in Redis and in
PostgreSQL alike: buckets refill, headers say when, batch lines take tokens but no
concurrency, a key's own quota applies next to its folder's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from fovea.engine.types import Usage
from fovea.errors import RateLimitError
from fovea.iam.types import Principal
from fovea.protocol.chat import ChatCompletionRequest
from fovea.services.chat_events import CompletionStatus, FinishedCompletion, RequestContext
from fovea.services.quotas import LocalCounters, QuotaCounters, RateLimiter
from fovea.services.quotas.database_counters import DatabaseCounters
from fovea.services.quotas.redis_counters import RedisCounters
from fovea.services.redis_client import connect
from fovea.store.database import Database
from fovea.store.quota_counters import QuotaCounterStore
from fovea.store.quotas import Quota

pytestmark = pytest.mark.anyio

ALICE = Principal("key-alice", "sa", "folder", frozenset())
BOB = Principal("key-bob", "sa", "folder", frozenset())
LEASE_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replicas:
    """Limiters ("replicas") on one kind of counters: each gets its own, sharing one store."""

    clock: Clock
    new_counters: Callable[[str], QuotaCounters]

    def limiter(self, *quotas: Quota, default_concurrent: int = 10, name: str = "a") -> RateLimiter:
        limiter = RateLimiter(None, default_concurrent, counters=self.new_counters(name))
        limiter.apply(quotas)
        return limiter


@pytest.fixture(params=["local", "redis", "postgresql"])
async def replicas(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Replicas]:
    clock = Clock()
    if request.param == "local":
        yield Replicas(clock, lambda _: LocalCounters(clock))
    elif request.param == "redis":
        redis = connect(request.getfixturevalue("redis_url"))
        yield Replicas(clock, lambda name: RedisCounters(redis, name, lease_s=LEASE_S, clock=clock))
        await redis.aclose()
    else:
        database = Database(request.getfixturevalue("migrated_postgres_url"))
        store = QuotaCounterStore(database)
        yield Replicas(
            clock, lambda name: DatabaseCounters(store, name, lease_s=LEASE_S, clock=clock)
        )
        database.dispose()


def _finished(principal: Principal, tokens: int, batch: bool = False) -> FinishedCompletion:
    return FinishedCompletion(
        context=RequestContext(batch_id="batch_1" if batch else None),
        principal=principal,
        folder_id=principal.folder_id,
        model_uri="gpt://folder/m",
        model="m",
        branch="latest",
        request=ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        ),
        status=CompletionStatus.OK,
        usage=Usage(prompt_tokens=tokens - 1, completion_tokens=1),
        images=0,
        started_at=0.0,
        ttft_s=0.1,
        duration_s=0.2,
        text="",
    )


async def test_requests_per_minute_refill_and_headers_say_when(replicas: Replicas) -> None:
    limiter = replicas.limiter(Quota("folder", requests_per_minute=2))
    first = await limiter.admit(ALICE, "folder", interactive=True)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "30s"
    await limiter.admit(BOB, "folder", interactive=True)  # the folder's limit holds for all keys
    with pytest.raises(RateLimitError) as refused:
        await limiter.admit(ALICE, "folder", interactive=True)
    assert refused.value.headers["Retry-After"] == "30"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert "2 requests per minute" in refused.value.message
    assert limiter.refusals[("folder", "requests")] == 1

    replicas.clock.now += 30  # one request's worth refilled
    again = await limiter.admit(ALICE, "folder", interactive=True)
    assert again.headers["x-ratelimit-remaining-requests"] == "0"
    replicas.clock.now += 60
    admitted = await limiter.admit(ALICE, "folder", interactive=True)
    assert admitted.headers["x-ratelimit-remaining-requests"] == "1"


async def test_tokens_are_counted_when_completions_end(replicas: Replicas) -> None:
    limiter = replicas.limiter(Quota("folder", tokens_per_minute=100))
    (await limiter.admit(ALICE, "folder", interactive=True)).release()
    limiter.completion_finished(_finished(ALICE, 150))  # one request may overshoot
    await limiter.flush()
    with pytest.raises(RateLimitError) as refused:
        await limiter.admit(ALICE, "folder", interactive=True)
    assert "100 tokens per minute" in refused.value.message
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    # Out of debt (50 tokens) and one more: 51 tokens at 100 a minute, ~31 s.
    assert refused.value.headers["Retry-After"] == "31"
    replicas.clock.now += 31
    admitted = await limiter.admit(ALICE, "folder", interactive=True)
    assert admitted.headers["x-ratelimit-limit-tokens"] == "100"


async def test_concurrent_generations_are_limited_until_one_ends(replicas: Replicas) -> None:
    limiter = replicas.limiter(default_concurrent=2)
    first = await limiter.admit(ALICE, "folder", interactive=True)
    await limiter.admit(BOB, "folder", interactive=True)
    with pytest.raises(RateLimitError) as refused:
        await limiter.admit(ALICE, "folder", interactive=True)
    assert "folder folder already has 2 generations in flight" in refused.value.message
    assert refused.value.headers["Retry-After"] == "1"
    assert limiter.refusals[("folder", "concurrent")] == 1
    first.release()
    await limiter.flush()
    assert await limiter.in_flight("folder") == 1
    await limiter.admit(ALICE, "folder", interactive=True)


async def test_batch_lines_take_tokens_but_no_concurrency(replicas: Replicas) -> None:
    limiter = replicas.limiter(Quota("folder", tokens_per_minute=100, concurrent=1))
    line = await limiter.admit(ALICE, "folder", interactive=False)
    assert await limiter.in_flight("folder") == 0
    interactive = await limiter.admit(ALICE, "folder", interactive=True)
    with pytest.raises(RateLimitError, match="concurrent generations"):
        await limiter.admit(BOB, "folder", interactive=True)
    interactive.release()
    interactive.release()  # twice is once
    await limiter.flush()
    assert await limiter.in_flight("folder") == 0
    line.release()
    limiter.completion_finished(_finished(ALICE, 120, batch=True))
    await limiter.flush()
    with pytest.raises(RateLimitError, match="tokens per minute") as refused:
        await limiter.admit(BOB, "folder", interactive=False)  # batch lines wait for tokens too
    # A batch line's tokens count once (20 over), not once per level.
    assert refused.value.headers["Retry-After"] == "13"


async def test_a_key_has_its_own_quota_inside_its_folder(replicas: Replicas) -> None:
    limiter = replicas.limiter(
        Quota("folder", requests_per_minute=100),
        Quota("folder", "key-alice", requests_per_minute=1, tokens_per_minute=10),
    )
    admitted = await limiter.admit(ALICE, "folder", interactive=True)
    # The tightest limit is the one the headers describe.
    assert admitted.headers["x-ratelimit-limit-requests"] == "1"
    assert admitted.headers["x-ratelimit-limit-tokens"] == "10"
    with pytest.raises(RateLimitError, match="API key key-alice"):
        await limiter.admit(ALICE, "folder", interactive=True)
    bob = await limiter.admit(BOB, "folder", interactive=True)  # the folder has room for others
    assert bob.headers["x-ratelimit-remaining-requests"] == "98"
    limiter.completion_finished(_finished(ALICE, 20))  # the key's tokens, and the folder's
    await limiter.flush()
    replicas.clock.now += 60
    with pytest.raises(RateLimitError, match="API key key-alice: 10 tokens per minute"):
        await limiter.admit(ALICE, "folder", interactive=True)
    await limiter.admit(BOB, "folder", interactive=True)


async def test_a_changed_quota_applies_to_the_next_request(replicas: Replicas) -> None:
    limiter = replicas.limiter(Quota("folder", requests_per_minute=1))
    await limiter.admit(ALICE, "folder", interactive=True)
    with pytest.raises(RateLimitError):
        await limiter.admit(ALICE, "folder", interactive=True)
    limiter.apply([])  # the quota was removed
    admitted = await limiter.admit(ALICE, "folder", interactive=True)
    assert "x-ratelimit-limit-requests" not in admitted.headers
    limiter.apply([Quota("folder", concurrent=1)])
    with pytest.raises(RateLimitError, match="1 generations in flight"):
        await limiter.admit(BOB, "folder", interactive=True)


async def test_a_quota_of_rates_alone_keeps_the_default_concurrency(replicas: Replicas) -> None:
    """`fovea quota set --rpm 100` on a folder does not lift the server's concurrency limit."""
    limiter = replicas.limiter(Quota("folder", requests_per_minute=100), default_concurrent=1)
    await limiter.admit(ALICE, "folder", interactive=True)
    with pytest.raises(RateLimitError, match="1 generations in flight"):
        await limiter.admit(BOB, "folder", interactive=True)
