"""Fovea's generation request as an OpenAI chat body, and the upstream's answer back.

A streamed request asks for a stream with usage (``stream_options.include_usage``; a stalled
replica shows as a read timeout between chunks); a collected one asks for one JSON answer,
whose usage every engine reports. Upstream errors become Fovea's: a 4xx about the request
(and a prompt over the context, however worded) keeps its status and message; anything else
is the replica's fault (502, tried elsewhere when nothing reached the client).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fovea.engine.types import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    ImagePart,
    Message,
    TextPart,
    ToolCallDelta,
    ToolUse,
    Usage,
)
from fovea.errors import (
    ContextLengthError,
    FoveaError,
    InvalidRequestError,
    PayloadTooLargeError,
    RateLimitError,
    UpstreamError,
)

_FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "tool_calls"})
# One server-sent event larger than this is not a chat chunk.
MAX_EVENT_BYTES = 8 * 1024 * 1024


def request_body(
    request: GenerationRequest,
    messages: Sequence[Message],
    model: str,
    image_urls: Mapping[str, str],
) -> bytes:
    """The JSON body for ``model``; ``image_urls`` maps each image's digest to its data URL."""
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(m, image_urls) for m in messages],
        "stream": request.streamed,
        "max_tokens": sampling.max_tokens or request.default_max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if request.streamed:
        body["stream_options"] = {"include_usage": True}
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.frequency_penalty:
        body["frequency_penalty"] = sampling.frequency_penalty
    if sampling.presence_penalty:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.ignore_eos:
        body["ignore_eos"] = True
    response_format = request.response_format
    if response_format.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif response_format.kind == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": response_format.schema or {}},
        }
    if request.tools is not None:
        body.update(_tools(request.tools))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _tools(tools: ToolUse) -> dict[str, Any]:
    """The offer as the client made it; the upstream engine calls and parses."""
    choice: Any = tools.choice
    if choice not in ("auto", "required"):
        choice = {"type": "function", "function": {"name": choice}}
    return {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": f.name,
                    "description": f.description,
                    "parameters": f.parameters,
                },
            }
            for f in tools.functions
        ],
        "tool_choice": choice,
        "parallel_tool_calls": tools.parallel,
    }


