"""Prometheus metrics, in a registry of the server's own (tests run several apps in a process).

Families counted as things happen: HTTP requests (from ``AccessMiddleware``; see ``http``) and
finished completions (``Metrics`` is a ``CompletionObserver``). Families read at scrape time:
see ``state``. ``exposition`` renders them all in Prometheus's text format.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import SecretStr

from fovea.engine.registry import EngineRegistry
from fovea.errors import AuthenticationError, FoveaError
from fovea.observability.http import HttpRequests
from fovea.observability.state import ServerState, StateCollector
from fovea.services.chat_events import FinishedCompletion

__all__ = ["Metrics"]

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
INTER_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.5, 1)


class Budget(Protocol):
    """The admission budget as a scrape reads it (``fovea.api.admission.ByteBudget``)."""

    in_use: int
    capacity: int


@dataclass(frozen=True)
class _ModelSeries:
    """One model's completion series, looked up once rather than on every completion."""

    prompt_tokens: Counter
    completion_tokens: Counter
    image_tokens: Counter
    cached_tokens: Counter
    images: Counter


class Metrics:
    """Every metric of one server. ``batch_lines`` is read at each scrape, in a worker thread;
    with ``token`` set, a scrape must send ``Authorization: Bearer <token>``."""

    def __init__(
        self,
        engines: EngineRegistry,
        batch_lines: Callable[[], Mapping[str, int]],
        token: SecretStr | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._batch_lines = batch_lines
        self._token = token.get_secret_value().encode() if token else None
        self._state = StateCollector(engines)
        self.registry.register(self._state)
        self._http = HttpRequests(REQUEST_BUCKETS)
        self.registry.register(self._http)
        self._define_completions()

    def _define_completions(self) -> None:
        registry = self.registry
        self._completions = Counter(
            "fovea_completions",
            "Finished completions by model, status and kind (interactive or batch)",
            ["model", "status", "kind"],
            registry=registry,
        )
        self._ttft = Histogram(
            "fovea_time_to_first_token_seconds",
            "From accepting a completion to its first generated chunk",
            ["model", "kind"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self._inter_token = Histogram(
            "fovea_inter_token_latency_seconds",
            "A completion's mean time between generated tokens after the first",
            ["model", "kind"],
            buckets=INTER_TOKEN_BUCKETS,
            registry=registry,
        )

        def tokens(name: str, what: str) -> Counter:
            return Counter(name, what, ["model"], registry=registry)

        self._usage = {
            "prompt_tokens": tokens("fovea_prompt_tokens", "Prompt tokens, images included"),
            "completion_tokens": tokens("fovea_completion_tokens", "Generated tokens"),
            "image_tokens": tokens("fovea_image_tokens", "Prompt positions taken by images"),
            "cached_tokens": tokens("fovea_cached_tokens", "Prompt tokens reused from the cache"),
            "images": tokens("fovea_images", "Images in completed requests"),
        }
        self._model_series: dict[str, _ModelSeries] = {}

    # -- counted as it happens --------------------------------------------------------------

    def request_finished(self, route: str, method: str, status: int, duration_s: float) -> None:
        """One HTTP request, labelled by its route's template (``other`` when none matched)."""
        if method not in HTTP_METHODS:
            method = "other"  # label values clients choose must stay few
        self._http.add(route, method, status, duration_s)

    def completion_finished(self, completion: FinishedCompletion) -> None:
        model = completion.model
        kind = "batch" if completion.is_batch else "interactive"
        self._completions.labels(model, completion.status.value, kind).inc()
        if completion.ttft_s is not None:
            self._ttft.labels(model, kind).observe(completion.ttft_s)
        inter_token = completion.inter_token_s
        if inter_token is not None:
            self._inter_token.labels(model, kind).observe(inter_token)
        series = self._series(model)
        series.images.inc(completion.images)
        usage = completion.usage
        if usage is not None:
            series.prompt_tokens.inc(usage.prompt_tokens)
            series.completion_tokens.inc(usage.completion_tokens)
            series.image_tokens.inc(usage.image_tokens)
            series.cached_tokens.inc(usage.cached_tokens)

    def _series(self, model: str) -> _ModelSeries:
        series = self._model_series.get(model)
        if series is None:
            series = _ModelSeries(**{name: c.labels(model) for name, c in self._usage.items()})
            self._model_series[model] = series
        return series

    # -- scraped ----------------------------------------------------------------------------

    def authorize(self, authorization: str | None) -> None:
        """Raises ``AuthenticationError`` unless the scrape carries the token (when one is set)."""
        if self._token is None:
            return
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            presented.strip().encode(), self._token
        ):
            raise AuthenticationError(
                "Scraping /metrics needs the metrics token (FOVEA_METRICS_TOKEN) as "
                "'Authorization: Bearer <token>'"
            )

    async def exposition(
        self, budget: Budget | None, quota_refusals: Mapping[tuple[str, str], int] | None
    ) -> bytes:
        """Every family in Prometheus's text format (``CONTENT_TYPE_LATEST``)."""
        try:
            lines = await asyncio.to_thread(self._batch_lines)
        except FoveaError:  # the database is down or locked: every other family still helps
            log.warning("/metrics could not read the batch lines", exc_info=True)
            lines = {}
        # Read on the loop, with no await before rendering: nothing changes underneath.
        self._state.server = ServerState(
            batch_lines=lines,
            budget_in_use=budget.in_use if budget else 0,
            budget_capacity=budget.capacity if budget else 0,
            quota_refusals=dict(quota_refusals or {}),
        )
        return generate_latest(self.registry)
