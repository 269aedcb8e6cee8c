"""Batch throughput and what a running batch does to interactive latency, on the demo model.

1. 200 two-image chat requests as one batch (Files + Batches API) versus the same 200 requests
   sent one by one through the chat API by a client: lines per minute.
2. Interactive latency (p50 and p95 of 20 short chat requests sent one after another) with no
   batch running, and while a 200-line batch runs.

    .venv/bin/python bench/batch_throughput.py [--lines 200]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import bench_files, start_fovea  # noqa: E402
from fovea.settings import Settings  # noqa: E402

IMAGES = ROOT / "examples" / "images"


def body(index: int) -> dict[str, object]:
    def url(name: str) -> str:
        return "data:image/png;base64," + base64.b64encode((IMAGES / name).read_bytes()).decode()

    return {
        "model": "gemma-3-demo",
        "temperature": 0,
        "max_tokens": 16,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"Compare these two pictures (question {index})"},
                    {"type": "image_url", "image_url": {"url": url("sunset.png")}},
                    {"type": "image_url", "image_url": {"url": url("house.png")}},
                ],
            }
        ],
    }


def upload(api: openai.OpenAI, lines: int) -> str:
    rows = [
        {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": body(i)}
        for i in range(lines)
    ]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    return api.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch").id


def start_batch(api: openai.OpenAI, file_id: str) -> str:
    return api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    ).id


def wait(api: openai.OpenAI, batch_id: str) -> None:
    while api.batches.retrieve(batch_id).status not in ("completed", "failed", "cancelled"):
        time.sleep(0.2)


def interactive_latencies(api: openai.OpenAI, count: int = 20) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        api.chat.completions.create(
            model="gemma-3-demo",
            messages=[{"role": "user", "content": f"Quick question {i}: say hi"}],
            max_tokens=8,
            temperature=0,
        )
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()
    model, mmproj = bench_files()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        process, chat_url, headers = start_fovea(model, mmproj, home)
        try:
            grant_editor(home)
            base = chat_url.removesuffix("/chat/completions")
            api = openai.OpenAI(api_key=headers["Authorization"][7:], base_url=base, max_retries=0)
            report(args.lines, *measure(api, args.lines))
        finally:
            process.terminate()
            process.wait(30)


def grant_editor(home: Path) -> None:
    from fovea.iam.service import IamService
    from fovea.store.database import Database

    database = Database(Settings(home=home).sqlalchemy_url)
    iam = IamService(database)
    for account in iam.list_service_accounts():
        iam.grant_role(account.folder_id, account.id, "ai.editor")
    database.dispose()


def measure(api: openai.OpenAI, lines: int) -> tuple[float, float, list[float], list[float]]:
    file_id = upload(api, lines)
    started = time.perf_counter()
    wait(api, start_batch(api, file_id))
    batch_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(lines):
        api.chat.completions.create(**body(i))  # type: ignore[call-overload]
    one_by_one_s = time.perf_counter() - started
    quiet = interactive_latencies(api)
    batch_id = start_batch(api, file_id)
    time.sleep(2)  # the batch is under way
    busy = interactive_latencies(api)
    wait(api, batch_id)
    return batch_s, one_by_one_s, quiet, busy


def report(
    lines: int, batch_s: float, one_by_one_s: float, quiet: list[float], busy: list[float]
) -> None:
    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    print(f"{lines} two-image requests (max_tokens 16, greedy), demo model, 2 threads\n")
    print("| how | seconds | lines/min |")
    print("|---|---:|---:|")
    print(f"| one batch (Files + Batches API) | {batch_s:.1f} | {lines / batch_s * 60:.0f} |")
    print(
        f"| one by one through the chat API | {one_by_one_s:.1f} | "
        f"{lines / one_by_one_s * 60:.0f} |"
    )
    print("\n| interactive requests (20, max_tokens 8) | p50 ms | p95 ms |")
    print("|---|---:|---:|")
    print(f"| no batch running | {pct(quiet, 50):.0f} | {pct(quiet, 95):.0f} |")
    print(f"| while a {lines}-line batch runs | {pct(busy, 50):.0f} | {pct(busy, 95):.0f} |")


if __name__ == "__main__":
    main()
