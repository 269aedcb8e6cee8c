"""``TokenizerService`` on the real demo model and real services: the cloud's SDK and a raw stub
against a gRPC server in this process with endpoint discovery, text generation and the tokenizer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
from yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as service,
)
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as service_grpc,
)
from yandex.cloud.endpoint import api_endpoint_service_pb2_grpc as endpoint_grpc
from yandex_ai_studio_sdk import AIStudio
from yandex_ai_studio_sdk.retry import NoRetryPolicy

from fovea.errors import InvalidRequestError
from fovea.grpc.server import Endpoints
from fovea.grpc.text_generation import TextGeneration
from fovea.grpc.tokenizer import Tokenizer
from fovea.modelgen.demo import DemoModelFiles
from fovea.protocol.chat import ChatCompletionRequest
from fovea.services.container import Services, build_services
from fovea.settings import Settings, load_catalog
from tests.conftest import make_keys, png_data_url
from tests.contract.grpc_node import CATALOG
from tests.processes import free_port

pytestmark = pytest.mark.slow

T = TypeVar("T")

MESSAGES = [{"role": "system", "text": "Answer briefly."}, {"role": "user", "text": "Hi there!"}]
# Gemma 3's template puts the system text in the first user turn.
RENDERED = (
    "<bos><start_of_turn>user\nAnswer briefly.\n\nHi there!<end_of_turn>\n<start_of_turn>model\n"
)


@dataclass
class Node:
    """The services and gRPC server, on an event loop of their own in a background thread."""

    loop: asyncio.AbstractEventLoop
    services: Services
    address: str
    folder_id: str
    api_key: str

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def sdk(self, api_key: str | None = None) -> AIStudio:
        return AIStudio(
            folder_id=self.folder_id,
            auth=api_key or self.api_key,
            endpoint=self.address,
            verify=False,
            retry_policy=NoRetryPolicy(),
        )

    @property
    def model_uri(self) -> str:
        return f"gpt://{self.folder_id}/gemma-3-demo/latest"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Api-Key {self.api_key}"),)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles) -> Iterator[Node]:
    home = tmp_path_factory.mktemp("tokenizer")
    (home / "models.toml").write_text(
        CATALOG.format(model=demo_model.model, mmproj=demo_model.mmproj)
    )
    settings = Settings(home=home, catalog=home / "models.toml")
    keys = make_keys(settings)
    keys.database.dispose()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc test loop", daemon=True)
    thread.start()
    address = f"127.0.0.1:{free_port()}"

    async def serve() -> tuple[Services, grpc.aio.Server]:
        services = build_services(settings, load_catalog(settings))
        server = grpc.aio.server()
        endpoint_grpc.add_ApiEndpointServiceServicer_to_server(Endpoints(address), server)
        service_grpc.add_TextGenerationServiceServicer_to_server(TextGeneration(services), server)
        service_grpc.add_TokenizerServiceServicer_to_server(Tokenizer(services), server)
        server.add_insecure_port(address)
        await server.start()
        return services, server

    services, server = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=60)
    try:
        yield Node(loop, services, address, keys.folder_id, keys.api_key)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        asyncio.run_coroutine_threadsafe(services.aclose(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def test_the_sdk_counts_the_tokens_a_completion_of_the_same_messages_takes(node: Node) -> None:
    model = node.sdk().models.completions("gemma-3-demo")
    tokens = model.tokenize(MESSAGES)
    completion = model.configure(temperature=0, max_tokens=4).run(MESSAGES)
    assert len(tokens) == completion.usage.input_text_tokens
    assert "".join(t.text for t in tokens) == RENDERED
    assert (tokens[0].text, tokens[0].special) == ("<bos>", True)
    turns = [t for t in tokens if t.text in ("<start_of_turn>", "<end_of_turn>")]
    assert len(turns) == 3 and all(t.special for t in turns)
    assert not any(t.special for t in tokens if t.text in ("user", "model", "Hi"))


def test_a_raw_stub_gets_the_same_tokens_and_tokenizes_plain_text(node: Node) -> None:
    with grpc.insecure_channel(node.address) as channel:
        stub = service_grpc.TokenizerServiceStub(channel)
        request = service.CompletionRequest(
            model_uri=f"gpt://{node.folder_id}/gemma-3-demo",
            messages=[common.Message(role=m["role"], text=m["text"]) for m in MESSAGES],
        )
        answer = stub.TokenizeCompletion(request, metadata=node.metadata(), timeout=30)
        sdk_tokens = node.sdk().models.completions("gemma-3-demo").tokenize(MESSAGES)
        assert [(t.id, t.text, t.special) for t in answer.tokens] == [
            (t.id, t.text, t.special) for t in sdk_tokens
        ]
        plain = stub.Tokenize(
            service.TokenizeRequest(model_uri=node.model_uri, text="Hello <b>world</b>"),
            metadata=node.metadata(),
            timeout=30,
        )
    # Plain text gets the model's BOS (as a prompt without one would) and no template.
    assert plain.tokens[0].special and plain.tokens[0].text == "<bos>"
    assert "".join(t.text for t in plain.tokens) == "<bos>Hello <b>world</b>"
    assert not any(t.special for t in plain.tokens[1:])


def test_unknown_models_and_keys_are_grpc_errors(node: Node) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        node.sdk().models.completions("no-such-model").tokenize(MESSAGES)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as unknown_key:
        node.sdk("fva.nope.nope").models.completions("gemma-3-demo").tokenize(MESSAGES)
    assert unknown_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(node.address) as channel:
        stub = service_grpc.TokenizerServiceStub(channel)
        request = service.TokenizeRequest(model_uri=node.model_uri, text="Hi")
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.Tokenize(request, timeout=30)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_engine_refuses_to_tokenize_images(node: Node) -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "gemma-3-demo",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": png_data_url((200, 30, 30))}},
                    ],
                }
            ],
        }
    )
    principal = node.run(node.services.access.authenticate(node.api_key))
    with pytest.raises(InvalidRequestError) as refused:
        node.run(node.services.chat.tokenize(principal, body))
    assert refused.value.status_code == 400
    assert refused.value.message.startswith("tokenize counts text only")
