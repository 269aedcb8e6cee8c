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
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from fovea.engine.registry import EngineRegistry
from fovea.errors import AuthenticationError, FoveaError
from fovea.observability.completions import Completions
from fovea.observability.http import HttpRequests
from fovea.observability.state import ServerState, StateCollector
from fovea.services.chat_events import FinishedCompletion

__all__ = ["Metrics"]

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Budget(Protocol):
    """The admission budget as a scrape reads it (``fovea.api.admission.ByteBudget``)."""

    in_use: int
    capacity: int


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
        self._completions = Completions()
        self.registry.register(self._completions)

    # -- counted as it happens --------------------------------------------------------------

    def request_finished(self, route: str, method: str, status: int, duration_s: float) -> None:
        """One HTTP request, labelled by its route's template (``other`` when none matched)."""
        if method not in HTTP_METHODS:
            method = "other"  # label values clients choose must stay few
        self._http.add(route, method, status, duration_s)

    def completion_finished(self, completion: FinishedCompletion) -> None:
        self._completions.add(completion)

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
