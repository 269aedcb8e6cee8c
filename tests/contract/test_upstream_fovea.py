"""Another Fovea node as an upstream replica (a regional node, one box per GPU): node A
forwards to node B with a service key of B's, and a client leaving A stops B's engine."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import free_port, start_fovea, stop_process, wait_for

pytestmark = pytest.mark.slow

IMAGES = Path(__file__).resolve().parents[2] / "examples" / "images"

NODE_B = """
[[deployments]]
name = "gemma-3-demo"
chat_template = "gemma3"
context_length = 4096
max_output_tokens = 4096
[deployments.branches.latest]
model = "{model}"
mmproj = "{mmproj}"
"""

NODE_A = """
[[deployments]]
name = "gemma-3-27b-it"
backend = "upstream"
vision = true
image_size = 224
image_tokens = 16
max_output_tokens = 4096
[deployments.upstream]
probe_interval_s = 0.5
[[deployments.branches.latest.replicas]]
url = "{node_b}/v1"
model = "gemma-3-demo"
api_key_env = "FOVEA_NODE_B_KEY"
"""


@dataclass
class Nodes:
    a: str
    b: str
    a_key: str


def _serve(home: Path, catalog: str, extra_env: dict[str, str]) -> tuple[str, object, str]:
    (home / "models.toml").write_text(catalog)
    keys = make_keys(Settings(home=home))
    keys.database.dispose()
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    catalog = str(home / "models.toml")
    process = start_fovea(home, port, log=home / "fovea.log", FOVEA_CATALOG=catalog, **extra_env)
    return root, process, keys.api_key


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles) -> Iterator[Nodes]:
    b_root, b_process, b_key = _serve(
        tmp_path_factory.mktemp("node-b"),
        NODE_B.format(model=demo_model.model, mmproj=demo_model.mmproj),
        {},
    )
    try:
        a_root, a_process, a_key = _serve(
            tmp_path_factory.mktemp("node-a"),
            NODE_A.format(node_b=b_root),
            {"FOVEA_NODE_B_KEY": b_key},
        )
        try:
            yield Nodes(a_root, b_root, a_key)
        finally:
            stop_process(a_process)  # type: ignore[arg-type]
    finally:
        stop_process(b_process)  # type: ignore[arg-type]


def _image(name: str) -> str:
    return "data:image/png;base64," + base64.b64encode((IMAGES / name).read_bytes()).decode()


def test_a_request_reaches_node_b_with_node_bs_key(nodes: Nodes) -> None:
    client = openai.OpenAI(api_key=nodes.a_key, base_url=f"{nodes.a}/v1")
    response = client.chat.completions.create(
        model="gemma-3-27b-it",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these two pictures"},
                    {"type": "image_url", "image_url": {"url": _image("red-circle.png")}},
                    {"type": "image_url", "image_url": {"url": _image("blue-star.png")}},
                ],
            }
        ],
        max_tokens=8,
    )
    assert response.choices[0].message.content
    assert response.usage is not None and response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.image_tokens == 32
    health = httpx.get(f"{nodes.a}/healthz").json()
    (replica,) = health["engines"][0]["replicas"]
    assert replica["state"] == "up" and replica["served"] == 1
    b_health = httpx.get(f"{nodes.b}/healthz").json()
    assert b_health["engines"][0]["completed"] == 1  # B's own engine did the work


def test_a_client_leaving_node_a_stops_node_bs_engine(nodes: Nodes) -> None:
    def b_cancelled() -> int:
        return int(httpx.get(f"{nodes.b}/healthz").json()["engines"][0]["cancelled"])

    before = b_cancelled()
    client = openai.OpenAI(api_key=nodes.a_key, base_url=f"{nodes.a}/v1")
    stream = client.chat.completions.create(
        model="gemma-3-27b-it",
        messages=[{"role": "user", "content": "Count to a million:"}],
        stream=True,
        max_tokens=4000,
        extra_body={"ignore_eos": True},
    )
    pieces = 0
    for chunk in stream:
        pieces += bool(chunk.choices and chunk.choices[0].delta.content)
        if pieces == 3:
            break
    stream.close()
    wait_for(lambda: b_cancelled() == before + 1, "node B to drop the generation")
