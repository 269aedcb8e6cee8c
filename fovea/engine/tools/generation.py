"""An in-process engine's generation with tools: the calls read back out of the text (the
prompt, generic or the template's own, is the runtime's to render)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from fovea.engine.tools.parser import ToolCallParser
from fovea.engine.types import GenerationChunk, GenerationRequest

Generate = Callable[[GenerationRequest], AsyncGenerator[GenerationChunk, None]]


async def generate_with_tools(
    generate: Generate, request: GenerationRequest
) -> AsyncGenerator[GenerationChunk, None]:
    """``generate(request)`` with the text read back as content and calls when the request
    offers tools."""
    if request.tools is None:
        async for chunk in generate(request):
            yield chunk
        return
    parser = ToolCallParser()
    stream = generate(request)
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
