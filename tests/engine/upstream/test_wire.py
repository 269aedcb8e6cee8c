"""What upstreams send back, read as Fovea's chunks and errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from fovea.engine.types import (
    GenerationRequest,
    Message,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolFunction,
    ToolUse,
)
from fovea.engine.upstream.wire import (
    StreamAssembler,
    judge_status,
    parse_completion,
    request_body,
    sse_data,
)
from fovea.errors import (
    ContextLengthError,
    InvalidRequestError,
    RateLimitError,
    UpstreamError,
)

pytestmark = pytest.mark.anyio


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_events_split_anywhere_across_reads_come_out_whole() -> None:
    stream = b'data: {"a": 1}\r\n\r\n: a comment\n\nevent: x\ndata: line one\ndata: line two\n\n'
    stream += b"data:[DONE]\n\n"
    for size in (1, 3, 7, len(stream)):
        reads = [stream[i : i + size] for i in range(0, len(stream), size)]
        got = [data async for data in sse_data(pieces(*reads))]
        assert got == ['{"a": 1}', "line one\nline two", "[DONE]"]


async def test_an_endless_event_is_refused() -> None:
    huge = (b"data: " + b"x" * 1024 * 1024 for _ in range(9))
    with pytest.raises(UpstreamError, match="over"):
        async for _ in sse_data(pieces(*huge)):
            pass


def test_an_error_event_mid_stream_is_an_error() -> None:
    assembler = StreamAssembler(image_tokens=0)
    chunk = assembler.feed(json.dumps({"choices": [{"delta": {"content": "Hi"}}]}))
    assert chunk is not None and chunk.text == "Hi"
    with pytest.raises(UpstreamError, match="engine died"):
        assembler.feed(json.dumps({"error": {"message": "engine died", "code": 500}}))
    with pytest.raises(UpstreamError, match="not JSON"):
        assembler.feed("<html>")


def test_a_stream_without_a_finish_reason_is_broken() -> None:
    assembler = StreamAssembler(image_tokens=0)
    assembler.feed(json.dumps({"choices": [{"delta": {"content": "Hi"}}]}))
    with pytest.raises(UpstreamError, match="before the answer was finished"):
        assembler.final()


def test_unknown_finish_reasons_end_normally_and_usage_is_kept() -> None:
    answer = {
        "choices": [{"message": {"content": "ok"}, "finish_reason": "abort"}],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    chunk = parse_completion(json.dumps(answer).encode(), image_tokens=16)
    assert (chunk.text, chunk.finish_reason) == ("ok", "stop")
    assert chunk.usage is not None
    assert (chunk.usage.cached_tokens, chunk.usage.image_tokens) == (4, 16)
    with pytest.raises(UpstreamError, match="not a chat completion"):
        parse_completion(b'{"choices": []}', image_tokens=0)


@pytest.mark.parametrize(
    ("status", "body", "error", "elsewhere", "fault", "words"),
    [
        (
            400,
            {"error": {"message": "temperature must be <= 2"}},
            InvalidRequestError,
            False,
            False,
            "temperature",
        ),
        (
            500,
            {"detail": "Prompt exceeds n_ctx: 6009 > 4096"},
            ContextLengthError,
            False,
            False,
            "n_ctx",
        ),
        (401, {"error": "bad key"}, UpstreamError, True, True, "api_key_env"),
        (404, {"detail": "model not found"}, UpstreamError, True, True, "does not serve the model"),
        (429, {"error": {"message": "too many"}}, RateLimitError, True, False, "at capacity"),
        (503, {}, UpstreamError, True, True, "answered 503"),
    ],
)
def test_answers_that_are_not_200(
    status: int,
    body: dict[str, object],
    error: type[Exception],
    elsewhere: bool,
    fault: bool,
    words: str,
) -> None:
    verdict = judge_status(status, json.dumps(body).encode(), "10.0.0.11:8000")
    assert type(verdict.error) is error
    assert (verdict.retry_elsewhere, verdict.replica_fault) == (elsewhere, fault)
    assert words in verdict.error.message


def test_tool_calls_pass_through_both_ways() -> None:
    tools = ToolUse(
        (ToolFunction("get_weather", "Weather", {"type": "object", "properties": {}}),),
        choice="get_weather",
        parallel=False,
    )
    history = (
        Message("user", (TextPart("Paris?"),)),
        Message("assistant", (), (ToolCall("call_1", "get_weather", "{}"),)),
        Message("tool", (TextPart("sunny"),), tool_call_id="call_1"),
    )
    request = GenerationRequest("r", history, tools=tools)
    body = json.loads(request_body(request, history, "m", {}))
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            }
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}

    assembler = StreamAssembler(image_tokens=0)
    first = {
        "index": 0,
        "id": "call_9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    rest = {"index": 0, "function": {"arguments": '{"city"'}}
    chunks = [
        assembler.feed(json.dumps({"choices": [{"delta": {"tool_calls": [piece]}}]}))
        for piece in (first, rest)
    ]
    assembler.feed(json.dumps({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}))
    assert [c.tool_calls for c in chunks if c] == [
        (ToolCallDelta(0, id="call_9", name="get_weather"),),
        (ToolCallDelta(0, arguments='{"city"'),),
    ]
    assert assembler.final().finish_reason == "tool_calls"
    whole = parse_completion(
        json.dumps(
            {
                "choices": [
                    {
                        "message": {"content": None, "tool_calls": [first]},
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
        ).encode(),
        image_tokens=0,
    )
    assert whole.tool_calls == (ToolCallDelta(0, id="call_9", name="get_weather"),)
    assert whole.finish_reason == "tool_calls"
