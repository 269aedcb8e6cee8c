"""``/v1/responses``: OpenAI's Responses API (create, retrieve, delete, input items).

(``fovea.api.responses`` is the JSON response helper; this module is the resource.)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from fovea.api.chat import RunStreamingResponse
from fovea.api.deps import HeaderFolderDep, PrincipalDep, ServicesDep, request_context
from fovea.api.openapi import GENERATION_ERRORS, errors, event_stream
from fovea.api.responses import json_response
from fovea.api.streaming import ClientDisconnected, cancel_on_disconnect, sse_typed_events
from fovea.protocol.responses import (
    CreateResponseRequest,
    InputItemList,
    InputItemsParams,
    ResponseDeleted,
    ResponseObject,
)

router = APIRouter()


@router.post(
    "/v1/responses",
    response_model=ResponseObject,
    responses={
        **event_stream(
            "With stream: true: `event: <type>` and `data: <event JSON>` pairs (response.created, "
            "response.output_text.delta, ..., response.completed); a failure after the first "
            "event is an `error` event"
        ),
        **errors(*GENERATION_ERRORS),
    },
)
async def create_response(
    body: CreateResponseRequest,
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
) -> Response:
    """Create a response: JSON, or the Responses API's server-sent events with ``stream``."""
    request.scope.setdefault("state", {})["model"] = body.model  # for the access log
    context = request_context(request)
    # A client that leaves while its prompt is processed or its answer generated stops the work.
    try:
        run = await cancel_on_disconnect(
            request, services.responses.start(principal, body, header_folder, context)
        )
        if not body.stream:
            try:
                response = await cancel_on_disconnect(request, run.collect())
            finally:
                await run.aclose()  # a no-op unless the collect was cancelled before it began
            return json_response(response, headers=run.headers)
    except ClientDisconnected:
        return Response(status_code=499)
    return RunStreamingResponse(
        run.chat,
        sse_typed_events(run.events()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **run.headers},
    )


@router.get("/v1/responses/{response_id}", response_model=ResponseObject)
async def retrieve_response(
    response_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    response = await services.responses.retrieve(principal, header_folder, response_id)
    return json_response(response)


@router.delete("/v1/responses/{response_id}", response_model=ResponseDeleted)
async def delete_response(
    response_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    deleted = await services.responses.delete(principal, header_folder, response_id)
    return json_response(deleted)


@router.get("/v1/responses/{response_id}/input_items", response_model=InputItemList)
async def list_input_items(
    response_id: str,
    params: Annotated[InputItemsParams, Query()],
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
) -> Response:
    items = await services.responses.input_items(principal, header_folder, response_id, params)
    return json_response(items)
