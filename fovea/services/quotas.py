"""Quotas and rate limits per folder (and per key): requests per minute, tokens per minute and
concurrent generations.

Rates are token buckets: a bucket holds up to a minute's allowance and refills continuously,
so ``x-ratelimit-reset-*`` is the time until it is full again (what OpenAI's headers mean).
Tokens are counted when a completion ends (prompt, images and completion: the engine's
count), so one request may take a folder past its limit; the next waits until the bucket is
out of debt. Batch lines take tokens but no request slot and no concurrency.

Quotas are read from the database at start and every ``refresh_s`` after, so ``fovea quota
set`` applies to a running server within that time, with no restart. State is this process's:
issue 11 shares it across replicas.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from anyio import to_thread

from fovea.errors import RateLimitError
from fovea.iam.types import Principal
from fovea.services.background import BackgroundTasks, every
from fovea.services.chat_events import FinishedCompletion
from fovea.store.quotas import FOLDER_WIDE, Quota, QuotaStore

log = logging.getLogger(__name__)

Clock = Callable[[], float]


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
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_s)
        self.updated = now

    def wait_for(self, units: float) -> float:
        """Seconds until the bucket holds ``units``."""
        return max(0.0, (units - self.level) / self.per_s)

    def until_full(self) -> float:
        return self.wait_for(self.capacity)


@dataclass
class _Scope:
    """What one folder, or one key, has used."""

    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    in_flight: int = 0


@dataclass
class Admission:
    """An accepted request: its rate-limit headers, and the release of its concurrency."""

    headers: dict[str, str] = field(default_factory=dict)
    _release: Callable[[], None] | None = None

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


class RateLimiter:
    """Admits requests against their folder's and key's quotas; told of finished completions
    (as a ``CompletionObserver``) to count their tokens."""

    def __init__(
        self,
        store: QuotaStore | None,
        default_concurrent: int,
        *,
        refresh_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._store = store
        self._default_concurrent = default_concurrent
        self._refresh_s = refresh_s
        self._clock = clock
        self._quotas: dict[tuple[str, str], Quota] = {}
        self._scopes: dict[tuple[str, str], _Scope] = {}
        self._tasks = BackgroundTasks()
        # (folder_id, "requests" | "tokens" | "concurrent") -> refusals, for /metrics.
        self.refusals: Counter[tuple[str, str]] = Counter()

    # -- quotas ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read the quotas now (blocking; at start)."""
        if self._store is not None:
            self.apply(self._store.all())

    def apply(self, quotas: Iterable[Quota]) -> None:
        self._quotas = {(q.folder_id, q.key_id): q for q in quotas}

    def start(self) -> None:
        """Re-read the quotas every ``refresh_s`` (call on the event loop)."""
        if self._store is not None:
            self._tasks.spawn(
                "quota refresh", every(self._refresh_s, self._refresh, "reading quotas")
            )

    async def _refresh(self) -> None:
        assert self._store is not None
        self.apply(await to_thread.run_sync(self._store.all))

    async def aclose(self) -> None:
        await self._tasks.aclose()

    def quota(self, folder_id: str, key_id: str = FOLDER_WIDE) -> Quota:
        """The limits that apply: a folder's concurrency is the server's default unless its
        quota sets one (a quota of rates alone does not lift it)."""
        found = self._quotas.get((folder_id, key_id)) or Quota(folder_id, key_id)
        if key_id == FOLDER_WIDE and found.concurrent is None:
            return dataclasses.replace(found, concurrent=self._default_concurrent)
        return found

    # -- admission -------------------------------------------------------------------------

    def admit(self, principal: Principal, folder_id: str, *, interactive: bool) -> Admission:
        """Take a request slot and a generation slot, or raise a 429 saying which limit."""
        now = self._clock()
        levels = [(folder_id, FOLDER_WIDE)]
        if (folder_id, principal.key_id) in self._quotas:  # a key with a quota of its own
            levels.append((folder_id, principal.key_id))
        scopes = [self._scope(key, now) for key in levels]
        for scope, quota in scopes:
            self._check(scope, quota, interactive, now)
        for scope, _ in scopes:
            if interactive:
                if scope.requests is not None:
                    scope.requests.level -= 1
                scope.in_flight += 1
        headers = self._headers(scopes)
        if not interactive:
            return Admission(headers)

        def release() -> None:
            for scope, _ in scopes:
                scope.in_flight -= 1

        return Admission(headers, release)

    def in_flight(self, folder_id: str) -> int:
        scope = self._scopes.get((folder_id, FOLDER_WIDE))
        return scope.in_flight if scope is not None else 0

    def completion_finished(self, completion: FinishedCompletion) -> None:
        usage = completion.usage
        if usage is None:
            return
        tokens = usage.prompt_tokens + usage.completion_tokens
        now = self._clock()
        for key in ((completion.folder_id, FOLDER_WIDE), (completion.folder_id, completion.key_id)):
            scope = self._scopes.get(key)
            if scope is not None and scope.tokens is not None:
                scope.tokens.refill(now)
                scope.tokens.level -= tokens

    def _scope(self, key: tuple[str, str], now: float) -> tuple[_Scope, Quota]:
        """What ``key`` has used, its buckets refilled to ``now``, and its quota."""
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope()
        quota = self.quota(*key)
        scope.requests = _resized(scope.requests, quota.requests_per_minute, now)
        scope.tokens = _resized(scope.tokens, quota.tokens_per_minute, now)
        return scope, quota

    def _check(self, scope: _Scope, quota: Quota, interactive: bool, now: float) -> None:
        who = (
            f"folder {quota.folder_id}"
            if quota.key_id == FOLDER_WIDE
            else f"API key {quota.key_id}"
        )
        if interactive and quota.concurrent is not None and scope.in_flight >= quota.concurrent:
            self._refuse(
                quota,
                "concurrent",
                f"Quota exceeded: {who} already has {quota.concurrent} generations in flight "
                "(its limit of concurrent generations); retry when one finishes",
                1.0,
                self._headers([(scope, quota)]),
            )
        if interactive and scope.requests is not None and scope.requests.level < 1:
            wait = scope.requests.wait_for(1)
            self._refuse(
                quota,
                "requests",
                f"Rate limit reached for {who}: {scope.requests.capacity} requests per minute; "
                f"retry in {_duration(wait)}",
                wait,
                self._headers([(scope, quota)]),
            )
        if scope.tokens is not None and scope.tokens.level <= 0:
            wait = scope.tokens.wait_for(1)
            self._refuse(
                quota,
                "tokens",
                f"Rate limit reached for {who}: {scope.tokens.capacity} tokens per minute "
                f"(prompt, images and completion); retry in {_duration(wait)}",
                wait,
                self._headers([(scope, quota)]),
            )

    def _refuse(
        self, quota: Quota, limit: str, message: str, wait_s: float, headers: dict[str, str]
    ) -> None:
        self.refusals[(quota.folder_id, limit)] += 1
        raise RateLimitError(
            message,
            code="rate_limit_exceeded",
            headers={**headers, "Retry-After": str(max(1, math.ceil(wait_s)))},
        )

    @staticmethod
    def _headers(scopes: list[tuple[_Scope, Quota]]) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers of the tightest limit that applies."""
        requests: TokenBucket | None = None
        tokens: TokenBucket | None = None
        for scope, _ in scopes:
            if scope.requests is not None and (
                requests is None or scope.requests.level < requests.level
            ):
                requests = scope.requests
            if scope.tokens is not None and (tokens is None or scope.tokens.level < tokens.level):
                tokens = scope.tokens
        headers: dict[str, str] = {}
        if requests is not None:
            _describe(headers, "requests", requests)
        if tokens is not None:
            _describe(headers, "tokens", tokens)
        return headers


def _describe(headers: dict[str, str], kind: str, bucket: TokenBucket) -> None:
    headers[f"x-ratelimit-limit-{kind}"] = str(bucket.capacity)
    headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(bucket.level)))
    headers[f"x-ratelimit-reset-{kind}"] = _duration(bucket.until_full())


def _resized(bucket: TokenBucket | None, capacity: int | None, now: float) -> TokenBucket | None:
    if capacity is None:
        return None
    if bucket is None:
        return TokenBucket(capacity, capacity, now)
    bucket.refill(now)
    if bucket.capacity != capacity:
        bucket.capacity = capacity
        bucket.level = min(bucket.level, capacity)
    return bucket


def _duration(seconds: float) -> str:
    """OpenAI's form: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"
