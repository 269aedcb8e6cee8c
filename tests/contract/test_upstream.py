"""The upstream backend against real replicas: two ``llama_cpp.server`` processes serving the
demo model, a plain ``http.server`` that is no chat API at all, and ports nothing listens on.

Fovea runs as a real ``fovea serve`` process and is driven with the official ``openai`` client.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fovea.modelgen.demo import DemoModelFiles, templated_text_model
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import (
    Start,
    free_port,
    llama_cpp_server_command,
    start_process,
    start_processes,
    stop_process,
    wait_for,
    without_host_port,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"

CATALOG = """
[[deployments]]
name = "gemma-3-27b-it"
backend = "upstream"
context_length = 4096
max_images = 4
vision = true
image_size = 224
image_tokens = 16
default_max_tokens = 16
max_output_tokens = 4096

[deployments.upstream]
probe_interval_s = 0.2
probe_timeout_s = 1.0
cooldown_s = 0.5
read_timeout_s = 60

[[deployments.branches.latest.replicas]]
url = "http://127.0.0.1:{port_a}/v1"
model = "gemma-3-demo"

[[deployments.branches.latest.replicas]]
url = "http://127.0.0.1:{port_b}/v1"
model = "gemma-3-demo"

[[deployments]]
name = "gone"
backend = "upstream"
[deployments.upstream]
probe_interval_s = 0.2
[[deployments.branches.latest.replicas]]
url = "http://127.0.0.1:{port_gone}/v1"
model = "gone"

