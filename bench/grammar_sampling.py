"""What a grammar costs the embedded engine: tokens a second of one request on the demo model,
plain, in JSON mode (``response_format`` json_object) and making a tool call
(``tool_choice: "required"``), each generating ``--tokens`` tokens at temperature 1.

Before the engine drew first and checked one token (``fovea/engine/llamacpp_sampling.py``),
llama.cpp's grammar sampler checked every one of the 262k candidates at each step.

    .venv/bin/python bench/grammar_sampling.py [--tokens 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from fovea.engine.llamacpp import LlamaCppConfig, LlamaCppEngine
from fovea.engine.types import (
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    TextPart,
    ToolFunction,
    ToolUse,
)
from fovea.modelgen.demo import prepare_demo_model

WEATHER = ToolFunction(
    "get_weather",
    "The weather now in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
    },
)
CASES = {
    "plain": (None, ResponseFormat()),
    "json_object": (None, ResponseFormat(kind="json_object")),
    "tool call": (ToolUse((WEATHER,), choice="required"), ResponseFormat()),
}


async def main(tokens: int, rounds: int) -> None:
    demo = prepare_demo_model(Path(tempfile.gettempdir()) / "fovea-bench-models")
    config = LlamaCppConfig(
        name="demo",
        model_path=demo.model,
        mmproj_path=demo.mmproj,
        context_length=2048,
        chat_template="gemma3",
    )
    engine = LlamaCppEngine(config)
    await engine.start()
    question = (Message("user", (TextPart("What is the weather like in Paris this week?"),)),)
    for round_ in range(rounds):
        for label, (tools, response_format) in CASES.items():
            request = GenerationRequest(
                f"{label}-{round_}",
                question,
                SamplingParams(temperature=1.0, seed=round_, max_tokens=tokens, ignore_eos=True),
                response_format=response_format,
                tools=tools,
            )
            started, generated = time.perf_counter(), 0
            async for chunk in engine.generate(request):
                if chunk.usage is not None:
                    generated = chunk.usage.completion_tokens
            rate = generated / (time.perf_counter() - started)
            print(f"round {round_ + 1}  {label:12} {generated:4} tokens  {rate:5.1f} tokens/s")
    await engine.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.rounds))
