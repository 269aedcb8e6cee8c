"""Time to first token of turn 2 of an image conversation versus turn 1, with a full-size random
Gemma 3 vision tower (SigLIP-So400m at 896 px: the real one's compute), through Fovea and through
``llama_cpp.server`` on the same files, in one run.

Turn 1: a system prompt, a question and a photo. Turn 2: the same, plus the model's answer and a
follow-up question (the OpenAI API resends the whole history, image included). A third request
starts a new conversation about the same photo under another system prompt: the KV prefix cannot
help there, the embedding cache can.

    .venv/bin/python bench/image_cache.py [--max-tokens 16]

The full-size projector (f16, ~850 MB) is generated once into bench/.work/, never stored.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import (  # noqa: E402
    WORK,
    bench_files,
    start_fovea,
    start_llama_cpp_server,
)
from fovea.modelgen.mmproj import FULL_SIZE_SHAPE, write_random_mmproj  # noqa: E402

PHOTO = ROOT / "examples" / "images" / "sunset.png"


def full_size_mmproj() -> Path:
    target = WORK / "mmproj-gemma-3-full-size-random.gguf"
    if not target.exists():
        started = time.perf_counter()
        write_random_mmproj(target, FULL_SIZE_SHAPE, seed=1, std=0.05)
        print(f"wrote {target.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return target


def conversation(system: str, answer: str | None) -> list[dict[str, object]]:
    url = "data:image/png;base64," + base64.b64encode(PHOTO.read_bytes()).decode()
    messages: list[dict[str, object]] = [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this photo?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        },
    ]
    if answer is not None:
        messages += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And what colours does it have?"},
        ]
    return messages


def ask(
    client: httpx.Client, url: str, model: str, messages: list[dict[str, object]], max_tokens: int
) -> tuple[float, str, dict[str, object]]:
    """TTFT in seconds, the answer, and the usage when the server reports it."""
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    usage: dict[str, object] = {}
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            usage = event.get("usage") or usage
            if event.get("choices") and event["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                parts.append(event["choices"][0]["delta"]["content"])
    return (first or time.perf_counter()) - started, "".join(parts), usage


def three_turns(
    client: httpx.Client, url: str, model: str, max_tokens: int
) -> list[tuple[str, float, dict[str, object]]]:
    rows = []
    ttft, answer, usage = ask(
        client, url, model, conversation("You are a careful observer.", None), max_tokens
    )
    rows.append(("turn 1 (new image)", ttft, usage))
    ttft, _, usage = ask(
        client, url, model, conversation("You are a careful observer.", answer), max_tokens
    )
    rows.append(("turn 2 (same image, history resent)", ttft, usage))
    ttft, _, usage = ask(client, url, model, conversation("Answer in one word.", None), max_tokens)
    rows.append(("new conversation, same image", ttft, usage))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    model, _ = bench_files()
    mmproj = full_size_mmproj()
    results: dict[str, list[tuple[str, float, dict[str, object]]]] = {}
    with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=600) as client:
        home = Path(tmp)
        fovea, url, headers = start_fovea(model, mmproj, home)
        try:
            client.headers.update(headers)
            results["Fovea"] = three_turns(client, url, "gemma-3-demo", args.max_tokens)
        finally:
            fovea.terminate()
            fovea.wait(30)
        client.headers.clear()
        server, url = start_llama_cpp_server(model, mmproj, home)
        try:
            results["llama_cpp.server"] = three_turns(client, url, "x", args.max_tokens)
        finally:
            server.terminate()
            server.wait(30)
    print(report(results, args.max_tokens))


def report(results: dict[str, list[tuple[str, float, dict[str, object]]]], max_tokens: int) -> str:
    lines = [
        "full-size random Gemma 3 mmproj (896 px, 27 blocks, 256 tokens an image), "
        f"270M text model, greedy, max_tokens={max_tokens}, 2 threads",
        "",
        "| system | request | TTFT s | vs turn 1 | prompt tokens | cached tokens |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for system, rows in results.items():
        turn1 = rows[0][1]
        for name, ttft, usage in rows:
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens", "n/a") if isinstance(details, dict) else "n/a"
            lines.append(
                f"| {system} | {name} | {ttft:.2f} | {ttft / turn1 * 100:.1f}% | "
                f"{usage.get('prompt_tokens', 'n/a')} | {cached} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
