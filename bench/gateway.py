"""The gateway's own overhead: requests/s and added latency in front of an upstream that answers
at once, for Fovea and for LiteLLM's proxy, measured in one run.

Every system sits in front of the same instant upstream (``bench/instant_upstream.py``), which is
also measured on its own ("direct"). Requests: a ~111-byte text chat request and a ~500 KB request
carrying one 1600x1200 JPEG as a base64 data URL, both non-streaming, plus a streaming text row at
one concurrency. The load is closed-loop: C connections, each sending its next request when the
previous one answered, for ``--duration`` seconds after a ``--warmup``. Added latency is a
percentile through the gateway minus the same percentile sent straight to the upstream at the same
concurrency. The load generator is ``wrk`` (``apt-get install wrk``) when it is on the PATH, else a
raw-socket asyncio client. Gateways run one at a time, each stopped before the next starts.

    .venv/bin/python bench/gateway.py [--systems upstream,fovea,litellm] [--concurrency 1,8,32]
        [--duration 10] [--requests text,image,stream] [--litellm-workers 1]
        [--json results.json] [--logs DIR]

LiteLLM runs from its own virtual environment (its pins clash with Fovea's), with httptools so
that its uvicorn parses HTTP as Fovea's does (``uvicorn[standard]``). 1.108.6 is the newest
LiteLLM whose pinned ``litellm-proxy-extras`` the package index has:

    python3 -m venv .bench/litellm-venv
    .bench/litellm-venv/bin/pip install 'litellm[proxy]==1.108.6' httptools -c constraints.txt
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
LITELLM = ROOT / ".bench" / "litellm-venv" / "bin" / "litellm"
MODEL = "gemma-3-demo"
ANSWER = "Hello!"  # what the instant upstream always says
TEXT_BODY_BYTES = 111
IMAGE_BODY_BYTES = 500_000


# -- requests ---------------------------------------------------------------------------------


def text_body() -> bytes:
    """A chat request of about 111 bytes (the question is padded to that size)."""

    def encode(question: str) -> bytes:
        body = {"model": MODEL, "messages": [{"role": "user", "content": question}]}
        return json.dumps({**body, "max_tokens": 8}, separators=(",", ":")).encode()

    question = "Say hello in one word."
    padding = max(0, TEXT_BODY_BYTES - len(encode(question)))
    return encode(question[:-1] + " " * padding + ".")


def bench_jpeg(target_bytes: int) -> bytes:
    """A 1600x1200 gradient-and-noise JPEG of about ``target_bytes`` (built once, cached)."""
    cached = WORK / f"gateway-{target_bytes}.jpg"
    if cached.exists():
        return cached.read_bytes()
    size = (1600, 1200)
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 48)
    picture = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_180)))
    low, high, best = 5, 95, b""
    while low <= high:  # the highest quality that stays under the target
        quality = (low + high) // 2
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=quality)
        if out.tell() <= target_bytes:
            best, low = out.getvalue(), quality + 1
        else:
            high = quality - 1
    WORK.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(best)
    return best


def image_body() -> bytes:
    """A chat request of about 500 KB: one JPEG as a base64 data URL (base64 adds a third)."""
    jpeg = bench_jpeg(IMAGE_BODY_BYTES * 3 // 4 - 300)
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    return json.dumps(body, separators=(",", ":")).encode()


def stream_body() -> bytes:
    """The text request, streamed, with a usage chunk asked for."""
    body = json.loads(text_body())
    body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body, separators=(",", ":")).encode()


BODIES = {"text": text_body, "image": image_body, "stream": stream_body}


# -- processes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    system: str
    url: str  # the chat completions URL
    headers: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes(contextlib.ExitStack):
    """Starts servers in their own process groups; stops every one of them on exit."""

    def start(self, command: list[str], env: dict[str, str], ready_url: str, log: Path) -> None:
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.callback(stop, process)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    wait_until_idle(process.pid, deadline)
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{command[:4]} not ready after 180 s:\n{log.read_text()[-3000:]}")


def wait_until_idle(group: int, deadline: float) -> None:
    """Wait until a process group uses under 10% of a CPU: one worker of several answers the
    readiness check while the others are still importing, which would eat the CPUs measured."""
    used = group_cpu_s(group)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = group_cpu_s(group)
        if now - used < 0.1:
            return
        used = now


def group_cpu_s(group: int) -> float:
    """CPU seconds used so far by the live processes of a process group (Linux ``/proc``)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == group:  # pgrp; fields[11:13] are utime and stime
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (workers included), SIGKILL what is left after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", **extra}