[[deployments]]
name = "not-an-engine"
backend = "upstream"
[deployments.upstream]
probe_interval_s = 30
[[deployments.branches.latest.replicas]]
url = "http://127.0.0.1:{port_static}/v1"
model = "static"
"""


@dataclass
class Replica:
    port: int
    command: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def start_spec(self) -> Start:
        return Start(self.command, f"{self.url}/models", self.log, without_host_port(os.environ))

    def start(self) -> None:
        [self.process] = start_processes([self.start_spec])

    def kill(self) -> None:
        assert self.process is not None
        stop_process(self.process, kill=True)


@dataclass
class Gateway:
    root: str
    folder_id: str
    api_key: str
    replicas: list[Replica]

    def client(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(api_key=self.api_key, base_url=f"{self.root}/v1", **options)

    def replica_states(self, model: str = "gemma-3-27b-it") -> dict[str, dict[str, Any]]:
        health = httpx.get(f"{self.root}/healthz").json()
        engine = next(e for e in health["engines"] if e["model"] == model)
        return {r["url"]: r for r in engine["replicas"]}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("upstream")
    model = templated_text_model(demo_model)
    replicas = []
    for name in ("a", "b"):
        port = free_port()
        command = llama_cpp_server_command(model, demo_model.mmproj, port)
        replicas.append(Replica(port, command, home / f"replica-{name}.log"))
    # A web server that answers probes (a file at /v1/models) but is no chat API.
    static_port = free_port()
    (home / "static" / "v1").mkdir(parents=True)
    (home / "static" / "v1" / "models").write_text('{"data": []}')
    static = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1"],
        cwd=home / "static",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    catalog = home / "models.toml"
    catalog.write_text(
        CATALOG.format(
            port_a=replicas[0].port,
            port_b=replicas[1].port,
            port_gone=free_port(),
            port_static=static_port,
        )
    )
    keys = make_keys(Settings(home=home))
    keys.database.dispose()
    port = free_port()
    env = {
        **os.environ,
        "FOVEA_HOME": str(home),
        "FOVEA_CATALOG": str(catalog),
        "FOVEA_PORT": str(port),
    }
    server = None
    try:
        started = start_processes([replica.start_spec for replica in replicas])
        for replica, process in zip(replicas, started, strict=True):
            replica.process = process
        server = start_process(
            [sys.executable, "-m", "fovea.cli.main", "serve"],
            ready_url=f"http://127.0.0.1:{port}/readyz",
            log=home / "fovea.log",
            env=env,
        )
        yield Gateway(f"http://127.0.0.1:{port}", keys.folder_id, keys.api_key, replicas)
    finally:
        if server is not None:
            stop_process(server)
        for replica in replicas:
            if replica.process is not None:
                stop_process(replica.process, kill=True)
        stop_process(static, kill=True)


def _image(name: str) -> str:
    return "data:image/jpeg;base64," + base64.b64encode((IMAGES / name).read_bytes()).decode()


def _two_images(question: str = "Compare these two pictures") -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": question},
                {"type": "image_url", "image_url": {"url": _image("red-circle.png")}},
                {"type": "image_url", "image_url": {"url": _image("blue-star.png")}},
            ],
        }
    ]


def _long_stream(gateway: Gateway, text: str, max_tokens: int = 3000) -> Any:
    """A streamed generation that runs until stopped (end-of-sequence ignored)."""
    return gateway.client(max_retries=0).chat.completions.create(
        model="gemma-3-27b-it",
        messages=[{"role": "user", "content": text}],
        stream=True,
        max_tokens=max_tokens,
        temperature=0,
        extra_body={"ignore_eos": True},
    )


def _first_text(stream: Any) -> str:
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            return str(chunk.choices[0].delta.content)
    raise AssertionError("the stream ended without text")


def test_reference_client_two_images_through_replicas(gateway: Gateway) -> None:
    response = gateway.client().chat.completions.create(
        model=f"gpt://{gateway.folder_id}/gemma-3-27b-it",
        messages=_two_images(),  # type: ignore[arg-type]
    )
    assert response.choices[0].message.content
    assert response.model == f"gpt://{gateway.folder_id}/gemma-3-27b-it/latest"
    usage = response.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    # The replica counted two 16-token images in its prompt; Fovea names them.
    assert usage.prompt_tokens_details.image_tokens == 32
    assert usage.prompt_tokens > 32
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_passes_through_chunk_by_chunk(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": "List the colours of the rainbow:"}]
    through_fovea = gateway.client().chat.completions.create(
        model="gemma-3-27b-it",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=12,
        temperature=0,
    )
    chunks = list(through_fovea)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    direct = openai.OpenAI(api_key="unused", base_url=gateway.replicas[0].url)
    direct_deltas = [
        c.choices[0].delta.content
        for c in direct.chat.completions.create(
            model="gemma-3-demo",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            max_tokens=12,
            temperature=0,
        )
        if c.choices and c.choices[0].delta.content
    ]
    assert deltas == direct_deltas  # the same pieces, not one buffered block
    assert len(deltas) > 1
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12


def test_load_spreads_over_both_replicas(gateway: Gateway) -> None:
    before = {url: r["served"] for url, r in gateway.replica_states().items()}
    first = _long_stream(gateway, "Tell a story about a red fox.", max_tokens=24)
    _first_text(first)
    # The first stream is in flight on one replica: the second goes to the idle one.
    second = _long_stream(gateway, "Tell a story about a blue whale.", max_tokens=24)
    _first_text(second)
    list(first), list(second)
    after = gateway.replica_states()
    assert all(after[url]["served"] == before[url] + 1 for url in before)


def test_upstream_context_overflow_stays_a_400(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        gateway.client(max_retries=0).chat.completions.create(
            model="gemma-3-27b-it", messages=[{"role": "user", "content": "word " * 6000}]
        )
    # llama_cpp.server words it as a 500; it is still the request's fault, never the replica's.
    assert error.value.code == "context_length_exceeded"
    assert "context window" in error.value.message and "n_ctx" in error.value.message
    assert all(r["state"] == "up" and r["failures"] == 0 for r in gateway.replica_states().values())


def test_a_server_that_is_no_chat_api_is_a_502(gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as error:
        gateway.client(max_retries=0).chat.completions.create(
            model="not-an-engine", messages=[{"role": "user", "content": "hello"}]
        )
    assert error.value.status_code == 502
    assert "answered 501" in str(error.value)


def test_no_reachable_replica_is_a_503_with_retry_after(gateway: Gateway) -> None:
    response = httpx.post(
        f"{gateway.root}/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway.api_key}"},
        json={"model": "gone", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "No healthy replica of model gone" in response.json()["error"]["message"]
    (replica,) = gateway.replica_states("gone").values()
    assert replica["state"] == "down"
    assert "unreachable" in replica["last_error"]
    # The gateway stays ready: its other models serve, and this one answers a clear 503.
    assert httpx.get(f"{gateway.root}/readyz").status_code == 200
    assert httpx.get(f"{gateway.root}/healthz").json()["status"] == "degraded"


def test_kill_a_replica_mid_run_then_bring_it_back(gateway: Gateway) -> None:
    # A long stream on one replica; which one, /healthz says.
    doomed = _long_stream(gateway, "Count slowly from one to a thousand.")
    _first_text(doomed)
    busy = wait_for(
        lambda: [u for u, r in gateway.replica_states().items() if r["in_flight"] == 1],
        "the first stream to be in flight",
    )
    victim = next(r for r in gateway.replicas if r.url == busy[0])
    survivor = next(r for r in gateway.replicas if r is not victim)
    # A shorter stream on the other replica, then requests that queue on either one.
    kept = _long_stream(gateway, "Name three rivers.", max_tokens=40)
    kept_first = _first_text(kept)
    pool = concurrent.futures.ThreadPoolExecutor(4)
    waiting = [
        pool.submit(
            gateway.client(max_retries=0).chat.completions.create,
            model="gemma-3-27b-it",
            messages=[{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}],
            max_tokens=8,
        )
        for i in range(4)
    ]
    wait_for(
        lambda: sum(r["in_flight"] for r in gateway.replica_states().values()) == 6,
        "the queued requests to reach the replicas",
    )
    assert gateway.replica_states()[victim.url]["state"] == "up"  # busy is not down

    victim.kill()

    with pytest.raises(openai.APIError) as broken:
        list(doomed)
    assert "broke" in str(broken.value) or "ended the stream" in str(broken.value)
    assert kept_first + "".join(c.choices[0].delta.content or "" for c in kept if c.choices)
    answers = [future.result(timeout=120) for future in waiting]
    assert all(a.choices[0].message.content is not None for a in answers)
    states = gateway.replica_states()
    assert states[victim.url]["state"] == "down"
    assert states[survivor.url]["state"] == "up"

    victim.start()
    wait_for(
        lambda: gateway.replica_states()[victim.url]["state"] == "up",
        "the restarted replica to be re-admitted",
    )
    served = gateway.replica_states()[victim.url]["served"]
    first = _long_stream(gateway, "Describe a lighthouse.", max_tokens=16)
    _first_text(first)
    second = _long_stream(gateway, "Describe a windmill.", max_tokens=16)
    _first_text(second)
    list(first), list(second)
    assert gateway.replica_states()[victim.url]["served"] == served + 1


def test_models_list_shows_each_replica(gateway: Gateway, tmp_path: Path) -> None:
    home = Path(gateway.replicas[0].log).parent
    env = {
        **os.environ,
        "FOVEA_HOME": str(home),
        "FOVEA_CATALOG": str(home / "models.toml"),
        "COLUMNS": "250",
    }
    shown = subprocess.run(
        [sys.executable, "-m", "fovea.cli.main", "models", "list", "--server", gateway.root],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for replica in gateway.replicas:
        assert f"{replica.url} (gemma-3-demo)" in shown
    assert "up," in shown
    assert "down, 0 in flight" in shown  # the deployment whose replica is gone
