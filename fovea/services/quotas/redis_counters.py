"""Quota counters in Redis (``FOVEA_REDIS_URL``), shared by every replica. Each operation is
one Lua script, so an admission's check-and-take is atomic across replicas.

Keys, per scope ``<folder>/<key>`` (key empty for the folder's own counters)::

    fovea:quota:<scope>:requests   hash {level, at}: the requests bucket, expiring once full
    fovea:quota:<scope>:tokens     hash {level, at}: the tokens bucket, likewise
    fovea:quota:<scope>:in_flight  hash {replica: slots}: generations in flight, per replica
    fovea:quota:replicas           sorted set {replica: end of its lease}

A missing bucket is full. A replica's slots count while its lease runs; every admission and
every heartbeat renews it. The scripts touch several scopes and the replicas' set at once, so
they need one Redis (a primary, with Sentinel if you like), not Redis Cluster. Redis failing
is ``RateLimiterUnavailableError``: a 503 to retry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fovea.errors import RateLimiterUnavailableError
from fovea.services.quotas.counters import (
    Clock,
    Limit,
    Outcome,
    Refusal,
    Scope,
    ScopeState,
    Slot,
    TokenBucket,
    scope_of,
)
from fovea.services.quotas.shared import SharedCounters
from fovea.store.quotas import Quota

PREFIX = "fovea:quota:"
REPLICAS_KEY = PREFIX + "replicas"
RETRY_AFTER_S = 2

# Shared by the scripts: buckets refilled to ``now`` and the slots of live replicas.
_FUNCTIONS = """
local replicas = KEYS[1]
local now = tonumber(ARGV[1])

local function level(key, capacity)
  if not capacity then return nil end
  local stored = redis.call('HMGET', key, 'level', 'at')
  local value, at = tonumber(stored[1]), tonumber(stored[2])
  if not value then return capacity end
  return math.min(capacity, math.min(value, capacity) + math.max(0, now - at) * capacity / 60)
end

local function store_level(key, capacity, value)
  redis.call('HSET', key, 'level', value, 'at', now)
  -- Absent is full: the key may go once the bucket would be full again.
  local until_full = (capacity - value) * 60 / capacity
  redis.call('PEXPIRE', key, math.ceil(until_full * 1000) + 1000)
end

local function in_flight(key, forget)
  local fields = redis.call('HGETALL', key)
  local count = 0
  for i = 1, #fields, 2 do
    local lease_end = tonumber(redis.call('ZSCORE', replicas, fields[i]))
    if not lease_end or lease_end < now - forget then
      redis.call('HDEL', key, fields[i])  -- a replica gone long ago
    elseif lease_end > now then
      count = count + tonumber(fields[i + 1])
    end
  end
  return count
end
"""

# KEYS: replicas, then per scope: requests, tokens, in_flight.
# ARGV: now, replica, lease_s, forget_s, interactive (1/0), then per scope: rpm, tpm,
# concurrent ('' where not limited).
# Returns: refused scope (1-based, 0: admitted), refused limit, then per scope: requests
# level, tokens level ('' where not limited), slots in flight.
_TAKE = (
    _FUNCTIONS
    + """
