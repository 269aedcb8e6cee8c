"""``TextGenerationService.Completion``: the cloud's text generation over gRPC, on Fovea's chat.

A request becomes the same ``ChatCompletionRequest`` an HTTP client would send, so auth, folder
checks, quotas, the catalog and the engines are the HTTP API's. Streamed answers carry the
accumulated text (as the cloud sends them), status PARTIAL, then FINAL (or TRUNCATED_FINAL when
``max_tokens`` cut it) with the usage. The cloud's gRPC messages carry no images.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, ValidationError
from yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as service,
)
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as service_grpc,
)

from fovea.errors import FoveaError, InvalidRequestError
from fovea.grpc.calls import caller
from fovea.grpc.status import abort
from fovea.protocol import chat as wire
from fovea.services.chat import ChatRun
from fovea.services.chat_events import RequestContext, data_logging_enabled
from fovea.services.container import Services

Status = common.Alternative.AlternativeStatus
Model = TypeVar("Model", bound=BaseModel)

log = logging.getLogger(__name__)


class TextGeneration(service_grpc.TextGenerationServiceServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    async def Completion(
        self, request: service.CompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[service.CompletionResponse]:
        try:
            metadata = dict(context.invocation_metadata() or ())
            principal = await caller(self._services.access, context)
            body = chat_request(request)
            run = await self._services.chat.start(
                principal, body, None, context=request_context(metadata)
            )
            try:
                async for response in _responses(run, body.stream):
                    yield response
            finally:
                await run.aclose()
        except FoveaError as error:
            await abort(context, error)
        except Exception:
            log.exception("gRPC Completion failed")
            await abort(context, FoveaError("The server had an error processing your request."))


def request_context(metadata: dict[str, Any]) -> RequestContext:
    """The call's data-logging choice (the SDK's ``enable_server_data_logging``)."""
    return RequestContext(data_logging=data_logging_enabled(metadata.get("x-data-logging-enabled")))


def chat_request(request: service.CompletionRequest) -> wire.ChatCompletionRequest:
    """The HTTP API's request for a gRPC ``CompletionRequest``."""
    if request.tools or request.HasField("tool_choice"):
        raise InvalidRequestError("tools are not supported over gRPC yet", param="tools")
    fields: dict[str, Any] = {
        "model": request.model_uri,
        "stream": request.completion_options.stream,
        "messages": [_message(m, i) for i, m in enumerate(request.messages)],
        **completion_fields(request),
    }
    return validated(wire.ChatCompletionRequest, fields)


def completion_fields(
    request: service.CompletionRequest | service.BatchCompletionRequest,
) -> dict[str, Any]:
    """The chat request fields of a request's ``completion_options`` and JSON options."""
    options = request.completion_options
    fields: dict[str, Any] = {}
    if options.HasField("temperature"):
        fields["temperature"] = options.temperature.value
    if options.HasField("max_tokens"):
        fields["max_tokens"] = options.max_tokens.value
    if request.json_object:
        fields["response_format"] = {"type": "json_object"}
    elif request.HasField("json_schema"):
        schema = MessageToDict(request.json_schema.schema)
        fields["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
    return fields


def validated(model: type[Model], fields: dict[str, Any]) -> Model:
    """``model`` from ``fields``; the first problem as Fovea's 400 otherwise."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequestError(f"Invalid value for '{where}': {first['msg']}") from None


def _message(message: common.Message, index: int) -> dict[str, str]:
    if message.WhichOneof("Content") not in (None, "text"):
        raise InvalidRequestError(
            f"messages[{index}]: only text messages are supported over gRPC yet",
            param=f"messages[{index}]",
        )
    return {"role": message.role, "content": message.text}


async def _responses(run: ChatRun, stream: bool) -> AsyncIterator[service.CompletionResponse]:
    if not stream:
        completion = await run.collect()
        choice = completion.choices[0]
        yield completion_response(
            choice.message.content or "", choice.finish_reason, completion.usage
        )
        return
    text = ""
    finish_reason: str | None = None
    # Closed at once when the client cancels: that frees the engine and the folder's quota.
    async with aclosing(run.chunks(include_usage=True)) as chunks:
        async for chunk in chunks:
            if chunk.choices:
                delta = chunk.choices[0].delta.content or ""
                finish_reason = chunk.choices[0].finish_reason or finish_reason
                if delta:
                    text += delta
                    yield completion_response(text, None, None)
            if chunk.usage is not None:
                yield completion_response(text, finish_reason or "stop", chunk.usage)


def completion_response(
    text: str, finish_reason: str | None, usage: wire.CompletionUsage | None
) -> service.CompletionResponse:
    if finish_reason is None:
        status = Status.ALTERNATIVE_STATUS_PARTIAL
    elif finish_reason == "length":
        status = Status.ALTERNATIVE_STATUS_TRUNCATED_FINAL
    else:
        status = Status.ALTERNATIVE_STATUS_FINAL
    response = service.CompletionResponse(
        alternatives=[
            common.Alternative(message=common.Message(role="assistant", text=text), status=status)
        ],
        model_version="",
    )
    if usage is not None:
        response.usage.CopyFrom(
            common.ContentUsage(
                input_text_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
            )
        )
    return response
