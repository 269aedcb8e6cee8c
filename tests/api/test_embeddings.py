"""``POST /v1/embeddings`` through the app, on a scripted embedder: the wire shapes, what is
refused (bad input, the wrong kind of model, ``dimensions``, another folder) and how it is
counted against quotas. The real model's vectors are tested in tests/engine and tests/contract.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.settings import Settings
from fovea.store.quotas import Quota, QuotaStore
from tests.conftest import FAKE_CATALOG, Keys, auth, make_keys
from tests.fakes import ScriptedEmbedder, scripted_engine

CATALOG = (
    FAKE_CATALOG
    + """
[[deployments]]
name = "text-search-doc"
kind = "embedding"
context_length = 64
[deployments.branches.latest]
model = "fake/embed.gguf"

[[deployments]]
name = "matryoshka"
kind = "embedding"
dimensions = [2, 4, 64]
[deployments.branches.latest]
model = "fake/embed.gguf"
"""
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG)
    return Settings(home=tmp_path, catalog=catalog, auth_cache_ttl_s=0)


@pytest.fixture
def keys(settings: Settings) -> Iterator[Keys]:
    made = make_keys(settings)
    yield made
    made.database.dispose()


@pytest.fixture
def client(settings: Settings, keys: Keys) -> Iterator[TestClient]:
    ScriptedEmbedder.instances.clear()
    app = create_app(settings, engine_factory=scripted_engine)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _embed(client: TestClient, keys: Keys, **body: Any) -> httpx.Response:
    return client.post(
        "/v1/embeddings",
        json={"model": "text-search-doc", **body},
        headers=auth(keys.api_key),
    )


def _vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def _error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_list_keeps_its_order_and_shape(client: TestClient, keys: Keys) -> None:
    response = _embed(client, keys, input=["one", "two words", "one"])
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == f"emb://{keys.folder_id}/text-search-doc/latest"
    assert [(d["object"], d["index"]) for d in body["data"]] == [
        ("embedding", 0),
        ("embedding", 1),
        ("embedding", 2),
    ]
    vectors = _vectors(response)
    assert vectors.shape == (3, ScriptedEmbedder.DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(vectors[0], vectors[2])
    assert body["usage"] == {"prompt_tokens": 2 + 3 + 2, "total_tokens": 7}
    alone = _vectors(_embed(client, keys, input="two words"))
    assert np.array_equal(alone[0], vectors[1])


def test_base64_is_the_same_floats_little_endian(client: TestClient, keys: Keys) -> None:
    floats = _vectors(_embed(client, keys, input=["a", "b"]))
    response = _embed(client, keys, input=["a", "b"], encoding_format="base64")
    encoded = [item["embedding"] for item in response.json()["data"]]
    decoded = np.array([np.frombuffer(base64.b64decode(e), dtype="<f4") for e in encoded])
    assert np.array_equal(decoded, floats)


def test_token_arrays_are_fed_as_given(client: TestClient, keys: Keys) -> None:
    one = _embed(client, keys, input=[5, 6, 7])
    assert one.json()["usage"]["prompt_tokens"] == 3
    many = _embed(client, keys, input=[[5, 6, 7], [8]])
    assert many.json()["usage"]["prompt_tokens"] == 4
    assert ScriptedEmbedder.instances[0].requests[-1] == ([5, 6, 7], [8])


def test_dimensions_only_where_the_catalog_allows_them(client: TestClient, keys: Keys) -> None:
    full = _vectors(_embed(client, keys, model="matryoshka", input="a text"))[0]
    short = _vectors(_embed(client, keys, model="matryoshka", input="a text", dimensions=4))[0]
    assert short.shape == (4,)
    np.testing.assert_allclose(short, full[:4] / np.linalg.norm(full[:4]), rtol=1e-6)
    native = _embed(client, keys, model="matryoshka", input="a", dimensions=8)
    assert _vectors(native).shape == (1, 8)
    # 64 is listed but larger than the model's 8: not offered.
    error = _error(_embed(client, keys, model="matryoshka", input="a", dimensions=64))
    assert error["param"] == "dimensions"
    assert "one of 2, 4, 8" in error["message"]
    error = _error(_embed(client, keys, input="a", dimensions=4))
    assert "gives 8 dimensions and cannot shorten" in error["message"]
    assert _error(_embed(client, keys, input="a", dimensions=0))["param"] == "dimensions"


def test_a_chat_model_asked_for_embeddings_is_a_400_that_says_so(
    client: TestClient, keys: Keys
) -> None:
    error = _error(_embed(client, keys, model="gemma-3-demo", input="a"))
    assert error["code"] == "wrong_model_kind"
    assert error["param"] == "model"
    assert "gemma-3-demo is a chat model, not an embedding model" in error["message"]
    assert "text-search-doc" in error["message"]  # what the client can use instead


def test_an_embedding_model_asked_for_chat_is_a_400(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={"model": "text-search-doc", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth(keys.api_key),
    )
    error = _error(response)
    assert error["code"] == "wrong_model_kind"
    assert "POST /v1/embeddings" in error["message"]
    assert not any(e.requests for e in ScriptedEmbedder.instances)


def test_a_uri_scheme_names_the_kind(client: TestClient, keys: Keys) -> None:
    uri = f"emb://{keys.folder_id}/text-search-doc/latest"
    assert _embed(client, keys, model=uri, input="a").status_code == 200
    error = _error(_embed(client, keys, model=f"gpt://{keys.folder_id}/text-search-doc", input="a"))
    assert error["code"] == "invalid_model_uri"
    assert "emb://<folder_id>/text-search-doc/latest" in error["message"]


def test_another_folder_is_refused_as_chat_refuses_it(client: TestClient, keys: Keys) -> None:
    other = keys.iam.create_folder("other")
    embedding = _embed(client, keys, model=f"emb://{other.id}/text-search-doc", input="a")
    chat = client.post(
        "/v1/chat/completions",
        json={
            "model": f"gpt://{other.id}/gemma-3-demo",
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers=auth(keys.api_key),
    )
    assert embedding.status_code == chat.status_code == 400
    assert _error(embedding)["code"] == _error(chat)["code"] == "folder_mismatch"


def test_a_key_needs_a_role_on_the_folder(client: TestClient, keys: Keys) -> None:
    assert _error(client.post("/v1/embeddings", json={"model": "x", "input": "a"}), 401)
    account = keys.iam.create_service_account(keys.folder_id, "viewer")
    keys.iam.grant_role(keys.folder_id, account.id, "ai.viewer")
    viewer = keys.iam.create_key(account.id).secret
    response = client.post(
        "/v1/embeddings", json={"model": "text-search-doc", "input": "a"}, headers=auth(viewer)
    )
    assert "Permission denied" in _error(response, 403)["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"input": []}, "empty list"),
        ({"input": ""}, "input is an empty string"),
        ({"input": ["a", ""]}, "input[1] is an empty string"),
        ({"input": ["a", 1]}, "mixes"),
        ({"input": ["a", None]}, "input[1] must be a string"),
        ({"input": [{"text": "a"}]}, "input[0] must be a string"),
        ({"input": [[]]}, "input[0] must be a non-empty list of token ids"),
        ({"input": [[1, "a"]]}, "input[0] must be a non-empty list of token ids"),
        ({"input": [-1]}, "not -1"),
        ({"input": [True]}, "input[0] must be a string"),
        ({"input": 42}, "input must be a string"),
        ({"input": ["a"] * 2049}, "at most 2048"),
        ({}, "input"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "model": "no-such-model"}, "does not exist"),
        ({"input": "a", "model": "emb://"}, "Failed to parse model URI"),
    ],
)
def test_bad_input_is_an_openai_shaped_4xx(
    client: TestClient, keys: Keys, body: dict[str, Any], words: str
) -> None:
    response = _embed(client, keys, **body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]


def test_an_input_over_the_context_is_a_400_with_the_numbers(
    client: TestClient, keys: Keys
) -> None:
    error = _error(_embed(client, keys, input=["short", "word " * 70]))
    assert error["code"] == "context_length_exceeded"
    assert "input[1] has 71 tokens, over 64" in error["message"]


def test_models_lists_embedding_deployments_with_their_kind(client: TestClient, keys: Keys) -> None:
    models = client.get("/v1/models", headers=auth(keys.api_key)).json()["data"]
    kinds = {m["id"]: m["kind"] for m in models}
    assert kinds[f"emb://{keys.folder_id}/text-search-doc/latest"] == "embedding"
    assert kinds[f"gpt://{keys.folder_id}/gemma-3-demo/latest"] == "chat"
    embedding = next(m for m in models if m["kind"] == "embedding")
    assert embedding["vision"] is False and embedding["max_images"] == 0


@pytest.fixture
def quota(keys: Keys) -> None:
    """Ten tokens a minute for the folder, set before the server starts (read at start)."""
    QuotaStore(keys.database).set(Quota(keys.folder_id, tokens_per_minute=10))


def test_input_tokens_count_against_the_folders_quota(
    quota: None, client: TestClient, keys: Keys
) -> None:
    first = _embed(client, keys, input=["one two three four five six seven eight nine ten"])
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "10"
    refused = _error(_embed(client, keys, input="a"), 429)
    assert "10 tokens per minute" in refused["message"]


def test_health_shows_embedding_engines(client: TestClient, keys: Keys) -> None:
    assert _embed(client, keys, input="a").status_code == 200
    engines = {e["model"]: e for e in client.get("/healthz").json()["engines"]}
    assert engines["text-search-doc"]["state"] == "ready"
