"""Load and soak: many concurrent clients against one folder of a real ``fovea serve`` on the
demo model, mixing well-formed, malformed and oversized chat requests, for a bounded time.

    .venv/bin/python bench/load.py [--clients 200] [--duration 40] [--max-tokens 8]

Each client sends one request after another (a new kind each time, in a fixed rotation) until
the time is up; requests in flight then finish. The folder's concurrency quota (10) refuses most
of them with 429, as designed. Reported: requests by kind and status, connections dropped with
no response, p50/p99 latency per kind, whether every 429 carries ``Retry-After``, and the
server's RSS (before, peak, after the load once idle), open files and threads before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import bench_files, serve_catalog  # noqa: E402

IMAGES = ROOT / "examples" / "images"
MODEL = "gemma-3-demo"
DROPPED = "dropped"  # the connection ended with no response
TIMEOUT = "timeout"  # no response within the client's timeout


@dataclass(frozen=True)
class Kind:
    """A kind of request: its body and the statuses a correct server may answer it with."""

    name: str
    body: bytes
    expected: frozenset[int]
    stream: bool = False


def kinds(max_tokens: int, oversized_mib: int) -> list[Kind]:
    def image(name: str) -> dict[str, object]:
        data = base64.b64encode((IMAGES / name).read_bytes()).decode()
        return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}

    def body(messages: object, **extra: object) -> bytes:
        return json.dumps(
            {"model": MODEL, "max_tokens": max_tokens, "messages": messages, **extra}
        ).encode()

    question = [{"role": "user", "content": "Write a haiku about a lighthouse."}]
    two_images = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these two pictures"},
                image("sunset.png"),
                image("house.png"),
            ],
        }
    ]
    # Random bytes: refused on their size before anything looks inside.
    big = base64.b64encode(os.urandom(oversized_mib * 1024 * 1024)).decode()
    oversized = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{big}"}},
            ],
        }
    ]
    ok = frozenset({200, 429})
    bad = frozenset({400})
    return [
        Kind("text", body(question), ok),
        Kind("two images", body(two_images), ok),
        Kind("streaming", body(question, stream=True), ok, stream=True),
        Kind("null content", body([{"role": "user", "content": None}]), bad),
        Kind("bad JSON", b'{"model": "gemma-3-demo", "messages": [', bad),
        Kind("wrong types", body("hello", temperature="hot"), bad),
        Kind("text", body(question), ok),
        Kind("two images", body(two_images), ok),
        Kind("streaming", body(question, stream=True), ok, stream=True),
        # 413 once read; 429 when the server-wide budget of bodies in flight has no room for it.
        Kind(f"{oversized_mib} MB image", body(oversized), frozenset({413, 429})),
    ]


@dataclass
class Outcome:
    kind: str
    status: int | str
    seconds: float
    retry_after: bool = False
    error: str = ""  # why a connection was dropped


@dataclass
class Sampler:
    """The server's RSS, sampled every ``interval_s`` on a thread, for its peak."""

    process: psutil.Process
    interval_s: float = 0.05
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


async def one(client: httpx.AsyncClient, url: str, kind: Kind) -> Outcome:
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, content=kind.body) as response:
            async for _ in response.aiter_bytes():
                pass
    except httpx.TimeoutException:
        return Outcome(kind.name, TIMEOUT, time.perf_counter() - started)
    except httpx.TransportError as error:
        reason = f"{type(error).__name__}: {error}"
        return Outcome(kind.name, DROPPED, time.perf_counter() - started, error=reason)
    return Outcome(
        kind.name,
        response.status_code,
        time.perf_counter() - started,
        retry_after="retry-after" in response.headers,
    )


async def run_clients(
    url: str, key: str, all_kinds: list[Kind], clients: int, is_over: Callable[[], bool]
) -> list[Outcome]:
    """``clients`` loops, each sending its next kind until ``is_over()``."""
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as client:

        async def loop(index: int) -> None:
            turn = index
            while not is_over():
                outcomes.append(await one(client, url, all_kinds[turn % len(all_kinds)]))
                turn += 1

        await asyncio.gather(*(loop(i) for i in range(clients)))
    return outcomes


@dataclass
class Snapshot:
    rss: int
    fds: int
    threads: int

    @classmethod
    def of(cls, process: psutil.Process) -> Snapshot:
        return cls(process.memory_info().rss, process.num_fds(), process.num_threads())


