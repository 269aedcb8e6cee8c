"""Fovea's serving overhead on the demo model, beside llama-cpp-python called directly and
beside llama-cpp-python's own OpenAI server (``llama_cpp.server``), measured in one run.

Two requests, each streamed with greedy decoding: a text question, and the reference client's
two-image question. For each: time to first token (TTFT) and decode tokens/s (tokens after the
first, over the time after the first). All three run the same files: the 270M GGUF with the
Gemma 3 chat template written into it (so ``llama_cpp.server`` can use it) and the demo mmproj.

    .venv/bin/python bench/chat_overhead.py [--runs 5] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fovea.modelgen.demo import prepare_demo_model, templated_text_model  # noqa: E402

WORK = ROOT / "bench" / ".work"
IMAGES = ROOT / "examples" / "images"


@dataclass
class Sample:
    ttft_s: float
    tokens: int
    decode_s: float

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0


SCENARIOS = ("text", "two images")


def scenario(name: str, take: int) -> list[dict[str, object]]:
    """The request; ``take`` varies the text so no system can answer from a prompt cache."""

    def url(image: str) -> str:
        return "data:image/jpeg;base64," + base64.b64encode((IMAGES / image).read_bytes()).decode()

    if name == "text":
        return [
            {"role": "user", "content": f"Write a short story about lighthouse keeper #{take}."}
        ]
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"Compare these two pictures (take {take})"},
                {"type": "image_url", "image_url": {"url": url("sunset.png")}},
                {"type": "image_url", "image_url": {"url": url("house.png")}},
            ],
        }
    ]


def bench_files() -> tuple[Path, Path]:
    """The benches' model files: the templated 270M GGUF and the demo mmproj (built once)."""
    WORK.mkdir(parents=True, exist_ok=True)
    files = prepare_demo_model(WORK / "models")
    return templated_text_model(files), files.mmproj


def timed(request: Callable[[], Iterator[str]]) -> Sample:
    """Time from sending the request (prompt processing included) to each content token."""
    start = time.perf_counter()
    first = last = None
    tokens = 0
    for _ in request():
        now = time.perf_counter()
        first = first or now
        last = now
        tokens += 1
    if first is None or last is None:
        raise RuntimeError("no tokens came back")
    return Sample(ttft_s=first - start, tokens=tokens, decode_s=last - first)


# -- the three systems ------------------------------------------------------------------------


def direct_runner(
    model: Path, mmproj: Path, max_tokens: int
) -> tuple[Callable[[list[dict[str, object]]], Sample], Callable[[], None]]:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    llm = Llama(
        str(model),
        chat_handler=MTMDChatHandler(clip_model_path=str(mmproj), verbose=False),
        n_ctx=4096,
        n_threads=2,
        flash_attn=True,
        verbose=False,
    )

    def chunks(messages: list[dict[str, object]]) -> Iterator[str]:
        stream = llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            temperature=0.0,
            max_tokens=max_tokens,
        )
        for chunk in stream:
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}  # type: ignore[index]
            if delta.get("content"):  # type: ignore[union-attr]
                yield delta["content"]  # type: ignore[index, typeddict-item]

    def run(messages: list[dict[str, object]]) -> Sample:
        return timed(lambda: chunks(messages))

    return run, llm.close


def http_runner(
    url: str, model: str, max_tokens: int, headers: dict[str, str]
) -> Callable[[list[dict[str, object]]], Sample]:
    client = httpx.Client(timeout=300)

    def chunks(messages: list[dict[str, object]]) -> Iterator[str]:
        body = {
            "model": model,
            "messages": messages,
            "stream": True,
            "temperature": 0.0,
            "max_tokens": max_tokens,
        }
        with client.stream("POST", url, json=body, headers=headers) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("choices") and event["choices"][0]["delta"].get("content"):
                    yield event["choices"][0]["delta"]["content"]

    return lambda messages: timed(lambda: chunks(messages))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    command: list[str], env: dict[str, str], ready_url: str, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:3]} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{command[:3]} never became ready")


