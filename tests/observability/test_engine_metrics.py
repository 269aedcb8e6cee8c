"""The engine families on the real demo model: prefix-cache and embedding-cache counts agree
with the usage the responses reported, and every slot is counted in one state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import Keys, auth, make_keys, png_data_url
from tests.observability.scrape import Scrape

pytestmark = pytest.mark.slow

CATALOG = """
[[deployments]]
name = "gemma-3-demo"
chat_template = "gemma3"
context_length = 1024
max_images = 2
default_max_tokens = 4
parallel = 2
[deployments.branches.latest]
model = "{model}"
mmproj = "{mmproj}"
"""
ENGINE = {"model": "gemma-3-demo", "branch": "latest"}


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[tuple[TestClient, Keys]]:
    home = tmp_path_factory.mktemp("home")
    catalog = Path(home, "models.toml")
    catalog.write_text(CATALOG.format(model=demo_model.model, mmproj=demo_model.mmproj))
    settings = Settings(home=home, catalog=catalog)
    keys = make_keys(settings)
    with TestClient(create_app(settings)) as client:
        yield client, keys
    keys.database.dispose()


def _ask(client: TestClient, keys: Keys, *content: dict[str, object]) -> dict[str, int]:
    body = {
        "model": "gemma-3-demo",
        "messages": [{"role": "user", "content": list(content)}],
        "temperature": 0,
    }
    response = client.post("/v1/chat/completions", json=body, headers=auth(keys.api_key))
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    return {
        "prompt": usage["prompt_tokens"],
        "cached": usage["prompt_tokens_details"]["cached_tokens"],
    }


def test_cache_and_slot_families_match_the_usage(demo: tuple[TestClient, Keys]) -> None:
    client, keys = demo
    question = {"type": "text", "text": "Name three colours of the rainbow, please."}
    image = {"type": "image_url", "image_url": {"url": png_data_url((30, 160, 90))}}
    usages = [
        _ask(client, keys, question),
        _ask(client, keys, question),  # its prefix comes from the KV cache
        _ask(client, keys, {"type": "text", "text": "First:"}, image),
        # Another text before the same image: the prefix differs, the image's encoding is reused.
        _ask(client, keys, {"type": "text", "text": "Second:"}, image),
    ]
    assert usages[1]["cached"] > 0

    scrape = Scrape.parse(client.get("/metrics").text)

    cached = sum(u["cached"] for u in usages)
    processed = sum(u["prompt"] for u in usages) - cached
    assert scrape.value("fovea_engine_prefix_cache_hit_tokens_total", **ENGINE) == cached
    assert scrape.value("fovea_engine_prefix_cache_miss_tokens_total", **ENGINE) == processed
    assert scrape.value("fovea_cached_tokens_total", model="gemma-3-demo") == cached
    assert scrape.value("fovea_engine_image_cache_misses_total", **ENGINE) == 1
    assert scrape.value("fovea_engine_image_cache_hits_total", **ENGINE) == 1
    assert scrape.value("fovea_engine_image_cache_bytes", **ENGINE) > 0
    assert scrape.value("fovea_engine_slots", **ENGINE) == 2  # parallel = 2
    assert scrape.label_values("fovea_engine_slots", "state") == {"idle", "prompt", "generating"}
    assert scrape.value("fovea_engine_queued_requests", **ENGINE) == 0
    assert scrape.value("fovea_engine_state", **ENGINE, state="ready") == 1
    assert scrape.value("fovea_completions_total", model="gemma-3-demo", status="ok") == 4
