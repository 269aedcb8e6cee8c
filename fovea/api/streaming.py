"""Server-sent events and disconnect handling for generation routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing, suppress
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from fovea.api.errors import sse_error
from fovea.errors import EngineError, FoveaError

log = logging.getLogger(__name__)

T = TypeVar("T")


async def sse_events(items: AsyncGenerator[BaseModel, None]) -> AsyncIterator[str]:
    """``data: <json>`` events, then ``data: [DONE]``; a failure mid-stream is one error event.

    Keys whose value is null are left out, as the cloud sends its chunks: its own SDK reads
    ``"finish_reason": null`` as a string and ``"usage": null`` as usage. The ``openai`` client
    and LangChain read chunks without those keys the same way.
    """
    try:
        async with aclosing(items) as stream:
            async for item in stream:
                yield f"data: {item.model_dump_json(exclude_none=True)}\n\n"
    except FoveaError as exc:
        yield sse_error(exc)
        return
    except Exception:
        log.exception("stream failed")
        yield sse_error(EngineError("The stream failed on the server"))
        return
    yield "data: [DONE]\n\n"


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