def start_upstream(processes: Processes, home: Path) -> str:
    """The instant upstream; returns its base URL (ending in /v1)."""
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "instant_upstream.py"), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    processes.start(command, server_env(), f"{base}/health", home / "upstream.log")
    return f"{base}/v1"


def start_fovea(processes: Processes, home: Path, upstream: str, workers: int) -> Target:
    fovea_home = home / "fovea"
    fovea_home.mkdir()
    catalog = fovea_home / "models.toml"
    catalog.write_text(
        f'[[deployments]]\nname = "{MODEL}"\nbackend = "upstream"\ncontext_length = 4096\n'
        "max_images = 8\nvision = true\nimage_size = 896\nimage_tokens = 256\n"
        "max_output_tokens = 1024\n\n[deployments.upstream]\nprobe_interval_s = 5.0\n\n"
        f'[[deployments.branches.latest.replicas]]\nurl = "{upstream}"\nmodel = "{MODEL}"\n'
    )
    port = free_port()
    env = server_env(
        FOVEA_HOME=str(fovea_home),
        FOVEA_CATALOG=str(catalog),
        FOVEA_PORT=str(port),
        FOVEA_LOG_LEVEL="warning",
        # Quotas stay on, above the highest concurrency measured (the default is 10 a folder).
        FOVEA_MAX_CONCURRENT_GENERATIONS_PER_FOLDER="64",
    )
    cli = [sys.executable, "-m", "fovea.cli.main"]
    made = subprocess.run([*cli, "iam", "bootstrap", "--json"], env=env, capture_output=True)
    if made.returncode != 0:
        raise RuntimeError(f"fovea iam bootstrap failed:\n{made.stderr.decode()[-3000:]}")
    key = json.loads(made.stdout)["api_key"]
    base = f"http://127.0.0.1:{port}"
    processes.start([*cli, "serve"], env, f"{base}/readyz", home / "fovea.log")
    name = "Fovea" if workers == 1 else f"Fovea ({workers} workers)"
    return Target(name, f"{base}/v1/chat/completions", {"Authorization": f"Bearer {key}"})


def start_litellm(processes: Processes, home: Path, upstream: str, workers: int) -> Target:
    """LiteLLM's proxy, no database, quiet; the master key makes it check auth as Fovea does."""
    master_key = "sk-bench-" + secrets.token_hex(8)
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": upstream,
                    "api_key": "dummy",
                },
            }
        ],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"telemetry": False},
    }
    path = home / f"litellm-{workers}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = free_port()
    command = [str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", str(workers)]
    env = server_env(
        LITELLM_LOG="ERROR",  # no per-request logging
        LITELLM_MODE="PRODUCTION",  # no .env loading
        LITELLM_TELEMETRY_DISABLED="true",
        LITELLM_LOCAL_MODEL_COST_MAP="true",  # no download of the cost map at start
    )
    base = f"http://127.0.0.1:{port}"
    log = home / f"litellm-{workers}.log"
    processes.start(command, env, f"{base}/health/liveliness", log)
    name = f"LiteLLM ({workers} worker{'s' if workers > 1 else ''})"
    return Target(name, f"{base}/v1/chat/completions", {"Authorization": f"Bearer {master_key}"})


# -- load -------------------------------------------------------------------------------------


@dataclass
class Measurement:
    num_requests: int
    num_errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.num_requests / self.seconds


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
local file = assert(io.open({body_path}, "rb"))
wrk.body = file:read("*a")
file:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(target: Target, body_path: Path, concurrency: int, seconds: int) -> Measurement:
    headers = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.headers.items()
    )
    script = body_path.with_suffix(".lua")
    script.write_text(WRK_SCRIPT.format(headers=headers, body_path=json.dumps(str(body_path))))
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s"]
    done = subprocess.run(
        [*command, "-s", str(script), target.url], capture_output=True, text=True, check=True
    )
    found = re.search(r"WRK_RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", done.stdout)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    requests, micros, errors, p50, p99 = (int(g) for g in found.groups())
    return Measurement(requests, errors, micros / 1e6, p50 / 1000, p99 / 1000)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns its status and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    length = re.search(r"\r\ncontent-length: *(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
    elif "transfer-encoding: chunked" in head:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readline() != b"\r\n":  # trailers
            pass
    return status, "connection: close" not in head


async def closed_loop(
    target: Target, body: bytes, concurrency: int, warmup: float, seconds: float
) -> Measurement:
    url = httpx.URL(target.url)
    head = f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.netloc.decode()}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    payload = head.encode() + body
    start = time.perf_counter()
    measure_from, until = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(url.host, url.port)
        while (sent := time.perf_counter()) < until:
            writer.write(payload)
            status, keep_alive = await read_response(reader)
            if sent >= measure_from:
                latencies.append(time.perf_counter() - sent)
                errors += status >= 400
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if len(latencies) < 2:
        raise RuntimeError(f"{target.system}: fewer than two requests in {seconds} s")
    cuts = statistics.quantiles(latencies, n=100)
    return Measurement(len(latencies), errors, seconds, cuts[49] * 1000, cuts[98] * 1000)


