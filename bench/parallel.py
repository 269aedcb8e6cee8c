"""Concurrent two-image chat requests on the demo model: Fovea's slots against llama.cpp's own
``llama-server`` (built from the same vendored llama.cpp, same files, same threads) and
``llama_cpp.server``.

For each server: (a) one request, streamed: time to first token and tokens/s; (b) 4 and (c) 16
concurrent requests: wall time and total tokens/s. Every request has two images of its own
(no image or prefix cache helps), a different question, greedy, 64 tokens (ignore_eos).

    .venv/bin/python bench/parallel.py [--runs 2] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import (  # noqa: E402
    bench_files,
    free_port,
    serve_catalog,
    start,
    start_llama_cpp_server,
)
from bench.llama_server import ensure_llama_server  # noqa: E402

SLOT_CONTEXT = 2048


@dataclass
class Server:
    name: str
    url: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]


def image(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def body(index: int, tokens: int, stream: bool) -> dict[str, object]:
    return {
        "model": "gemma-3-demo",
        "temperature": 0,
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"Compare these two pictures (question {index})."},
                    {"type": "image_url", "image_url": {"url": image(2 * index)}},
                    {"type": "image_url", "image_url": {"url": image(2 * index + 1)}},
                ],
            }
        ],
    }


async def one_streamed(server: Server, index: int, tokens: int) -> tuple[float, float]:
    """(time to first token, tokens/s after it) of one streamed request."""
    async with httpx.AsyncClient(timeout=600) as client:
        start_s = time.perf_counter()
        first = None
        count = 0
        usage = None
        payload = body(index, tokens, stream=True)
        async with client.stream("POST", server.url, json=payload, headers=server.headers) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    usage = event["usage"]
                choices = event.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    first = first or time.perf_counter()
                    count += 1
        end = time.perf_counter()
    assert first is not None, f"{server.name} streamed no text"
    generated = usage["completion_tokens"] if usage else count
    return first - start_s, (generated - 1) / (end - first)


async def concurrent(server: Server, n: int, tokens: int, offset: int) -> tuple[float, float]:
    """(wall seconds, total completion tokens/s) of ``n`` requests sent at once."""
    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=64)) as client:

        async def one(index: int) -> int:
            reply = await client.post(
                server.url, json=body(index, tokens, stream=False), headers=server.headers
            )
            reply.raise_for_status()
            return int(reply.json()["usage"]["completion_tokens"])

        start_s = time.perf_counter()
        counts = await asyncio.gather(*(one(offset + i) for i in range(n)))
        wall = time.perf_counter() - start_s
    return wall, sum(counts) / wall


@contextmanager
def fovea(model: Path, mmproj: Path, parallel: int, work: Path) -> Iterator[Server]:
    home = work / f"fovea-{parallel}"
    home.mkdir()
    process, base, key = serve_catalog(
        f'[[deployments]]\nname = "gemma-3-demo"\ncontext_length = {SLOT_CONTEXT}\n'
        f"max_output_tokens = 1024\nparallel = {parallel}\n"
        f'[deployments.branches.latest]\nmodel = "{model}"\nmmproj = "{mmproj}"\n',
        home,
        # The folder's quota (10 at once by default) would turn the 16 away with 429.
        {"FOVEA_MAX_CONCURRENT_GENERATIONS_PER_FOLDER": "64"},
    )
    try:
        yield Server(
            f"Fovea parallel={parallel}",
            f"{base}/v1/chat/completions",
            {"Authorization": f"Bearer {key}"},
            process,
        )
    finally:
        process.terminate()
        process.wait()


@contextmanager
def llama_server(model: Path, mmproj: Path, slots: int, work: Path) -> Iterator[Server]:
    port = free_port()
    command = [
        str(ensure_llama_server()),
        "-m", str(model), "--mmproj", str(mmproj), "-t", "2", "-np", str(slots),
        "-c", str(SLOT_CONTEXT * slots), "--jinja", "--host", "127.0.0.1", "--port", str(port),
        "--no-webui",
    ]  # fmt: skip
    process = start(
        command, dict(os.environ), f"http://127.0.0.1:{port}/health", work / f"ls-{slots}.log"
    )
    try:
        yield Server(
            f"llama-server -np {slots}",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {},
            process,
        )
    finally:
        process.terminate()
        process.wait()


@contextmanager
def llama_cpp_python(model: Path, mmproj: Path, work: Path) -> Iterator[Server]:
    process, url = start_llama_cpp_server(model, mmproj, work)
    try:
        yield Server("llama_cpp.server", url, {}, process)
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--only", default="", help="comma-separated server names to run")
    args = parser.parse_args()
    model, mmproj = bench_files()
    ensure_llama_server()
    servers: list[tuple[str, Callable[[Path], object]]] = [
        ("fovea-4", lambda w: fovea(model, mmproj, 4, w)),
        ("fovea-16", lambda w: fovea(model, mmproj, 16, w)),
        ("llama-server-1", lambda w: llama_server(model, mmproj, 1, w)),
        ("llama-server-4", lambda w: llama_server(model, mmproj, 4, w)),
        ("llama-server-16", lambda w: llama_server(model, mmproj, 16, w)),
        ("llama_cpp.server", lambda w: llama_cpp_python(model, mmproj, w)),
    ]
    wanted = set(filter(None, args.only.split(",")))
    rows: dict[str, dict[str, list[float]]] = {}
    for run in range(args.runs):
        for key, make in servers:
            if wanted and key not in wanted:
                continue
            with tempfile.TemporaryDirectory() as tmp, make(Path(tmp)) as server:  # type: ignore[attr-defined]
                asyncio.run(concurrent(server, 1, 4, offset=1000))  # warm up: model, caches
                ttft, tps = asyncio.run(one_streamed(server, 1, args.tokens))
                wall4, tps4 = asyncio.run(concurrent(server, 4, args.tokens, offset=10))
                wall16, tps16 = asyncio.run(concurrent(server, 16, args.tokens, offset=100))
                row = rows.setdefault(server.name, {})
                for name, value in (
                    ("ttft_ms", ttft * 1000), ("tps1", tps), ("wall4", wall4), ("tps4", tps4),
                    ("wall16", wall16), ("tps16", tps16),
                ):  # fmt: skip
                    row.setdefault(name, []).append(value)
                print(f"run {run + 1} {server.name}: " + json.dumps(
                    {k: round(v[-1], 2) for k, v in row.items()}
                ), flush=True)  # fmt: skip
    print("\n| server | TTFT ms (1) | tok/s (1) | 4 at once: s | tok/s | 16 at once: s | tok/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        cells = [cell(row["ttft_ms"], 0)] + [
            cell(row[key]) for key in ("tps1", "wall4", "tps4", "wall16", "tps16")
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def cell(values: list[float], digits: int = 1) -> str:
    """The range of the runs (one value when they agree at this precision)."""
    low, high = min(values), max(values)
    if len(values) == 1 or round(low, digits) == round(high, digits):
        return f"{statistics.mean(values):.{digits}f}"
    return f"{low:.{digits}f}-{high:.{digits}f}"


if __name__ == "__main__":
    main()
