"""The Redis client through which replicas share quota counters and access changes
(``FOVEA_REDIS_URL``)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

# Redis answers in well under a millisecond: one silent this long is down (the client gets a
# 503 to retry), not slow. One quick retry rides over a pooled connection a Redis restart cut.
TIMEOUT_S = 2.0
RETRIES = 1
# An idle connection is pinged before use after this long (the subscription's included).
HEALTH_CHECK_S = 30


def connect(url: str) -> Redis:
    """A client for ``url`` (it connects on first use)."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), RETRIES),
        health_check_interval=HEALTH_CHECK_S,
    )


async def redis_answers(redis: Redis) -> bool:
    """Whether Redis answers a PING now (what /readyz reports)."""
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False