def measure(target: Target, body: Path, concurrency: int, args: argparse.Namespace) -> Measurement:
    if args.client == "wrk":
        run_wrk(target, body, concurrency, args.warmup)
        return run_wrk(target, body, concurrency, args.duration)
    data = body.read_bytes()
    return asyncio.run(closed_loop(target, data, concurrency, args.warmup, args.duration))


def check(target: Target, body: bytes, is_stream: bool) -> None:
    """One request first: a system that answers wrongly must not be timed."""
    response = httpx.post(
        target.url,
        content=body,
        headers={**target.headers, "Content-Type": "application/json"},
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{target.system}: {response.status_code} {response.text[:500]}")
    if is_stream:
        ok = ANSWER in response.text and response.text.rstrip().endswith("data: [DONE]")
    else:
        ok = response.json()["choices"][0]["message"]["content"] == ANSWER
    if not ok:
        raise RuntimeError(f"{target.system}: unexpected answer {response.text[:500]}")


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    request: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    num_requests: int
    num_errors: int
    p50_added_ms: float | None = None  # versus the upstream sent straight, same request and C
    p99_added_ms: float | None = None


DIRECT = "upstream (direct)"


def bench_target(
    target: Target, bodies: dict[str, Path], args: argparse.Namespace, failures: list[str]
) -> Iterator[Row]:
    for name, path in bodies.items():
        try:
            check(target, path.read_bytes(), is_stream=name == "stream")
        except (RuntimeError, httpx.HTTPError, ValueError, KeyError) as exc:
            failures.append(f"{target.system}, {name}: {exc}")
            print(f"skipped: {failures[-1]}", file=sys.stderr)
            continue
        levels = [args.stream_concurrency] if name == "stream" else args.concurrency
        for concurrency in levels:
            result = measure(target, path, concurrency, args)
            print(
                f"{target.system}, {name}, c={concurrency}: {result.requests_per_s:.0f} req/s, "
                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms",
                file=sys.stderr,
            )
            yield Row(
                target.system,
                name,
                concurrency,
                result.requests_per_s,
                result.p50_ms,
                result.p99_ms,
                result.num_requests,
                result.num_errors,
            )


def run(args: argparse.Namespace, bodies: dict[str, bytes]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, Processes() as shared:
        home = Path(tmp)
        paths = {}
        for name, data in bodies.items():
            paths[name] = home / f"{name}.json"
            paths[name].write_bytes(data)
        try:
            upstream = start_upstream(shared, home)
            if "upstream" in args.systems:
                direct = Target(DIRECT, f"{upstream}/chat/completions", {})
                rows += bench_target(direct, paths, args, failures)
            for start, workers in gateways(args):
                with Processes() as processes:  # one gateway at a time: they share the CPUs
                    try:
                        target = start(processes, home, upstream, workers)
                    except RuntimeError as exc:
                        failures.append(f"{start.__name__} ({workers} workers): {exc}")
                        print(f"failed: {failures[-1]}", file=sys.stderr)
                        continue
                    rows += bench_target(target, paths, args, failures)
        finally:
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in home.glob("*.log"):
                    shutil.copy(log, args.logs / log.name)
    add_overhead(rows)
    return rows, failures


Start = Callable[[Processes, Path, str, int], Target]


def gateways(args: argparse.Namespace) -> list[tuple[Start, int]]:
    found: list[tuple[Start, int]] = []
    if "fovea" in args.systems:
        found.append((start_fovea, 1))
    if "litellm" in args.systems:
        found += [(start_litellm, workers) for workers in args.litellm_workers]
    return found


def add_overhead(rows: list[Row]) -> None:
    """Fill in each gateway row's added latency from the direct row of its request and C."""
    direct = {(r.request, r.concurrency): r for r in rows if r.system == DIRECT}
    for row in rows:
        base = direct.get((row.request, row.concurrency))
        if base is not None and row.system != DIRECT:
            row.p50_added_ms = row.p50_ms - base.p50_ms
            row.p99_added_ms = row.p99_ms - base.p99_ms


def versions(args: argparse.Namespace) -> dict[str, str]:
    found = {"python": sys.version.split()[0], "cpus": str(os.cpu_count())}
    if args.client == "wrk":
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        found["wrk"] = (done.stdout or done.stderr).split()[1]
    if "litellm" in args.systems:
        python = LITELLM.parent / "python"
        code = "import importlib.metadata as m; print(m.version('litellm'))"
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
        found["litellm"] = done.stdout.strip() or "not installed"
    return found


def report(
    rows: list[Row], args: argparse.Namespace, sizes: dict[str, int], found: dict[str, str]
) -> str:
    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:+.2f}"

    bodies = ", ".join(f"{name} {size:,} B" for name, size in sizes.items())
    lines = [
        f"{args.duration} s per cell after {args.warmup} s warm-up, closed loop ({args.client}); "
        f"bodies: {bodies}; {', '.join(f'{k} {v}' for k, v in found.items())}",
        "",
        "| system | request | concurrency | requests/s | p50 ms | p99 ms | p50 added ms "
        "| p99 added ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.system} | {r.request} | {r.concurrency} | {r.requests_per_s:.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {ms(r.p50_added_ms)} | {ms(r.p99_added_ms)} | "
            f"{r.num_errors} |"
        )
    return "\n".join(lines)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def names(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        picked = [part for part in text.split(",") if part]
        unknown = set(picked) - set(choices)
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; choose from {choices}")
        return picked

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--systems", type=names(("upstream", "fovea", "litellm")), default="upstream,fovea,litellm"
    )
    parser.add_argument("--requests", type=names(tuple(BODIES)), default="text,image,stream")
    parser.add_argument("--concurrency", type=numbers, default="1,8,32")
    parser.add_argument("--stream-concurrency", type=int, default=8)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per cell")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each cell")
    parser.add_argument(
        "--litellm-workers", type=numbers, default="1", help="Fovea runs one process"
    )
    parser.add_argument(
        "--client", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    if "litellm" in args.systems and not LITELLM.exists():
        parser.error(f"{LITELLM} is missing: see the install line at the top of this file")
    bodies = {name: BODIES[name]() for name in args.requests}
    sizes = {name: len(data) for name, data in bodies.items()}
    print(f"request bodies: {sizes}", file=sys.stderr)
    rows, failures = run(args, bodies)
    found = versions(args)
    print(report(rows, args, sizes, found))
    for failure in failures:
        print(f"\nnot measured: {failure}")
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        payload = {
            "settings": settings,
            "versions": found,
            "body_bytes": sizes,
            "rows": [asdict(row) for row in rows],
            "failures": failures,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
