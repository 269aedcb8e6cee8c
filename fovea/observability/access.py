"""``AccessMiddleware``: every HTTP request timed to the end of its response, counted in the
metrics by its route's template, and written as one JSON line to the ``fovea.access`` log.

What the routes learn they leave in the request's scope state for the line: ``principal``
(``fovea.api.deps.principal_of``) and ``model`` (the chat route, from its body); ``request_id``
comes from ``RequestIdMiddleware``. The line never carries a request's or a response's body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fovea.observability.metrics import Metrics

__all__ = ["AccessLog", "AccessMiddleware", "access_line", "configure_access_log"]

log = logging.getLogger("fovea.access")

CLIENT_REQUEST_ID_LIMIT = 512  # OpenAI's limit for x-client-request-id


class AccessMiddleware:
    """Outermost: it sees every response, the body-size refusals included. On the request's
    path it only counts (``Metrics.request_finished``) and notes; lines are written by
    ``AccessLog`` in batches, and all of them when the app stops."""

    def __init__(self, app: ASGIApp, flush_interval_s: float = 0.02) -> None:
        self.app = app
        self.access_log = AccessLog(flush_interval_s)
        self._metrics: Metrics | None = None  # the services' own, once the app has started
        self._paths: dict[object, str] | None = None  # endpoint -> path of plain routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._watching_lifespan(scope, send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before responding

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            duration_s = time.perf_counter() - started
            if self._metrics is not None:
                route = self._route_template(scope)
                self._metrics.request_finished(route, scope["method"], status, duration_s)
            self.access_log.add(scope, status, duration_s)

    def _watching_lifespan(self, scope: Scope, send: Send) -> Send:
        """Takes the metrics once the services are built (the app's lifespan builds them, after
        this middleware), and writes the last access lines when the app stops."""

        async def watching_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                services = getattr(scope["app"].state, "services", None)
                self._metrics = None if services is None else services.metrics
            elif message["type"].startswith("lifespan.shutdown."):
                self.access_log.flush()
            await send(message)

        return watching_send

    def _route_template(self, scope: Scope) -> str:
        """The matched route's path, ``/v1/files/{file_id}`` rather than the file's; ``other``
        when no route matched (the label's values must stay few)."""
        route = scope.get("route")  # FastAPI's routes leave themselves in the scope
        if route is not None:
            return getattr(route, "path", None) or "other"
        # Plain Starlette routes (the chat route, /docs) leave only their endpoint.
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return "other"
        if self._paths is None:
            routes = scope["app"].routes
            self._paths = {r.endpoint: r.path for r in routes if isinstance(r, Route)}
        return self._paths.get(endpoint, "other")


class AccessLog:
    """Access lines, written every ``interval_s`` for the requests finished meanwhile.

    Written one by one as each response ended, a line cost ~45 µs of CPU, mostly the logging
    module with cold caches: a fifth of a cheap authenticated request (``GET /v1/models`` in
    process, ~250 µs). In a batch the same line costs ~13 µs; on the request's path only a
    note is left (~1 µs). Called on the event loop only.
    """

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._pending: list[tuple[Scope, int, float, float]] = []
        self._flush_at: asyncio.TimerHandle | None = None

    def add(self, scope: Scope, status: int, duration_s: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        self._pending.append((scope, status, duration_s, time.time()))
        if self._flush_at is None:
            loop = asyncio.get_running_loop()
            self._flush_at = loop.call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        pending, self._pending = self._pending, []
        for scope, status, duration_s, at in pending:
            log.info(access_line(scope, status, duration_s, at))


def access_line(scope: Scope, status: int, duration_s: float, at: float) -> str:
    """The request's JSON access line (``at``: when it ended, as ``time.time()``); null for
    what is unknown (no key, no model)."""
    state = scope.get("state") or {}
    principal = state.get("principal")
    return json.dumps(
        {
            "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
            "request_id": state.get("request_id"),
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(duration_s * 1000, 3),
            "folder": getattr(principal, "folder_id", None),
            "key_id": getattr(principal, "key_id", None),
            "model": state.get("model"),
            "client_request_id": _client_request_id(scope),
        }
    )


def configure_access_log(stream: TextIO | None = None) -> None:
    """Write access lines bare, one JSON object a line, not behind the other loggers' prefix
    (``fovea serve`` calls this; stderr by default)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.propagate = False


def _client_request_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-client-request-id":
            return str(value[:CLIENT_REQUEST_ID_LIMIT].decode("latin-1"))
    return None
