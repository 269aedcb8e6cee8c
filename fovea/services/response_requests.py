"""A Responses API request as the chat request it runs as, and chat's errors about that request
named as the client wrote it (``input[0]``, ``max_output_tokens``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from fovea.errors import FoveaError, InvalidRequestError
from fovea.protocol import chat as chat_wire
from fovea.protocol import responses as wire
from fovea.services.response_items import ChatMessage


def chat_request(
    body: wire.CreateResponseRequest, messages: list[ChatMessage], where: Sequence[str]
) -> chat_wire.ChatCompletionRequest:
    """The chat request ``body`` runs as, over ``messages`` (``where`` says where in the
    client's request each came from)."""
    request: dict[str, Any] = {
        "model": body.model,
        "messages": messages,
        "stream": body.stream,
        "max_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "user": body.user,
        "response_format": _response_format(body.text.format),
    }
    if body.stream:
        request["stream_options"] = {"include_usage": True}
    if body.tools:
        request["tools"] = [_chat_tool(tool) for tool in body.tools]
        request["tool_choice"] = _chat_tool_choice(body)
        request["parallel_tool_calls"] = body.parallel_tool_calls
    try:
        return chat_wire.ChatCompletionRequest.model_validate(
            {key: value for key, value in request.items() if value is not None}
        )
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        param = _relocated_text(_path(first["loc"]), where)
        message = f"Invalid value for '{param}': {first['msg']}"
        raise InvalidRequestError(message, param=param) from None


def _path(location: Sequence[int | str]) -> str:
    """A pydantic location as a client writes it: ``messages[0].content[1]``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _response_format(value: wire.TextFormat) -> dict[str, Any] | None:
    if value.type == "text":
        return None
    if value.type == "json_object":
        return {"type": "json_object"}
    if value.schema_ is None:
        raise InvalidRequestError(
            "text.format of type json_schema needs a 'schema': the JSON schema the output "
            "must match",
            param="text.format.schema",
        )
    schema = {"name": value.name or "response", "schema": value.schema_, "strict": value.strict}
    return {"type": "json_schema", "json_schema": schema}


def _chat_tool(tool: wire.FunctionTool) -> dict[str, Any]:
    function = tool.model_dump(exclude={"type"}, exclude_none=True)
    return {"type": "function", "function": function}


def _chat_tool_choice(body: wire.CreateResponseRequest) -> str | dict[str, Any]:
    choice = body.tool_choice
    if isinstance(choice, str):
        return choice
    if choice.name not in {tool.name for tool in body.tools}:
        raise InvalidRequestError(
            f"tool_choice names function '{choice.name}', which is not among the tools",
            param="tool_choice.name",
        )
    return {"type": "function", "function": {"name": choice.name}}


# Chat names the request's parts as a chat request has them; a Responses client sent others.
_MESSAGE_INDEX = re.compile(r"messages\[(\d+)\]")
_CHAT_NAMES = (
    (re.compile(r"\bmax_(?:completion_)?tokens\b"), "max_output_tokens"),
    (re.compile(r"\bresponse_format\b"), "text.format"),
    (re.compile(r"\btools\[(\d+)\]\.function\b"), r"tools[\1]"),
    (re.compile(r"^messages$"), "input"),
)


def _relocated_text(text: str, where: Sequence[str]) -> str:
    def location(match: re.Match[str]) -> str:
        index = int(match[1])
        return where[index] if index < len(where) else match[0]

    text = _MESSAGE_INDEX.sub(location, text)
    for pattern, name in _CHAT_NAMES:
        text = pattern.sub(name, text)
    return text


def relocated(error: FoveaError, where: Sequence[str]) -> FoveaError:
    """Chat's error about the translated request, naming what the client sent instead."""
    error.message = _relocated_text(error.message, where)
    if error.param is not None:
        error.param = _relocated_text(error.param, where)
    return error
