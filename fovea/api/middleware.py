"""ASGI middleware: request ids on every response, and the request body size limits (the access
log and request metrics: ``fovea.observability.access``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fovea.api.admission import ByteBudget
from fovea.api.errors import error_response
from fovea.errors import FoveaError, PayloadTooLargeError, RateLimitError


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
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-server-trace-id", trace_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_ids)


@dataclass(frozen=True)
class UploadLimit:
    """Paths whose multipart bodies stream through to the route, which writes them to disk.

    Such a body is never buffered here: it is counted against ``max_bytes`` as it passes, and
    takes only ``reserve_bytes`` of the admission budget (what the route holds at a time).
    """

    paths: frozenset[str]
    max_bytes: int
    reserve_bytes: int = 1024 * 1024
    # Raw bodies PUT under these prefixes (signed dataset uploads) stream through too.
    put_prefixes: tuple[str, ...] = ()

    def applies_to(self, scope: Scope) -> bool:
        if scope["method"] == "PUT":
            return scope["path"].startswith(self.put_prefixes) if self.put_prefixes else False
        content_type = _header(scope, b"content-type") or ""
        return (
            scope["method"] == "POST"
            and scope["path"] in self.paths
            and content_type.lower().startswith("multipart/form-data")
        )


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with a 413, before the route reads them.

    A declared Content-Length over the limit is refused at once; a chunked body is read up to
    the limit and refused as soon as it passes it, so memory stays bounded either way. Uploads
    (``uploads``) are not read here but streamed through, under their own limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        budget: ByteBudget | None = None,
        uploads: UploadLimit | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if self.uploads is not None and self.uploads.applies_to(scope):
            await self._stream_upload(self.uploads, scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(scope, receive, send, self._too_large(declared))
            return
        # A chunked body's size is unknown: reserve a quarter of the budget, not all of it.
        unknown = min(self.max_bytes, self.budget.capacity // 4) if self.budget else 0
        size = declared if declared is not None else unknown
        await self._admit(size, scope, receive, send, lambda: self._admitted(scope, receive, send))

    async def _stream_upload(
        self, uploads: UploadLimit, scope: Scope, receive: Receive, send: Send
    ) -> None:
        declared = _declared_length(scope)
        if declared is not None and declared > uploads.max_bytes:
            await _refuse(scope, receive, send, _upload_too_large(uploads.max_bytes, declared))
            return
        body = _StreamedBody(scope, receive, send, uploads.max_bytes)
        await self._admit(
            uploads.reserve_bytes,
            scope,
            receive,
            send,
            lambda: self.app(scope, body.receive, body.send),
        )

    async def _admit(
        self,
        size: int,
        scope: Scope,
        receive: Receive,
        send: Send,
        run: Callable[[], Awaitable[None]],
    ) -> None:
        if self.budget is None:
            await run()
            return
        try:
            async with self.budget.reserve(size):
                await run()
        except RateLimitError as error:
            await _refuse(scope, receive, send, error)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, over_limit = await self._read_up_to_limit(receive)
        if over_limit:
            await _refuse(scope, receive, send, self._too_large(None))
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

    def _too_large(self, size: int | None) -> PayloadTooLargeError:
        what = f"{size} bytes" if size is not None else f"more than {self.max_bytes} bytes"
        return PayloadTooLargeError(
            f"Request body too large: {what}; this server accepts at most {self.max_bytes} "
            "bytes per request (FOVEA_MAX_REQUEST_BYTES). Send fewer or smaller images.",
        )


class _StreamedBody:
    """An upload's body passed through as it arrives, counted against ``limit``.

    Past the limit ``receive`` raises ``PayloadTooLargeError`` (rendered as a 413 by the app).
    Whatever the app leaves unread is drained before its response starts, so a client that
    sends its whole body before reading gets the answer, not a reset connection.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._size = 0
        self._is_started = False
        self._is_complete = False
        # A client waiting for "100 Continue" sends nothing unless the body is read: keep it so.
        self._expects_continue = (_header(scope, b"expect") or "").lower() == "100-continue"

    async def receive(self) -> Message:
        self._is_started = True
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._is_complete = True
        if message["type"] == "http.request":
            self._size += len(message.get("body", b""))
            if self._size > self._limit:
                raise _upload_too_large(self._limit, None)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self._is_complete:
            self._is_complete = True
            if self._is_started or not self._expects_continue:
                await _drain(self._receive)
        await self._send(message)


def _upload_too_large(limit: int, size: int | None) -> PayloadTooLargeError:
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return PayloadTooLargeError(
        f"File upload too large: {what}; this server accepts upload bodies of at most {limit} "
        "bytes (FOVEA_MAX_FILE_BYTES).",
    )


async def _refuse(scope: Scope, receive: Receive, send: Send, error: FoveaError) -> None:
    """Answer with ``error`` without running the app; the body is dropped, not buffered."""
    expects_continue = (_header(scope, b"expect") or "").lower() == "100-continue"
    if not expects_continue:
        await _drain(receive)
    await error_response(error)(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    declared = _header(scope, b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


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