def settle(process: psutil.Process, seconds: float = 12.0) -> Snapshot:
    """The server once idle: the smallest RSS over ``seconds`` (freed memory is returned to
    the system a little after the last response; idle worker threads exit after 10 s), with
    its files and threads then."""
    lowest = Snapshot.of(process)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = Snapshot.of(process)
        if now.rss <= lowest.rss:
            lowest = now
    return lowest


def warm_up(base: str, key: str, all_kinds: list[Kind]) -> None:
    """One of each kind alone, so the baseline has the model loaded and every path run once."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(timeout=120, headers=headers) as client:
        for kind in all_kinds:
            client.post(f"{base}/v1/chat/completions", content=kind.body)


def report(
    outcomes: list[Outcome],
    all_kinds: list[Kind],
    before: Snapshot,
    peak: int,
    after: Snapshot,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    mib = 1024 * 1024
    statuses = Counter(o.status for o in outcomes)
    refusals = [o for o in outcomes if o.status == 429]
    lines = [
        f"{args.clients} clients, {args.duration:.0f} s (+{elapsed - args.duration:.1f} s for "
        f"the last responses), max_tokens={args.max_tokens}, one folder (concurrency quota 10)",
        "",
        "| kind | requests | statuses | p50 ms | p99 ms |",
        "|---|---:|---|---:|---:|",
    ]
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome)
    for name, group in by_kind.items():
        seconds = sorted(o.seconds for o in group)
        p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
        p50 = statistics.median(seconds)
        lines.append(
            f"| {name} | {len(group)} | {by_status(group)} | {p50 * 1000:.0f} | {p99 * 1000:.0f} |"
        )
    server_errors = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    lines += [
        f"| **all** | {len(outcomes)} | {by_status(outcomes)} | | |",
        "",
        "| measure | value |",
        "|---|---|",
        f"| 5xx responses | {server_errors} |",
        f"| dropped connections (no response) | {statuses[DROPPED]} |",
        f"| client timeouts | {statuses[TIMEOUT]} |",
        f"| 429s with Retry-After | {sum(o.retry_after for o in refusals)} of {len(refusals)} |",
        f"| unexpected statuses | {unexpected(outcomes, all_kinds)} |",
        f"| RSS before / peak / after, MiB | {before.rss / mib:.0f} / {peak / mib:.0f} / "
        f"{after.rss / mib:.0f} |",
        f"| open files before / after | {before.fds} / {after.fds} |",
        f"| threads before / after | {before.threads} / {after.threads} |",
    ]
    return "\n".join(lines)


def by_status(outcomes: list[Outcome]) -> str:
    counts = Counter(o.status for o in outcomes)
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items(), key=str))


def unexpected(outcomes: list[Outcome], all_kinds: list[Kind]) -> str:
    expected = {k.name: k.expected for k in all_kinds}
    wrong = Counter((o.kind, o.status) for o in outcomes if o.status not in expected[o.kind])
    return ", ".join(f"{kind} → {status}: {n}" for (kind, status), n in wrong.items()) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of load")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument(
        "--oversized-mib", type=int, default=30, help="over the server's 20 MiB image limit"
    )
    parser.add_argument("--server-log", type=Path, help="keep the server's log here")
    args = parser.parse_args()
    model, mmproj = bench_files()
    all_kinds = kinds(args.max_tokens, args.oversized_mib)
    catalog = (
        f'[[deployments]]\nname = "{MODEL}"\ncontext_length = 4096\n'
        f'[deployments.branches.latest]\nmodel = "{model}"\nmmproj = "{mmproj}"\n'
    )
    with tempfile.TemporaryDirectory() as tmp:
        server, base, key = serve_catalog(catalog, Path(tmp))
        try:
            process = psutil.Process(server.pid)
            warm_up(base, key, all_kinds)
            before = settle(process)
            sampler = Sampler(process)
            started = time.monotonic()
            end = started + args.duration
            outcomes = asyncio.run(
                run_clients(
                    f"{base}/v1/chat/completions",
                    key,
                    all_kinds,
                    args.clients,
                    lambda: time.monotonic() >= end,
                )
            )
            elapsed = time.monotonic() - started
            peak = sampler.stop()
            after = settle(process)
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(30)
            if args.server_log:
                shutil.copyfile(Path(tmp) / "fovea.log", args.server_log)
    print(report(outcomes, all_kinds, before, peak, after, args, elapsed))
    print(f"\nserver still up after the load: {'yes' if alive else 'NO'}")
    for reason, count in Counter(o.error for o in outcomes if o.error).most_common():
        print(f"dropped ({count}): {reason}")


if __name__ == "__main__":
    main()