local replica, lease, forget = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local interactive = ARGV[5] == '1'
local scopes = (#KEYS - 1) / 3
redis.call('ZADD', replicas, now + lease, replica)
local states, refused, limit = {}, 0, ''
for i = 1, scopes do
  local k, a = 1 + (i - 1) * 3, 5 + (i - 1) * 3
  local rpm, tpm, concurrent = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local state = {
    requests = level(KEYS[k + 1], rpm), tokens = level(KEYS[k + 2], tpm),
    in_flight = in_flight(KEYS[k + 3], forget), rpm = rpm,
  }
  states[i] = state
  if interactive and concurrent and state.in_flight >= concurrent then
    refused, limit = i, 'concurrent'
  elseif interactive and state.requests and state.requests < 1 then
    refused, limit = i, 'requests'
  elseif state.tokens and state.tokens <= 0 then
    refused, limit = i, 'tokens'
  end
  if refused > 0 then break end
end
if refused == 0 and interactive then
  for i = 1, scopes do
    local k, state = 1 + (i - 1) * 3, states[i]
    if state.requests then
      state.requests = state.requests - 1
      store_level(KEYS[k + 1], state.rpm, state.requests)
    end
    redis.call('HINCRBY', KEYS[k + 3], replica, 1)
    state.in_flight = state.in_flight + 1
  end
end
local reply = {refused, limit}
for i = 1, #states do
  local state = states[i]
  table.insert(reply, state.requests and tostring(state.requests) or '')
  table.insert(reply, state.tokens and tostring(state.tokens) or '')
  table.insert(reply, state.in_flight)
end
return reply
"""
)

# KEYS: replicas, then tokens buckets. ARGV: now, tokens, then each bucket's capacity.
_SPEND = (
    _FUNCTIONS
    + """
local tokens = tonumber(ARGV[2])
for i = 2, #KEYS do
  local capacity = tonumber(ARGV[i + 1])
  store_level(KEYS[i], capacity, level(KEYS[i], capacity) - tokens)
end
"""
)

# KEYS: in_flight hashes. ARGV: replica.
_RELEASE = """
for _, key in ipairs(KEYS) do
  local slots = tonumber(redis.call('HGET', key, ARGV[1]) or '0')
  if slots <= 1 then
    redis.call('HDEL', key, ARGV[1])
  else
    redis.call('HINCRBY', key, ARGV[1], -1)
  end
end
"""

# KEYS: replicas, in_flight. ARGV: now, forget_s.
_IN_FLIGHT = (
    _FUNCTIONS
    + """
return in_flight(KEYS[2], tonumber(ARGV[2]))
"""
)

# KEYS: replicas. ARGV: now, replica, lease_s, forget_s.
_HEARTBEAT = """
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
"""


class RedisCounters(SharedCounters):
    def __init__(
        self, redis: Redis, replica_id: str, *, lease_s: float, clock: Clock = time.time
    ) -> None:
        super().__init__(replica_id, lease_s=lease_s, clock=clock)
        self._redis = redis
        self._scripts = {
            name: redis.register_script(source)
            for name, source in (
                ("take", _TAKE),
                ("spend", _SPEND),
                ("release", _RELEASE),
                ("in_flight", _IN_FLIGHT),
                ("heartbeat", _HEARTBEAT),
            )
        }

    async def _take(self, quotas: Sequence[Quota], interactive: bool, now: float) -> Outcome:
        keys = [REPLICAS_KEY]
        args: list[Any] = [now, self.replica_id, self.lease_s, self.forget_s, int(interactive)]
        for quota in quotas:
            keys += [_key(quota, "requests"), _key(quota, "tokens"), _key(quota, "in_flight")]
            args += [
                _limit(quota.requests_per_minute),
                _limit(quota.tokens_per_minute),
                _limit(quota.concurrent),
            ]
        reply = await self._run("take", keys, args)
        states = [
            ScopeState(
                requests=_bucket(quota.requests_per_minute, reply[i], now),
                tokens=_bucket(quota.tokens_per_minute, reply[i + 1], now),
                in_flight=int(reply[i + 2]),
            )
            for quota, i in zip(quotas, range(2, len(reply), 3), strict=False)
        ]
        refused = int(reply[0])
        if refused:
            limit: Limit = reply[1]
            return Outcome(states, Refusal(refused - 1, limit))
        slot = Slot(tuple(scope_of(quota) for quota in quotas)) if interactive else None
        return Outcome(states, slot=slot)

    async def _release(self, scopes: Sequence[Scope]) -> None:
        keys = [_scope_key(scope, "in_flight") for scope in scopes]
        await self._run("release", keys, [self.replica_id])

    async def _spend(self, quotas: Sequence[Quota], tokens: int, now: float) -> None:
        limited = [q for q in quotas if q.tokens_per_minute is not None]
        if limited:
            keys = [REPLICAS_KEY, *(_key(q, "tokens") for q in limited)]
            await self._run("spend", keys, [now, tokens, *(q.tokens_per_minute for q in limited)])

    async def in_flight(self, scope: Scope) -> int:
        keys = [REPLICAS_KEY, _scope_key(scope, "in_flight")]
        return int(await self._run("in_flight", keys, [self.clock(), self.forget_s]))

    async def heartbeat(self) -> None:
        now = self.clock()
        args = [now, self.replica_id, self.lease_s, self.forget_s]
        await self._run("heartbeat", [REPLICAS_KEY], args)

    async def _leave(self) -> None:
        # Its slots stop counting at once; the next admission in each scope deletes them.
        await self._translated(self._redis.zrem(REPLICAS_KEY, self.replica_id))

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await self._translated(self._scripts[script](keys=keys, args=args))

    @staticmethod
    async def _translated(command: Any) -> Any:
        try:
            return await command
        except RedisError as error:
            raise RateLimiterUnavailableError(
                f"Rate limits cannot be checked: Redis failed ({type(error).__name__}); "
                "retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from error


def _key(quota: Quota, kind: str) -> str:
    return _scope_key(scope_of(quota), kind)


def _scope_key(scope: Scope, kind: str) -> str:
    folder_id, key_id = scope
    return f"{PREFIX}{folder_id}/{key_id}:{kind}"


def _limit(value: int | None) -> str | int:
    return "" if value is None else value


def _bucket(capacity: int | None, level: str, now: float) -> TokenBucket | None:
    if capacity is None or level == "":
        return None
    return TokenBucket(capacity, float(level), now)