def _message(message: Message, image_urls: Mapping[str, str]) -> dict[str, Any]:
    wired = _content(message, image_urls)
    if message.tool_calls:
        wired["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        if not message.parts:
            wired["content"] = None
    if message.tool_call_id is not None:
        wired["tool_call_id"] = message.tool_call_id
    return wired


def _content(message: Message, image_urls: Mapping[str, str]) -> dict[str, Any]:
    if all(isinstance(p, TextPart) for p in message.parts):
        text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
        return {"role": message.role, "content": text}
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = image_urls[part.image.digest]
            content.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": message.role, "content": content}


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The data of each server-sent event in a byte stream (other fields are ignored)."""
    buffer = b""
    data: list[bytes] = []
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data:
                    yield b"\n".join(data).decode("utf-8", "replace")
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
        if len(buffer) > MAX_EVENT_BYTES:
            raise UpstreamError(f"the replica sent a stream event over {MAX_EVENT_BYTES} bytes")
    if data:
        yield b"\n".join(data).decode("utf-8", "replace")


class StreamAssembler:
    """Reads an upstream's ``chat.completion.chunk`` events into Fovea's chunks.

    Text is handed on as it comes; the finish reason is held until the stream ends, because
    the usage arrives in a chunk of its own after it.
    """

    def __init__(self, image_tokens: int) -> None:
        self._image_tokens = image_tokens
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.text_chunks = 0

    def feed(self, data: str) -> GenerationChunk | None:
        """The text and tool-call pieces in one event's data (None when it holds neither);
        raises on an error event or garbage."""
        try:
            event = json.loads(data)
        except ValueError:
            raise UpstreamError(
                f"the replica sent a stream event that is not JSON: {data[:200]!r}"
            ) from None
        if not isinstance(event, dict):
            raise UpstreamError(f"the replica sent an unexpected stream event: {data[:200]!r}")
        if "error" in event or event.get("object") == "error":
            raise error_from_body(_status_of(event), event)
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage, self._image_tokens)
        text = ""
        calls: list[ToolCallDelta] = []
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            calls += _call_deltas(delta.get("tool_calls"))
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = _finish_reason(reason)
        if not text and not calls:
            return None
        self.text_chunks += 1
        return GenerationChunk(text, tool_calls=tuple(calls))

    def final(self) -> GenerationChunk:
        if self.finish_reason is None:
            raise UpstreamError("the replica ended the stream before the answer was finished")
        # Some engines (llama_cpp.server) send no usage in streams: count what came.
        usage = self.usage or Usage(
            prompt_tokens=0, completion_tokens=self.text_chunks, image_tokens=self._image_tokens
        )
        return GenerationChunk("", finish_reason=self.finish_reason, usage=usage)


def parse_completion(content: bytes, image_tokens: int) -> GenerationChunk:
    """A whole ``chat.completion`` answer as one final chunk."""
    try:
        answer = json.loads(content)
        choice = answer["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        reason = choice.get("finish_reason") or "stop"
        usage = answer.get("usage") or {}
        calls = tuple(
            ToolCallDelta(
                index,
                id=call["id"],
                name=call["function"]["name"],
                arguments=call["function"].get("arguments") or "",
            )
            for index, call in enumerate(message.get("tool_calls") or ())
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise UpstreamError(
            f"the replica's answer is not a chat completion: {content[:200]!r}"
        ) from None
    if not isinstance(text, str) or not isinstance(usage, dict):
        raise UpstreamError(f"the replica's answer is not a chat completion: {content[:200]!r}")
    return GenerationChunk(text, _finish_reason(reason), _usage(usage, image_tokens), calls)


def _call_deltas(raw: Any) -> list[ToolCallDelta]:
    if not isinstance(raw, list):
        return []
    deltas = []
    for item in raw:
        if not isinstance(item, dict):
            raise UpstreamError(f"the replica sent a malformed tool call delta: {item!r:.200}")
        function = item.get("function") or {}
        deltas.append(
            ToolCallDelta(
                int(item.get("index") or 0),
                id=item.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        )
    return deltas


def _finish_reason(reason: str) -> FinishReason:
    # content_filter is never asked for; anything else ends normally.
    return reason if reason in _FINISH_REASONS else "stop"  # type: ignore[return-value]


def _usage(raw: dict[str, Any], image_tokens: int) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        image_tokens=image_tokens,
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


@dataclass(frozen=True)
class StatusVerdict:
    error: FoveaError
    retry_elsewhere: bool  # another replica may answer
    replica_fault: bool  # counts towards ejecting this replica


# How engines word a prompt over the context window. vLLM and SGLang answer 400, llama-server
# 400 or 500, llama_cpp.server 500: whatever the status, it is the request's fault, never the
# replica's (a client sending long prompts must not get replicas ejected).
_CONTEXT_OVERFLOW = re.compile(
    r"context length|context size|context window|n_ctx|maximum context", re.IGNORECASE
)


def judge_status(status: int, body: bytes, replica: str) -> StatusVerdict:
    """What a non-200 answer from ``replica`` means for the request and for the replica."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    message = _message_of(parsed, body)
    if 400 <= status < 600 and _CONTEXT_OVERFLOW.search(message):
        return StatusVerdict(_context_overflow(message), False, False)
    if status in (400, 422) and isinstance(parsed, dict):
        return StatusVerdict(error_from_body(status, parsed), False, False)
    if status == 413:
        return StatusVerdict(
            PayloadTooLargeError(
                f"The model's server refused the request as too large: {_message_of(parsed, body)}"
            ),
            False,
            False,
        )
    if status == 429:
        error = RateLimitError(
            f"The model's servers are at capacity ({replica}: {_message_of(parsed, body)}); "
            "retry shortly",
            headers={"Retry-After": "1"},
        )
        return StatusVerdict(error, True, False)
    if status in (401, 403):
        reason = "refused Fovea's credentials: check the replica's api_key_env"
    elif status == 404:
        reason = "does not serve the model named in the catalog (or has no chat API)"
    else:
        reason = f"answered {status}"
    detail = _message_of(parsed, body)
    message = f"The model's server {replica} {reason}" + (f": {detail}" if detail else "")
    return StatusVerdict(UpstreamError(message), True, True)


def error_from_body(status: int, body: dict[str, Any]) -> FoveaError:
    """An error an upstream reported about the request itself (a 4xx), as Fovea's error."""
    message = _message_of(body, b"")
    if _CONTEXT_OVERFLOW.search(message):
        return _context_overflow(message)
    if 400 <= status < 500:
        return InvalidRequestError(message or "The model's server refused the request")
    return UpstreamError(f"The model's server failed: {message or status}")


def _context_overflow(message: str) -> ContextLengthError:
    return ContextLengthError(
        f"The prompt does not fit the model's context window; send a shorter conversation, "
        f"fewer images or a smaller max_tokens. The model's server said: {message}",
        param="messages",
    )


def _status_of(event: dict[str, Any]) -> int:
    error = event.get("error")
    code = (error if isinstance(error, dict) else event).get("code")
    return code if isinstance(code, int) else 500


def _message_of(parsed: Any, raw: bytes) -> str:
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if parsed.get(key):
                return str(parsed[key])
    return raw[:300].decode("utf-8", "replace").strip()
