"""``POST /v1/embeddings`` with the official ``openai`` client against a real ``fovea serve``.

The server runs the shipped catalog (the demo chat model, and ``text-search-doc`` and
``text-search-query`` on the demo's text GGUF, last-token pooled) plus ``text-search-mrl``: the
same file mean-pooled (as llama.cpp declares nothing for it), with shorter ``dimensions``
allowed.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import openai
import pytest
from yandex_ai_studio_sdk import AIStudio

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import (
    free_port,
    link_demo_model,
    start_fovea,
    stop_process,
    write_catalog,
)

EXTRA_DEPLOYMENT = """
[[deployments]]
name = "text-search-mrl"
kind = "embedding"
context_length = 256
dimensions = [128, 256]
preload = false
[deployments.branches.latest]
model = "{model}"
"""
TEXTS = [
    "How do plants make food from sunlight?",
    "Photosynthesis takes place in chloroplasts.",
    "The cheetah is the fastest land animal.",
]
# The same text in a batch and alone: the vectors agree to this cosine (the decode's kernels
# depend on how many tokens share it), not bit for bit.
SAME = 0.999


@dataclass
class Server:
    base_url: str
    folder_id: str
    api_key: str
    other_folder_id: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=0)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    link_demo_model(home, demo_model)
    catalog = write_catalog(home, EXTRA_DEPLOYMENT.format(model=demo_model.model))
    keys = make_keys(Settings(home=home))
    other = keys.iam.create_folder("other")
    keys.database.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_fovea(home, port, FOVEA_CATALOG=str(catalog), FOVEA_PRELOAD_MODELS="false")
    try:
        yield Server(f"{base}/v1", keys.folder_id, keys.api_key, other.id)
    finally:
        stop_process(process)


def _vectors(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_shapes_normalised_vectors_and_usage(server: Server) -> None:
    # The client asks for base64 unless told otherwise, and decodes it.
    response = server.client().embeddings.create(
        model=f"emb://{server.folder_id}/text-search-doc/latest", input=TEXTS
    )
    assert response.object == "list"
    assert response.model == f"emb://{server.folder_id}/text-search-doc/latest"
    assert [(d.object, d.index) for d in response.data] == [("embedding", i) for i in range(3)]
    vectors = _vectors(response)
    assert vectors.shape == (3, 640)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert response.usage.prompt_tokens > len(TEXTS)
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_a_list_keeps_its_order_and_the_same_text_the_same_vector(server: Server) -> None:
    client = server.client()
    together = _vectors(client.embeddings.create(model="text-search-query", input=TEXTS))
    alone = np.array(
        [_vectors(client.embeddings.create(model="text-search-query", input=t))[0] for t in TEXTS]
    )
    assert np.all(np.sum(together * alone, axis=1) > SAME)
    again = _vectors(client.embeddings.create(model="text-search-query", input=TEXTS))
    assert np.array_equal(again, together)
    # Different texts are different vectors.
    assert float(together[0] @ together[2]) < 0.99


def test_base64_decodes_to_the_same_floats(server: Server) -> None:
    body = {"model": "text-search-doc", "input": TEXTS[:2]}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    url = f"{server.base_url}/embeddings"
    floats = httpx.post(url, json={**body, "encoding_format": "float"}, headers=headers)
    encoded = httpx.post(url, json={**body, "encoding_format": "base64"}, headers=headers)
    as_floats = np.array([d["embedding"] for d in floats.json()["data"]], dtype=np.float32)
    decoded = np.array(
        [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in encoded.json()["data"]]
    )
    assert np.array_equal(decoded, as_floats)


def test_dimensions_are_honoured_where_allowed_and_refused_elsewhere(server: Server) -> None:
    client = server.client()
    full = _vectors(client.embeddings.create(model="text-search-mrl", input=TEXTS[0]))[0]
    short = client.embeddings.create(model="text-search-mrl", input=TEXTS[0], dimensions=128)
    vector = _vectors(short)[0]
    assert vector.shape == (128,)
    np.testing.assert_allclose(vector, full[:128] / np.linalg.norm(full[:128]), atol=1e-6)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="text-search-mrl", input="a", dimensions=100)
    assert "one of 128, 256, 640" in refused.value.message
    with pytest.raises(openai.BadRequestError) as fixed:
        client.embeddings.create(model="text-search-doc", input="a", dimensions=128)
    assert "gives 640 dimensions and cannot shorten" in fixed.value.message


def test_a_chat_model_asked_for_embeddings_is_a_400_that_says_so(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        server.client().embeddings.create(model="gemma-3-demo", input="hello")
    assert "gemma-3-demo is a chat model, not an embedding model" in refused.value.message
    assert refused.value.code == "wrong_model_kind"


def test_an_embedding_model_asked_for_chat_is_a_400(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        server.client().chat.completions.create(
            model="text-search-doc", messages=[{"role": "user", "content": "hello"}]
        )
    assert "text-search-doc is an embedding model" in refused.value.message
    assert "POST /v1/embeddings" in refused.value.message


def test_another_folders_model_is_refused_as_chat_refuses_it(server: Server) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError) as embeddings:
        client.embeddings.create(
            model=f"emb://{server.other_folder_id}/text-search-doc/latest", input="hello"
        )
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(
            model=f"gpt://{server.other_folder_id}/gemma-3-demo/latest",
            messages=[{"role": "user", "content": "hello"}],
        )
    assert embeddings.value.code == chat.value.code == "folder_mismatch"
    assert server.other_folder_id in embeddings.value.message


def test_an_input_over_the_context_is_a_400_with_the_numbers(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        server.client().embeddings.create(model="text-search-mrl", input=["a", "word " * 300])
    assert refused.value.code == "context_length_exceeded"
    assert "maximum context length is 256 tokens" in refused.value.message
    assert "input[1] has 30" in refused.value.message


def test_bad_input_is_a_4xx_never_a_500(server: Server) -> None:
    client = server.client()
    for bad in ([], "", ["a", ""], ["a", 3.5], [[]]):
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="text-search-doc", input=bad)  # type: ignore[arg-type]


def test_models_lists_embedding_models_as_emb_uris(server: Server) -> None:
    models = {m.id: m for m in server.client().models.list().data}
    doc = models[f"emb://{server.folder_id}/text-search-doc/latest"]
    assert doc.model_extra is not None
    assert doc.model_extra["kind"] == "embedding"
    assert doc.model_extra["demo"] is True
    assert "88%" in doc.model_extra["description"]  # its measured quality, in words
    chat = models[f"gpt://{server.folder_id}/gemma-3-demo/latest"]
    assert chat.model_extra is not None and chat.model_extra["kind"] == "chat"


def test_the_clouds_sdk_embeds_and_lists_embedding_models(server: Server) -> None:
    sdk = AIStudio(
        folder_id=server.folder_id,
        auth=server.api_key,
        endpoint=None,
        service_map={"http_completions": f"{server.base_url}/"},
    )
    result = sdk.chat.text_embeddings("text-search-doc").run(TEXTS[0])
    assert len(result.embedding) == 640
    assert result.model == f"emb://{server.folder_id}/text-search-doc/latest"
    assert result.usage is not None and result.usage.prompt_tokens > 1
    listed = {m.uri for m in sdk.chat.text_embeddings.list()}
    assert listed == {
        f"emb://{server.folder_id}/{name}/latest"
        for name in ("text-search-doc", "text-search-query", "text-search-mrl")
    }