def start_fovea(
    model: Path, mmproj: Path, home: Path
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    process, base, key = serve_catalog(
        f'[[deployments]]\nname = "gemma-3-demo"\ncontext_length = 4096\nmax_output_tokens = 4096\n'
        f'[deployments.branches.latest]\nmodel = "{model}"\nmmproj = "{mmproj}"\n',
        home,
    )
    return process, f"{base}/v1/chat/completions", {"Authorization": f"Bearer {key}"}


def serve_catalog(
    catalog: str, home: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """``fovea serve`` on ``catalog`` (TOML) with a fresh key: (process, root URL, key)."""
    from fovea.iam.service import IamService
    from fovea.settings import Settings
    from fovea.store.database import Database

    (home / "models.toml").write_text(catalog)
    database = Database(Settings(home=home).sqlalchemy_url)
    database.migrate()
    _, _, key = IamService(database).bootstrap()
    database.dispose()
    port = free_port()
    env = {
        **os.environ,
        "FOVEA_HOME": str(home),
        "FOVEA_CATALOG": str(home / "models.toml"),
        "FOVEA_PORT": str(port),
        "FOVEA_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    base = f"http://127.0.0.1:{port}"
    process = start(
        [sys.executable, "-m", "fovea.cli.main", "serve"], env, f"{base}/readyz", home / "fovea.log"
    )
    return process, base, key.secret


def start_llama_cpp_server(
    model: Path, mmproj: Path, home: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--clip_model_path",
        str(mmproj),
        "--chat_format",
        "mtmd",
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
        "--flash_attn",
        "true",
        # Otherwise a second request silently truncates a running stream (infra notes).
        "--interrupt_requests",
        "false",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--verbose",
        "false",
    ]
    process = start(
        command,
        # HOST and PORT in the environment would override the flags.
        {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")},
        f"http://127.0.0.1:{port}/v1/models",
        home / "llama_cpp_server.log",
    )
    return process, f"http://127.0.0.1:{port}/v1/chat/completions"


# -- measuring --------------------------------------------------------------------------------


def measure(run: Callable[[list[dict[str, object]]], Sample], runs: int) -> dict[str, list[Sample]]:
    results: dict[str, list[Sample]] = {}
    for name in SCENARIOS:
        run(scenario(name, 0))  # warm-up
        results[name] = [run(scenario(name, take)) for take in range(1, runs + 1)]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    model, mmproj = bench_files()
    results: dict[str, dict[str, list[Sample]]] = {}

    run, close = direct_runner(model, mmproj, args.max_tokens)
    results["llama-cpp-python, direct call"] = measure(run, args.runs)
    close()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        fovea, url, headers = start_fovea(model, mmproj, home)
        try:
            results["Fovea (HTTP, streaming)"] = measure(
                http_runner(url, "gemma-3-demo", args.max_tokens, headers), args.runs
            )
        finally:
            fovea.terminate()
            fovea.wait(30)
        server, url = start_llama_cpp_server(model, mmproj, home)
        try:
            results["llama_cpp.server (HTTP, streaming)"] = measure(
                http_runner(url, "x", args.max_tokens, {}), args.runs
            )
        finally:
            server.terminate()
            server.wait(30)
    print(report(results, args))


def report(results: dict[str, dict[str, list[Sample]]], args: argparse.Namespace) -> str:
    baseline = results["llama-cpp-python, direct call"]
    lines = [
        f"runs={args.runs} (medians), max_tokens={args.max_tokens}, greedy, 2 threads",
        "",
        "| request | system | TTFT ms | decode tok/s | tokens | TTFT vs direct | tok/s vs direct |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in SCENARIOS:
        base_ttft = statistics.median(s.ttft_s for s in baseline[name])
        base_rate = statistics.median(s.tokens_per_s for s in baseline[name])
        for system, by_scenario in results.items():
            samples = by_scenario[name]
            ttft = statistics.median(s.ttft_s for s in samples)
            rate = statistics.median(s.tokens_per_s for s in samples)
            tokens = statistics.median(s.tokens for s in samples)
            lines.append(
                f"| {name} | {system} | {ttft * 1000:.0f} | {rate:.1f} | {tokens:.0f} | "
                f"{(ttft / base_ttft - 1) * 100:+.1f}% | {(rate / base_rate - 1) * 100:+.1f}% |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
