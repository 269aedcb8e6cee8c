"""Between the Responses API's items and chat messages: a request's input items become the chat
messages its generation is asked with; a response's output items become the assistant messages
a continuation replays; stored messages become input items again for ``input_items``.

Chat messages are plain dicts in OpenAI's chat shape: that is how they are stored, and a
continuation's messages must render to the same prompt as the turn before (the KV cache serves
the shared prefix), so there is one way each item becomes a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from fovea.errors import InvalidRequestError
from fovea.protocol import responses as wire

ChatMessage = dict[str, Any]


def input_messages(items: Sequence[wire.InputItem]) -> tuple[list[ChatMessage], list[str]]:
    """The chat messages of ``items``, and where in the request each came from (``input[k]``):
    the locations of chat's errors about them."""
    messages: list[ChatMessage] = []
    where: list[str] = []
    for k, item in enumerate(items):
        at = f"input[{k}]"
        if isinstance(item, wire.MessageItem):
            messages.append(_message(item, at))
        elif isinstance(item, wire.FunctionCallItem):
            call = _tool_call(item.call_id, item.name, item.arguments)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                # Calls made in one turn (after its text, if any) are one assistant message.
                last.setdefault("tool_calls", []).append(call)
                continue
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append(
                {"role": "tool", "tool_call_id": item.call_id, "content": _tool_output(item)}
            )
        where.append(at)
    return messages, where


def output_messages(output: Sequence[wire.OutputItem]) -> list[ChatMessage]:
    """The assistant messages a response's output replays as in a continuation."""
    items: list[wire.InputItem] = []
    for item in output:
        if isinstance(item, wire.OutputMessage):
            items.append(wire.MessageItem(role="assistant", content=list(item.content)))
        else:
            items.append(
                wire.FunctionCallItem(
                    type="function_call",
                    call_id=item.call_id,
                    name=item.name,
                    arguments=item.arguments,
                )
            )
    return input_messages(items)[0]


def stored_items(response_id: str, messages: Sequence[ChatMessage]) -> list[wire.StoredItem]:
    """A stored turn's chat messages as the input items they were sent as; their ids are
    derived from the response's, so they stay the same on every read."""
    items: list[wire.StoredItem] = []
    stem = response_id.removeprefix("resp_")

    def next_id(prefix: str) -> str:
        return f"{prefix}_{stem}{len(items):04d}"

    for message in messages:
        role = message["role"]
        if role == "tool":
            output = message.get("content") or ""
            items.append(
                wire.StoredFunctionCallOutput(
                    id=next_id("fco"), call_id=message.get("tool_call_id") or "", output=output
                )
            )
            continue
        content = message.get("content")
        if content:
            items.append(
                wire.StoredMessage(
                    id=next_id("msg"), role=role, content=_stored_content(role, content)
                )
            )
        for call in message.get("tool_calls") or ():
            function = call["function"]
            items.append(
                wire.FunctionCall(
                    id=next_id("fc"),
                    status="completed",
                    call_id=call["id"],
                    name=function["name"],
                    arguments=function["arguments"],
                )
            )
    return items


def plain_dict(value: Any) -> dict[str, Any]:
    """A chat tool call (or its delta) as a dict, whether chat gave a model or a dict."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    return dict(value)


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_output(item: wire.FunctionCallOutputItem) -> str:
    if isinstance(item.output, str):
        return item.output
    return "".join(part.text for part in item.output)


def _message(item: wire.MessageItem, at: str) -> ChatMessage:
    if isinstance(item.content, str):
        return {"role": item.role, "content": item.content}
    if item.role == "assistant":
        texts = []
        for j, part in enumerate(item.content):
            if isinstance(part, wire.InputImage):
                raise _image_outside_user(f"{at}.content[{j}]")
            texts.append(part.text)
        return {"role": "assistant", "content": "".join(texts)}
    return {
        "role": item.role,
        "content": [
            _part(item.role, part, f"{at}.content[{j}]") for j, part in enumerate(item.content)
        ],
    }


def _part(
    role: str, part: wire.InputText | wire.InputImage | wire.OutputText, at: str
) -> ChatMessage:
    if isinstance(part, wire.OutputText):
        raise InvalidRequestError(
            f"{at}: output_text is what a model wrote and belongs in assistant messages; "
            f"use input_text in a {role} message",
            param=at,
        )
    if isinstance(part, wire.InputText):
        return {"type": "text", "text": part.text}
    if role != "user":
        raise _image_outside_user(at)
    if part.image_url is None:
        raise InvalidRequestError(
            f"{at}: input_image needs an image_url (a data: URL with the image's bytes) or "
            "the file_id of an uploaded image",
            param=f"{at}.image_url",
        )
    return {"type": "image_url", "image_url": {"url": part.image_url, "detail": part.detail}}


def _image_outside_user(at: str) -> InvalidRequestError:
    return InvalidRequestError(f"{at}: images are accepted in user messages only", param=at)


def _stored_content(role: str, content: str | list[dict[str, Any]]) -> list[wire.InputContent]:
    if isinstance(content, str):
        if role == "assistant":
            return [wire.OutputText(text=content)]
        return [wire.InputText(type="input_text", text=content)]
    parts: list[wire.InputContent] = []
    for part in content:
        if part["type"] == "text":
            parts.append(wire.InputText(type="input_text", text=part["text"]))
        else:
            image = part["image_url"]
            parts.append(
                wire.InputImage(
                    type="input_image", image_url=image["url"], detail=image.get("detail", "auto")
                )
            )
    return parts
