"""``POST /v1/chat/completions``: the gateway's hot path.

It is served by a plain Starlette endpoint (``route``, which app.py puts first): FastAPI's own
request handling (dependency solving, the body parsed to a dict and then to a model) cost about
a third of the CPU of a request proxied to an upstream (measured in process: 1.3 ms against
0.85 ms; docs/decisions.md). The same operation is declared on ``router`` for the OpenAPI
document, with the same request and response models; requests never reach it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fovea.api.deps import (
    HeaderFolderDep,
    PrincipalDep,
    header_folder_of,
    parse_body,
    principal_of,
    request_context,
    services_of,
)
from fovea.api.openapi import GENERATION_ERRORS, errors, event_stream
from fovea.api.responses import json_response
from fovea.api.streaming import ClientDisconnected, cancel_on_disconnect, sse_events
from fovea.protocol.chat import ChatCompletion, ChatCompletionRequest
from fovea.services.chat import ChatRun

PATH = "/v1/chat/completions"

router = APIRouter()


async def create_chat_completion(request: Request) -> Response:
    services = services_of(request)
    principal = await principal_of(request)
    header_folder = header_folder_of(request)
    body = parse_body(ChatCompletionRequest, await request.body())
    request.scope.setdefault("state", {})["model"] = body.model  # for the access log
    context = request_context(request)
    # A client that leaves while its prompt is processed or its answer generated stops the work.
    try:
        run = await cancel_on_disconnect(
            request, services.chat.start(principal, body, header_folder, context=context)
        )
        if not body.stream:
            try:
                completion = await cancel_on_disconnect(request, run.collect())
            finally:
                await run.aclose()  # a no-op unless the collect was cancelled before it began
            return json_response(completion, headers=run.headers)
    except ClientDisconnected:
        return Response(status_code=499)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return RunStreamingResponse(
        run,
        sse_events(run.chunks(include_usage=include_usage)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **run.headers},
    )


class RunStreamingResponse(StreamingResponse):
    """Server-sent events of a run, which ends however the response does: a client that
    leaves before the first event never starts the body's iterator."""

    def __init__(self, run: ChatRun, content: AsyncIterator[str], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._run.aclose()


route = Route(PATH, create_chat_completion, methods=["POST"])


@router.post(
    PATH,
    response_model=ChatCompletion,
    responses={
        **event_stream(
            "With stream: true: `data: <chat.completion.chunk JSON>` events, then "
            "`data: [DONE]`; a failure after the first event is one `data: <error JSON>` event"
        ),
        **errors(*GENERATION_ERRORS),
    },
)
async def create_chat_completion_documented(
    body: ChatCompletionRequest, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    """Create a chat completion: JSON, or server-sent events with ``stream: true``."""
    raise AssertionError(f"{PATH} is served by fovea.api.chat.route")
