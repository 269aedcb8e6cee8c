"""An in-process engine's generation with tools: the generic prompt in, the calls out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

from fovea.engine.tools.parser import ToolCallParser
from fovea.engine.tools.prompt import has_tool_turns, lower
from fovea.engine.types import GenerationChunk, GenerationRequest

Generate = Callable[[GenerationRequest], AsyncGenerator[GenerationChunk, None]]


async def generate_with_tools(
    generate: Generate, request: GenerationRequest
) -> AsyncGenerator[GenerationChunk, None]:
    """``generate(request)`` with tools lowered into the prompt (``request.tools`` stays for
    the sampler's grammar) and the text read back as content and calls."""
    if request.tools is None and not has_tool_turns(request.messages):
        async for chunk in generate(request):
            yield chunk
        return
    lowered = replace(request, messages=lower(request.messages, request.tools))
    if request.tools is None:  # tool turns in the history, none offered now
        async for chunk in generate(lowered):
            yield chunk
        return
    parser = ToolCallParser()
    stream = generate(lowered)
    try:
        async for chunk in stream:
            parsed = parser.feed(chunk.text)
            reason = chunk.finish_reason
            if reason is not None:
                rest = parser.close()
                parsed.content += rest.content
                parsed.calls += rest.calls
                if reason == "stop" and parser.calls:
                    reason = "tool_calls"
            if parsed.content or parsed.calls or reason is not None:
                yield GenerationChunk(parsed.content, reason, chunk.usage, tuple(parsed.calls))
    finally:
        await stream.aclose()
