"""ASGI middleware: request ids on every response, and the request body size limit."""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fovea.api.admission import ByteBudget
from fovea.api.errors import error_response
from fovea.errors import PayloadTooLargeError, RateLimitError

log = logging.getLogger("fovea.access")


class RequestIdMiddleware:
    """Sets ``x-request-id`` and ``x-server-trace-id`` on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        trace_id = uuid.uuid4().hex
        client_id = _header(scope, b"x-client-request-id")
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-server-trace-id", trace_id.encode()))
                message["headers"] = headers
                log.info(
                    "%s %s -> %s request_id=%s client_request_id=%s",
                    scope["method"],
                    scope["path"],
                    message["status"],
                    request_id,
                    client_id,
                )
            await send(message)

        await self.app(scope, receive, send_with_ids)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with a 413, before the route reads them.

    A declared Content-Length over the limit is refused at once; a chunked body is read up to
    the limit and refused as soon as it passes it, so memory stays bounded either way.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, budget: ByteBudget | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _drain(receive)
            await self._refuse(scope, receive, send, int(declared))
            return
        if self.budget is None:
            await self._admitted(scope, receive, send)
            return
        # A chunked body's size is unknown: reserve a quarter of the budget, not all of it.
        unknown = min(self.max_bytes, self.budget.capacity // 4)
        size = int(declared) if declared is not None and declared.isdigit() else unknown
        try:
            async with self.budget.reserve(size):
                await self._admitted(scope, receive, send)
        except RateLimitError as error:
            await _drain(receive)
            await error_response(error)(scope, receive, send)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, over_limit = await self._read_up_to_limit(receive)
        if over_limit:
            await self._refuse(scope, receive, send, None)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_up_to_limit(self, receive: Receive) -> tuple[bytes, bool]:
        """The body, or (b"", True) once it passes the limit (the rest is drained)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_bytes:
                if more:
                    await _drain(receive)
                return b"", True
            chunks.append(chunk)
            if not more:
                return b"".join(chunks), False

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int | None) -> None:
        what = f"{size} bytes" if size is not None else f"more than {self.max_bytes} bytes"
        error = PayloadTooLargeError(
            f"Request body too large: {what}; this server accepts at most {self.max_bytes} "
            "bytes per request (FOVEA_MAX_REQUEST_BYTES). Send fewer or smaller images.",
        )
        await error_response(error)(scope, receive, send)


async def _drain(receive: Receive) -> None:
    # Read and drop the rest of the body, so clients that write it all before reading the
    # response get the 413 instead of a broken connection.
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
