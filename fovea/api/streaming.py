"""Server-sent events and disconnect handling for generation routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from fovea.api.errors import sse_error, sse_error_event
from fovea.errors import EngineError, FoveaError

log = logging.getLogger(__name__)

T = TypeVar("T")


def sse_events(items: AsyncGenerator[BaseModel, None]) -> AsyncIterator[str]:
    """``data: <json>`` events, then ``data: [DONE]``; a failure mid-stream is one error event.

    Keys whose value is null are left out, as the cloud sends its chunks: its own SDK reads
    ``"finish_reason": null`` as a string and ``"usage": null`` as usage. The ``openai`` client
    and LangChain read chunks without those keys the same way.
    """

    def render(item: BaseModel) -> str:
        return f"data: {item.model_dump_json(exclude_none=True)}\n\n"

    return _sse(items, render, sse_error, last="data: [DONE]\n\n")


def sse_typed_events(items: AsyncGenerator[BaseModel, None]) -> AsyncIterator[str]:
    """The Responses API's events: ``event: <type>`` and ``data: <json>`` (nulls kept, as OpenAI
    sends them), no ``[DONE]``; a failure mid-stream is one ``error`` event, numbered next."""
    sent = 0

    def render(item: BaseModel) -> str:
        nonlocal sent
        sent = getattr(item, "sequence_number", sent) + 1
        return f"event: {getattr(item, 'type', 'message')}\ndata: {item.model_dump_json()}\n\n"

    return _sse(items, render, lambda error: sse_error_event(error, sent))


async def _sse(
    items: AsyncGenerator[BaseModel, None],
    render: Callable[[BaseModel], str],
    render_error: Callable[[FoveaError], str],
    *,
    last: str | None = None,
) -> AsyncIterator[str]:
    try:
        async with aclosing(items) as stream:
            async for item in stream:
                yield render(item)
    except FoveaError as exc:
        yield render_error(exc)
        return
    except Exception:
        log.exception("stream failed")
        yield render_error(EngineError("The stream failed on the server"))
        return
    if last is not None:
        yield last


class ClientDisconnected(Exception):
    """The client went away before its response was ready."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first (frees the model)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    raise ClientDisconnected


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
