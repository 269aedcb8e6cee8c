"""The chat API through the real app (IAM, media, SQLite) on a scripted engine."""

from __future__ import annotations

import json
from functools import partial

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.iam.types import Principal
from fovea.settings import Settings
from tests.conftest import Keys, auth, make_keys, png_data_url
from tests.fakes import IMAGE_TOKENS, ScriptedEngine


def _chat(client: TestClient, key: str, **body: object) -> httpx.Response:
    body.setdefault("model", "gemma-3-demo")
    body.setdefault("messages", [{"role": "user", "content": "hello there"}])
    return client.post("/v1/chat/completions", json=body, headers=auth(key))


def test_completion_has_openai_shape_and_usage(client: TestClient, keys: Keys) -> None:
    response = _chat(
        client,
        keys.api_key,
        model=f"gpt://{keys.folder_id}/gemma-3-demo/",
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image_url", "image_url": {"url": png_data_url((255, 0, 0))}},
                    {"type": "image_url", "image_url": {"url": png_data_url((0, 0, 255))}},
                ],
            },
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == f"gpt://{keys.folder_id}/gemma-3-demo/latest"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("echo: compare images: ")
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens_details"]["image_tokens"] == 2 * IMAGE_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.headers["x-request-id"]
    assert response.headers["x-server-trace-id"]


def test_images_reach_the_engine_decoded(client: TestClient, keys: Keys) -> None:
    _chat(
        client,
        keys.api_key,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": png_data_url((9, 9, 9), (30, 20))}}
                ],
            }
        ],
    )
    engine = ScriptedEngine.instances[0]
    image = engine.requests[-1].messages[0].parts[0].image  # type: ignore[union-attr]
    assert (image.width, image.height) == (30, 20)
    assert image.rgb[:3] == bytes([9, 9, 9])


def test_streaming_chunks_end_with_usage_and_done(client: TestClient, keys: Keys) -> None:
    with client.stream(
        "POST",
        "/v1/chat/completions",
        headers=auth(keys.api_key),
        json={
            "model": "gemma-3-demo",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: one two three"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 4


def test_max_tokens_stops_with_length(client: TestClient, keys: Keys) -> None:
    body = _chat(client, keys.api_key, max_completion_tokens=2).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_unknown_fields_are_ignored(client: TestClient, keys: Keys) -> None:
    response = _chat(client, keys.api_key, logit_bias={"1": 2}, some_future_field=True)
    assert response.status_code == 200


def test_parameters_reach_the_engine(client: TestClient, keys: Keys) -> None:
    _chat(
        client,
        keys.api_key,
        temperature=0,
        top_p=0.5,
        seed=7,
        stop="x",
        max_tokens=5,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "n", "schema": {"type": "object"}},
        },
    )
    request = ScriptedEngine.instances[0].requests[-1]
    assert request.sampling.temperature == 0
    assert request.sampling.top_p == 0.5
    assert request.sampling.seed == 7
    assert request.sampling.stop == ("x",)
    assert request.sampling.max_tokens == 5
    assert request.response_format.kind == "json_schema"
    assert request.response_format.schema == {"type": "object"}


@pytest.mark.parametrize(
    ("model", "sent", "sampled"),
    [
        ("gemma-3-demo", {}, 0.3),  # the deployment's default_temperature
        ("gemma-3-demo", {"temperature": 1.0}, 1.0),
        ("gemma-3-demo", {"temperature": 0}, 0.0),
        ("text-only", {}, 1.0),  # none set: OpenAI's default
    ],
)
def test_a_request_without_temperature_samples_at_the_deployments_default(
    client: TestClient, keys: Keys, model: str, sent: dict[str, float], sampled: float
) -> None:
    response = _chat(
        client, keys.api_key, model=model, messages=[{"role": "user", "content": "hi"}], **sent
    )
    assert response.status_code == 200, response.text
    [engine] = [e for e in ScriptedEngine.instances if e.name == model and e.requests]
    assert engine.requests[-1].sampling.temperature == sampled


def test_branch_in_uri_selects_its_engine(client: TestClient, keys: Keys) -> None:
    response = _chat(client, keys.api_key, model=f"gpt://{keys.folder_id}/gemma-3-demo/rc")
    assert response.status_code == 200
    assert response.json()["model"].endswith("/gemma-3-demo/rc")


def test_models_lists_folder_uris(client: TestClient, keys: Keys) -> None:
    response = client.get("/v1/models", headers=auth(keys.api_key))
    assert response.status_code == 200
    ids = {m["id"] for m in response.json()["data"]}
    assert f"gpt://{keys.folder_id}/gemma-3-demo/latest" in ids
    assert f"gpt://{keys.folder_id}/gemma-3-demo/rc" in ids
    assert response.json()["object"] == "list"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"


def test_folder_concurrency_quota_gives_429(client: TestClient, keys: Keys) -> None:
    quotas = client.app.state.services.quotas
    other_key = Principal("other-key", keys.service_account_id, keys.folder_id, frozenset())
    for _ in range(quotas.quota(keys.folder_id).concurrent):  # the folder's default limit
        client.portal.call(partial(quotas.admit, other_key, keys.folder_id, interactive=True))
    response = _chat(client, keys.api_key)
    assert response.status_code == 429
    assert response.headers["retry-after"]
    assert "generations in flight" in response.json()["error"]["message"]


def test_generation_over_the_time_limit_gets_504(fake_settings: Settings) -> None:
    settings = fake_settings.model_copy(update={"generation_timeout_s": 0.3})
    app = create_app(settings, engine_factory=ScriptedEngine)
    with TestClient(app) as slow_client:
        keys = make_keys(settings)
        for engine in ScriptedEngine.instances:
            engine.delay_s = 0.1
        words = " ".join(["w"] * 20)
        body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": words}]}
        response = slow_client.post("/v1/chat/completions", json=body, headers=auth(keys.api_key))
        assert response.status_code == 504
        assert "took longer" in response.json()["error"]["message"]
        streamed = slow_client.post(
            "/v1/chat/completions", json={**body, "stream": True}, headers=auth(keys.api_key)
        )
        events = [line for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert "took longer" in events[-1]  # one error event ends the stream, no [DONE]
        keys.database.dispose()


def test_images_are_decoded_to_the_size_the_model_needs(client: TestClient, keys: Keys) -> None:
    big = png_data_url((10, 20, 30), (3000, 2000))

    def sent(detail: str) -> tuple[int, int, str]:
        part = {"type": "image_url", "image_url": {"url": big, "detail": detail}}
        _chat(client, keys.api_key, messages=[{"role": "user", "content": [part]}])
        image = ScriptedEngine.instances[0].requests[-1].messages[0].parts[0].image  # type: ignore[union-attr]
        return image.width, image.height, image.detail

    # The scripted engine reports Capabilities' defaults: an 896 px encoder.
    assert sent("auto") == (1344, 896, "auto")  # shorter side down to 896, aspect kept
    assert sent("high")[2] == "high"  # the engine adds crops for high detail
