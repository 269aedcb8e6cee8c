"""The gRPC server: the cloud SDK's services on ``FOVEA_GRPC_PORT``, plaintext or TLS.

``ApiEndpointService.List`` (no auth) tells the SDK where every service id lives, so a user
passes only ``endpoint="host:port"`` (plus ``service_map`` for ``http_completions``, which the SDK
always needs for a host that is not the cloud).
"""

from __future__ import annotations

import grpc
from yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2_grpc as batch_grpc
from yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as dataset_grpc
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as generation_grpc,
)
from yandex.cloud.endpoint import api_endpoint_pb2, api_endpoint_service_pb2
from yandex.cloud.endpoint import api_endpoint_service_pb2_grpc as endpoint_grpc
from yandex.cloud.operation import operation_service_pb2_grpc as operation_grpc

from fovea.errors import NotFoundError
from fovea.grpc.batches import BatchInference, TextGenerationBatch
from fovea.grpc.datasets import Datasets
from fovea.grpc.operations import Operations, TextGenerationAsync
from fovea.grpc.status import abort
from fovea.grpc.text_generation import TextGeneration
from fovea.grpc.tokenizer import Tokenizer
from fovea.services.container import Services

# The service ids the SDK looks up; all are served here.
SERVICE_IDS = ("ai-foundation-models", "operation", "endpoint")


class Endpoints(endpoint_grpc.ApiEndpointServiceServicer):
    def __init__(self, address: str) -> None:
        self._endpoints = [api_endpoint_pb2.ApiEndpoint(id=i, address=address) for i in SERVICE_IDS]

    async def List(
        self,
        request: api_endpoint_service_pb2.ListApiEndpointsRequest,
        context: grpc.aio.ServicerContext,
    ) -> api_endpoint_service_pb2.ListApiEndpointsResponse:
        return api_endpoint_service_pb2.ListApiEndpointsResponse(endpoints=self._endpoints)

    async def Get(
        self,
        request: api_endpoint_service_pb2.GetApiEndpointRequest,
        context: grpc.aio.ServicerContext,
    ) -> api_endpoint_pb2.ApiEndpoint:
        for endpoint in self._endpoints:
            if endpoint.id == request.api_endpoint_id:
                return endpoint
        await abort(context, NotFoundError(f"No API endpoint {request.api_endpoint_id!r}"))


def build_grpc_server(
    services: Services,
    host: str,
    port: int,
    advertised: str,
    tls: tuple[bytes, bytes] | None = None,
) -> grpc.aio.Server:
    """Every service the SDK calls, on ``host:port``: plaintext, or TLS with ``tls`` (a PEM
    certificate chain and its private key)."""
    server = grpc.aio.server()
    generation_grpc.add_TextGenerationServiceServicer_to_server(TextGeneration(services), server)
    generation_grpc.add_TextGenerationAsyncServiceServicer_to_server(
        TextGenerationAsync(services), server
    )
    generation_grpc.add_TextGenerationBatchServiceServicer_to_server(
        TextGenerationBatch(services), server
    )
    generation_grpc.add_TokenizerServiceServicer_to_server(Tokenizer(services), server)
    operation_grpc.add_OperationServiceServicer_to_server(Operations(services), server)
    dataset_grpc.add_DatasetServiceServicer_to_server(Datasets(services), server)
    batch_grpc.add_BatchInferenceServiceServicer_to_server(BatchInference(services), server)
    endpoint_grpc.add_ApiEndpointServiceServicer_to_server(Endpoints(advertised), server)
    address = f"{host}:{port}"
    if tls is None:
        server.add_insecure_port(address)
    else:
        chain, key = tls
        server.add_secure_port(address, grpc.ssl_server_credentials([(key, chain)]))
    return server
