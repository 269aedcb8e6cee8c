"""``POST /v1/embeddings`` through the app, on a scripted embedder: the wire shapes, what is
refused (bad input, the wrong kind of model, ``dimensions``, another folder), how it is
counted against quotas and in usage, and batches of embeddings lines. The real model's vectors
are tested in tests/engine and tests/contract.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fovea.app import create_app
from fovea.cli.main import app as cli
from fovea.settings import Settings
from fovea.store.quotas import Quota, QuotaStore
from tests.batch_files import batch_rows, finished_batch, upload_lines
from tests.conftest import EMBEDDING_DEPLOYMENT, FAKE_CATALOG, Keys, auth, make_keys
from tests.fakes import ScriptedEmbedder, scripted_engine

CATALOG = (
    FAKE_CATALOG
    + EMBEDDING_DEPLOYMENT
    + """
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


def _usage(client: TestClient, keys: Keys, kind: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(
        f"/v1/organization/usage/{kind}",
        params={"start_time": int(time.time()) - 3600, **params},
        headers=auth(keys.api_key),
    )
    assert response.status_code == 200, response.text
    return [result for bucket in response.json()["data"] for result in bucket["results"]]


def test_embeddings_have_their_own_usage_report(
    client: TestClient, keys: Keys, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.viewer")
    first = _embed(client, keys, input=["one two", "three"]).json()["usage"]
    second = _embed(client, keys, model="matryoshka", input="four five six").json()["usage"]
    _error(_embed(client, keys, input="word " * 80))  # over the context: a failed request
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "gemma-3-demo", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth(keys.api_key),
    ).json()["usage"]

    by_model = {r["model"]: r for r in _usage(client, keys, "embeddings", group_by=["model"])}
    assert by_model["text-search-doc"]["object"] == "organization.usage.embeddings.result"
    assert by_model["text-search-doc"]["input_tokens"] == first["prompt_tokens"]
    assert by_model["text-search-doc"]["num_model_requests"] == 2
    assert by_model["text-search-doc"]["num_failed_requests"] == 1
    assert by_model["matryoshka"]["input_tokens"] == second["prompt_tokens"]
    assert set(by_model) == {"text-search-doc", "matryoshka"}
    # The completions report counts the chat completion and nothing else.
    completions = _usage(client, keys, "completions", group_by=["model"])
    assert [(r["model"], r["input_tokens"]) for r in completions] == [
        ("gemma-3-demo", chat["prompt_tokens"])
    ]
    # The operator's CLI sums both kinds, and tells them apart when asked.
    monkeypatch.setenv("FOVEA_HOME", str(settings.home))
    result = CliRunner().invoke(cli, ["usage", "--by", "kind", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["kind"]: row for row in json.loads(result.output)}
    assert rows["embedding"]["requests"] == 3
    assert rows["embedding"]["prompt_tokens"] == first["prompt_tokens"] + second["prompt_tokens"]
    assert rows["completion"]["requests"] == 1


def test_batch_lines_may_target_embeddings(client: TestClient, keys: Keys) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    line = {"method": "POST", "url": "/v1/embeddings"}
    lines = [
        {**line, "custom_id": "one", "body": {"model": "text-search-doc", "input": "first text"}},
        {
            **line,
            "custom_id": "two",
            "body": {"input": ["a b", "c"], "encoding_format": "base64"},
        },
        {**line, "custom_id": "bad", "body": {"input": "x", "dimensions": 3}},
    ]
    created = client.post(
        "/v1/batches",
        json={
            "input_file_id": upload_lines(client, keys.api_key, lines),
            "endpoint": "/v1/embeddings",
            "completion_window": "24h",
            "model": "matryoshka",  # for the lines that name none
        },
        headers=auth(keys.api_key),
    )
    assert created.status_code == 200, created.text
    batch = finished_batch(client, keys.api_key, created.json()["id"])
    assert batch["request_counts"] == {"total": 3, "completed": 2, "failed": 1}

    output = batch_rows(client, keys.api_key, batch["output_file_id"])
    one = output["one"]["response"]["body"]
    direct = _vectors(_embed(client, keys, input="first text"))
    np.testing.assert_allclose(one["data"][0]["embedding"], direct[0], rtol=1e-6)
    assert one["model"] == f"emb://{keys.folder_id}/text-search-doc/latest"
    two = output["two"]["response"]["body"]
    assert two["model"] == f"emb://{keys.folder_id}/matryoshka/latest"
    assert [item["index"] for item in two["data"]] == [0, 1]
    decoded = np.frombuffer(base64.b64decode(two["data"][1]["embedding"]), dtype="<f4")
    assert decoded.shape == (ScriptedEmbedder.DIMENSIONS,)
    error = batch_rows(client, keys.api_key, batch["error_file_id"])["bad"]["response"]
    assert error["status_code"] == 400
    assert "dimensions may be one of 2, 4" in error["body"]["error"]["message"]

    usage = _usage(client, keys, "embeddings", group_by=["batch"])
    batch_usage = next(r for r in usage if r["batch"])
    assert batch_usage["num_model_requests"] == 2
    assert (
        batch_usage["input_tokens"] == one["usage"]["prompt_tokens"] + two["usage"]["prompt_tokens"]
    )
