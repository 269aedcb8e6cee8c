"""The rate limiter: quotas per folder (and per key) of requests per minute, tokens per
minute and concurrent generations, enforced on admission with OpenAI's 429s and headers.

Rates are token buckets: a bucket holds up to a minute's allowance and refills continuously,
so ``x-ratelimit-reset-*`` is the time until it is full again (what OpenAI's headers mean).
Tokens are counted when a completion ends (prompt, images and completion: the engine's
count), so one request may take a folder past its limit; the next waits until the bucket is
out of debt. Batch lines take tokens but no request slot and no concurrency.

Quotas are read from the database at start and every ``refresh_s`` after, so ``fovea quota
set`` applies to a running server within that time, with no restart. What folders and keys
have used lives in ``QuotaCounters``: this process's, or Redis's or the database's, shared by
every replica (``fovea.services.container`` picks).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from anyio import to_thread

from fovea.errors import RateLimitError
from fovea.iam.types import Principal
from fovea.services.background import BackgroundTasks, every
from fovea.services.chat_events import FinishedCompletion
from fovea.services.quotas.counters import (
    Clock,
    LocalCounters,
    Outcome,
    QuotaCounters,
    ScopeState,
    TokenBucket,
)
from fovea.store.quotas import FOLDER_WIDE, Quota, QuotaStore

log = logging.getLogger(__name__)


@dataclass
class Admission:
    """An accepted request: its rate-limit headers, and the release of its concurrency."""

    headers: dict[str, str] = field(default_factory=dict)
    _release: Callable[[], None] | None = None

    def release(self) -> None:
        """Give the generation slot back (idempotent; returns at once: shared counters hear
        of it in the background, so a cancelled request still releases)."""
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
        counters: QuotaCounters | None = None,
        refresh_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._store = store
        self._default_concurrent = default_concurrent
        self._refresh_s = refresh_s
        # ``clock`` is for this process's counters; shared ones keep their own.
        self._counters = counters if counters is not None else LocalCounters(clock)
        self._quotas: dict[tuple[str, str], Quota] = {}
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
        """Re-read the quotas every ``refresh_s`` and keep this replica's lease on shared
        counters (call on the event loop)."""
        self._counters.start()
        if self._store is not None:
            self._tasks.spawn(
                "quota refresh", every(self._refresh_s, self._refresh, "reading quotas")
            )

    async def _refresh(self) -> None:
        assert self._store is not None
        self.apply(await to_thread.run_sync(self._store.all))

    async def flush(self) -> None:
        """Wait until released slots and counted tokens have reached the counters."""
        await self._counters.flush()

    async def aclose(self) -> None:
        await self._tasks.aclose()
        await self._counters.aclose()

    def quota(self, folder_id: str, key_id: str = FOLDER_WIDE) -> Quota:
        """The limits that apply: a folder's concurrency is the server's default unless its
        quota sets one (a quota of rates alone does not lift it)."""
        found = self._quotas.get((folder_id, key_id)) or Quota(folder_id, key_id)
        if key_id == FOLDER_WIDE and found.concurrent is None:
            return dataclasses.replace(found, concurrent=self._default_concurrent)
        return found

    def _quotas_of(self, folder_id: str, key_id: str) -> list[Quota]:
        """The folder's quota, then the key's when it has one of its own."""
        quotas = [self.quota(folder_id)]
        if key_id != FOLDER_WIDE and (folder_id, key_id) in self._quotas:
            quotas.append(self.quota(folder_id, key_id))
        return quotas

    # -- admission -------------------------------------------------------------------------

    async def admit(self, principal: Principal, folder_id: str, *, interactive: bool) -> Admission:
        """Take a request slot and a generation slot, or raise a 429 saying which limit (a 503
        when shared counters cannot be reached)."""
        quotas = self._quotas_of(folder_id, principal.key_id)
        outcome = await self._counters.take(quotas, interactive=interactive)
        if outcome.refusal is not None:
            self._refuse(quotas[outcome.refusal.index], outcome)
        headers = _headers(outcome.states)
        if outcome.slot is None:
            return Admission(headers)
        return Admission(headers, partial(self._counters.release, outcome.slot))

    async def in_flight(self, folder_id: str) -> int:
        return await self._counters.in_flight((folder_id, FOLDER_WIDE))

    def completion_finished(self, completion: FinishedCompletion) -> None:
        usage = completion.usage
        if usage is None:
            return
        self.spend(
            completion.folder_id, completion.key_id, usage.prompt_tokens + usage.completion_tokens
        )

    def spend(self, folder_id: str, key_id: str, tokens: int) -> None:
        """Count the tokens a finished request took (a completion's, an embedding's input)."""
        quotas = self._quotas_of(folder_id, key_id)
        if any(quota.tokens_per_minute is not None for quota in quotas):
            self._counters.spend(quotas, tokens)

    def _refuse(self, quota: Quota, outcome: Outcome) -> None:
        assert outcome.refusal is not None
        limit = outcome.refusal.limit
        state = outcome.states[outcome.refusal.index]
        who = (
            f"folder {quota.folder_id}"
            if quota.key_id == FOLDER_WIDE
            else f"API key {quota.key_id}"
        )
        if limit == "concurrent":
            message = (
                f"Quota exceeded: {who} already has {quota.concurrent} generations in flight "
                "(its limit of concurrent generations); retry when one finishes"
            )
            wait = 1.0
        elif limit == "requests":
            assert state.requests is not None
            wait = state.requests.wait_for(1)
            message = (
                f"Rate limit reached for {who}: {state.requests.capacity} requests per minute; "
                f"retry in {_duration(wait)}"
            )
        else:
            assert state.tokens is not None
            wait = state.tokens.wait_for(1)
            message = (
                f"Rate limit reached for {who}: {state.tokens.capacity} tokens per minute "
                f"(prompt, images and completion); retry in {_duration(wait)}"
            )
        self.refusals[(quota.folder_id, limit)] += 1
        raise RateLimitError(
            message,
            code="rate_limit_exceeded",
            headers={**_headers([state]), "Retry-After": str(max(1, math.ceil(wait)))},
        )


def _headers(states: Iterable[ScopeState]) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers of the tightest limit that applies."""
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    for state in states:
        if state.requests is not None and (
            requests is None or state.requests.level < requests.level
        ):
            requests = state.requests
        if state.tokens is not None and (tokens is None or state.tokens.level < tokens.level):
            tokens = state.tokens
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


def _duration(seconds: float) -> str:
    """OpenAI's form: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"
