"""Peak memory of the server under a burst of 50 concurrent chat requests, each carrying a 4 MB
image, on the demo model: Fovea (the default admission budget, and a loose one) versus
``llama_cpp.server`` on the same files, in one run.

    .venv/bin/python bench/burst_memory.py [--requests 50]

Memory is the server process's peak resident set (VmHWM) as the kernel reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import (  # noqa: E402
    bench_files,
    start_fovea,
    start_llama_cpp_server,
)


def noise_png(megabytes: float = 4.0) -> bytes:
    """An incompressible PNG of about ``megabytes``."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def burst(
    url: str, model: str, headers: dict[str, str], image: bytes, count: int
) -> tuple[Counter[int], float]:
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    body = {
        "model": model,
        "max_tokens": 1,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }
        ],
    }
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=600, limits=limits, headers=headers) as client:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.post(url, json=body) for _ in range(count)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
    statuses: Counter[int] = Counter(
        r.status_code if isinstance(r, httpx.Response) else -1 for r in responses
    )
    return statuses, elapsed


def measure(
    pid: int, url: str, model: str, headers: dict[str, str], image: bytes, count: int
) -> dict[str, object]:
    before = memory_kib(pid, "VmRSS")
    statuses, elapsed = asyncio.run(burst(url, model, headers, image, count))
    return {
        "before_mib": before / 1024,
        "peak_mib": memory_kib(pid, "VmHWM") / 1024,
        "statuses": dict(statuses),
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    model, mmproj = bench_files()
    image = noise_png()
    results: dict[str, dict[str, object]] = {}
    budgets = {
        "Fovea (admission budget 512 MiB)": 512 * 1024 * 1024,
        "Fovea (admission budget 64 MiB, the default)": None,
    }
    # The per-folder quota (10 concurrent generations, the cloud's default) would answer most of
    # the burst with 429 at once; lift it so every request is admitted and held in memory.
    os.environ["FOVEA_MAX_CONCURRENT_GENERATIONS_PER_FOLDER"] = str(args.requests)
    for name, budget in budgets.items():
        with tempfile.TemporaryDirectory() as tmp:
            if budget is not None:
                os.environ["FOVEA_MAX_INFLIGHT_REQUEST_BYTES"] = str(budget)
                os.environ["FOVEA_ADMISSION_WAIT_S"] = "120"
            process, url, headers = start_fovea(model, mmproj, Path(tmp))
            try:
                results[name] = measure(
                    process.pid, url, "gemma-3-demo", headers, image, args.requests
                )
            finally:
                process.terminate()
                process.wait(30)
                os.environ.pop("FOVEA_MAX_INFLIGHT_REQUEST_BYTES", None)
                os.environ.pop("FOVEA_ADMISSION_WAIT_S", None)
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_llama_cpp_server(model, mmproj, Path(tmp))
        try:
            results["llama_cpp.server"] = measure(process.pid, url, "x", {}, image, args.requests)
        finally:
            process.terminate()
            process.wait(30)
    print(
        f"{args.requests} concurrent requests, one {len(image) / 1e6:.1f} MB PNG each, "
        "max_tokens=1\n"
    )
    print("| server | RSS before MiB | peak RSS MiB | statuses | burst s |")
    print("|---|---:|---:|---|---:|")
    for name, row in results.items():
        print(
            f"| {name} | {row['before_mib']:.0f} | {row['peak_mib']:.0f} | {row['statuses']} | "
            f"{row['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
