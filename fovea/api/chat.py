"""``POST /v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from fovea.api.deps import HeaderFolderDep, PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.api.streaming import ClientDisconnected, cancel_on_disconnect, sse_events
from fovea.protocol.chat import ChatCompletionRequest

router = APIRouter()


@router.post("/v1/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
) -> Response:
    # A client that leaves while its prompt is processed or its answer generated stops the work.
    try:
        if not body.stream:
            completion = await cancel_on_disconnect(
                request, services.chat.complete(principal, body, header_folder)
            )
            return json_response(completion)
        run = await cancel_on_disconnect(
            request, services.chat.start(principal, body, header_folder)
        )
    except ClientDisconnected:
        return Response(status_code=499)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        sse_events(run.chunks(include_usage=include_usage)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
