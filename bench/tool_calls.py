"""Tool calls on the demo model over HTTP: Fovea against llama.cpp's own ``llama-server``
(``--jinja``, built from the same vendored llama.cpp, same GGUF, same threads, one slot each),
under two chat templates: the GGUF's own Gemma 3 template, which knows no tools, and a ChatML
template that renders tools in Hermes's ``<tool_call>`` format (the one tests/engine/test_tools.py
uses; Qwen's templates write calls the same way), given to both servers.

Each server answers the same requests one at a time: ``tool_choice: "required"`` with two
functions, temperature 1, seeds 0..N-1, at most 200 tokens; and, for scale, the same question
without tools (``ignore_eos``, 100 tokens). Reported: seconds a request, completion tokens a
second, and how many answers are calls whose arguments parse and match their function's schema.

    .venv/bin/python bench/tool_calls.py [--requests 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import bench_files, free_port, serve_catalog, start  # noqa: E402
from bench.llama_server import ensure_llama_server  # noqa: E402
from bench.parallel import Server, cell  # noqa: E402
from tests.engine.test_tools import HERMES_TEMPLATE  # noqa: E402

CONTEXT = 2048

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather now in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 40},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "maxLength": 40}},
                "required": ["query"],
            },
        },
    },
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
QUESTION = [{"role": "user", "content": "What is the weather like in Paris this week?"}]


def ask(client: httpx.Client, server: Server, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    reply = client.post(server.url, json={"model": "gemma-3-demo", **body}, headers=server.headers)
    elapsed = time.perf_counter() - started
    reply.raise_for_status()
    return elapsed, reply.json()


def valid_calls(answer: dict[str, Any]) -> bool:
    """Whether the answer is tool calls whose arguments parse and match their schema."""
    calls = answer["choices"][0]["message"].get("tool_calls") or []
    if not calls:
        return False
    try:
        for call in calls:
            function = call["function"]
            jsonschema.validate(json.loads(function["arguments"]), SCHEMAS[function["name"]])
    except (ValueError, KeyError, jsonschema.ValidationError):
        return False
    return True


def measure(server: Server, requests: int) -> dict[str, float]:
    with httpx.Client(timeout=600) as client:
        ask(client, server, {"messages": QUESTION, "max_tokens": 8})  # warm up
        tool_seconds, tool_tokens, valid = 0.0, 0, 0
        for seed in range(requests):
            elapsed, answer = ask(
                client,
                server,
                {
                    "messages": QUESTION,
                    "tools": TOOLS,
                    "tool_choice": "required",
                    "parallel_tool_calls": False,
                    "temperature": 1.0,
                    "seed": seed,
                    "max_tokens": 200,
                },
            )
            tool_seconds += elapsed
            tool_tokens += answer["usage"]["completion_tokens"]
            valid += valid_calls(answer)
        plain_seconds, plain_tokens = 0.0, 0
        for seed in range(2):
            elapsed, answer = ask(
                client,
                server,
                {
                    "messages": QUESTION,
                    "temperature": 1.0,
                    "seed": seed,
                    "max_tokens": 100,
                    "ignore_eos": True,
                },
            )
            plain_seconds += elapsed
            plain_tokens += answer["usage"]["completion_tokens"]
    return {
        "s_per_call": tool_seconds / requests,
        "tokens_per_call": tool_tokens / requests,
        "call_tps": tool_tokens / tool_seconds,
        "valid": valid,
        "plain_tps": plain_tokens / plain_seconds,
    }


@contextmanager
def fovea(model: Path, mmproj: Path, template: str | None, work: Path) -> Iterator[Server]:
    home = work / "fovea"
    home.mkdir()
    chat_template = f"chat_template = '''{template}'''\n" if template else ""
    process, base, key = serve_catalog(
        f'[[deployments]]\nname = "gemma-3-demo"\ncontext_length = {CONTEXT}\n{chat_template}'
        f'[deployments.branches.latest]\nmodel = "{model}"\nmmproj = "{mmproj}"\n',
        home,
    )
    try:
        yield Server(
            "Fovea", f"{base}/v1/chat/completions", {"Authorization": f"Bearer {key}"}, process
        )
    finally:
        process.terminate()
        process.wait()


@contextmanager
def llama_server(model: Path, mmproj: Path, template: str | None, work: Path) -> Iterator[Server]:
    port = free_port()
    command = [
        str(ensure_llama_server()),
        "-m", str(model), "--mmproj", str(mmproj), "-t", "2", "-np", "1", "-c", str(CONTEXT),
        "--jinja", "--host", "127.0.0.1", "--port", str(port), "--no-webui",
    ]  # fmt: skip
    if template:
        (work / "template.jinja").write_text(template)
        command += ["--chat-template-file", str(work / "template.jinja")]
    process = start(
        command, dict(os.environ), f"http://127.0.0.1:{port}/health", work / "llama-server.log"
    )
    try:
        yield Server("llama-server", f"http://127.0.0.1:{port}/v1/chat/completions", {}, process)
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model, mmproj = bench_files()
    templates = {"Gemma 3 (no tools)": None, "Hermes ChatML": HERMES_TEMPLATE}
    servers: dict[str, Callable[[str | None, Path], AbstractContextManager[Server]]] = {
        "Fovea": lambda template, work: fovea(model, mmproj, template, work),
        "llama-server": lambda template, work: llama_server(model, mmproj, template, work),
    }
    rows: dict[str, dict[str, list[float]]] = {}
    for round_ in range(args.rounds):
        for label, template in templates.items():
            for name, make in servers.items():
                with tempfile.TemporaryDirectory() as tmp, make(template, Path(tmp)) as server:
                    result = measure(server, args.requests)
                row = rows.setdefault(f"{name}, {label}", {})
                for key, value in result.items():
                    row.setdefault(key, []).append(value)
                shown = {k: round(v, 2) for k, v in result.items()}
                print(f"round {round_ + 1} {name}, {label}: {json.dumps(shown)}", flush=True)
    print(
        "\n| server, template | s a call | tokens a call | tokens/s, calls | valid calls "
        "| tokens/s, no tools |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        valid = f"{int(min(row['valid']))}-{int(max(row['valid']))} of {args.requests}"
        if min(row["valid"]) == max(row["valid"]):
            valid = f"{int(row['valid'][0])} of {args.requests}"
        cells = [
            cell(row["s_per_call"], 2),
            cell(row["tokens_per_call"]),
            cell(row["call_tps"]),
            valid,
            cell(row["plain_tps"]),
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
