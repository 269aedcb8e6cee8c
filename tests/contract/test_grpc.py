"""The cloud's own SDK over gRPC against a real ``fovea serve`` with ``FOVEA_GRPC_PORT``: endpoint
discovery, ``sdk.models.completions`` run and run_stream, and errors as the SDK's gRPC errors."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import grpc
import pytest

from fovea.modelgen.demo import DemoModelFiles
from tests.contract.grpc_node import Node, new_node

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles) -> Iterator[Node]:
    started = new_node(tmp_path_factory.mktemp("grpc"), demo_model)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def test_text_generation_runs_and_streams_over_grpc(node: Node) -> None:
    model = node.sdk().models.completions("gemma-3-demo").configure(temperature=0, max_tokens=12)
    messages = [{"role": "system", "text": "Answer briefly."}, {"role": "user", "text": "Hi!"}]
    whole = model.run(messages)
    assert whole.alternatives[0].text
    assert whole.usage.input_text_tokens > 0
    assert whole.usage.total_tokens == whole.usage.input_text_tokens + whole.usage.completion_tokens
    partials = list(model.run_stream(messages))
    texts = [p.alternatives[0].text for p in partials]
    assert len(texts) > 1
    assert all(b.startswith(a) for a, b in pairwise(texts))  # accumulated, as the cloud sends
    assert texts[-1] == whole.alternatives[0].text
    assert partials[-1].alternatives[0].status.name in ("FINAL", "TRUNCATED_FINAL")
    assert partials[0].alternatives[0].status.name == "PARTIAL"


def test_errors_reach_the_sdk_as_grpc_statuses(node: Node) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unknown_key:
        node.sdk("fva.nope.nope").models.completions("gemma-3-demo").run("Hi")
    assert unknown_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert unknown_key.value.details() == "Unknown api key"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        node.sdk().models.completions("no-such-model").run("Hi")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as too_long:
        node.sdk().models.completions("gemma-3-demo").configure(max_tokens=100_000).run("Hi")
    assert too_long.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_tokens is too large" in (too_long.value.details() or "")


def test_only_endpoint_discovery_answers_without_a_key(node: Node) -> None:
    from yandex.cloud.ai.foundation_models.v1 import text_common_pb2
    from yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as generation,
    )
    from yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2_grpc as generation_grpc,
    )
    from yandex.cloud.endpoint import api_endpoint_service_pb2 as endpoints
    from yandex.cloud.endpoint import api_endpoint_service_pb2_grpc as endpoints_grpc

    with grpc.insecure_channel(node.grpc) as channel:
        listed = endpoints_grpc.ApiEndpointServiceStub(channel).List(
            endpoints.ListApiEndpointsRequest(), timeout=10
        )
        assert {e.id: e.address for e in listed.endpoints}["ai-foundation-models"] == node.grpc
        request = generation.CompletionRequest(
            model_uri=f"gpt://{node.folder_id}/gemma-3-demo",
            messages=[text_common_pb2.Message(role="user", text="Hi")],
        )
        with pytest.raises(grpc.RpcError) as anonymous:
            list(generation_grpc.TextGenerationServiceStub(channel).Completion(request, timeout=10))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Missing API key" in (anonymous.value.details() or "")
        # Every other service too, whatever it is asked.
        from yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2 as batches
        from yandex.cloud.ai.batch_inference.v1 import (
            batch_inference_service_pb2_grpc as batches_grpc,
        )
        from yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as datasets
        from yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as datasets_grpc
        from yandex.cloud.operation import operation_service_pb2 as operations
        from yandex.cloud.operation import operation_service_pb2_grpc as operations_grpc

        calls = [
            lambda: generation_grpc.TextGenerationAsyncServiceStub(channel).Completion(request),
            lambda: generation_grpc.TokenizerServiceStub(channel).TokenizeCompletion(request),
            lambda: operations_grpc.OperationServiceStub(channel).Get(
                operations.GetOperationRequest(operation_id="fop1")
            ),
            lambda: datasets_grpc.DatasetServiceStub(channel).List(
                datasets.ListDatasetsRequest(folder_id=node.folder_id)
            ),
            lambda: datasets_grpc.DatasetServiceStub(channel).ListUploadFormats(
                datasets.ListUploadFormatsRequest()
            ),
            lambda: batches_grpc.BatchInferenceServiceStub(channel).List(
                batches.ListBatchInferencesRequest(folder_id=node.folder_id)
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
