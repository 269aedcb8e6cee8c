"""The gRPC server: the cloud SDK's services on ``FOVEA_GRPC_PORT``, plaintext.

``ApiEndpointService.List`` (no auth) tells the SDK where every service id lives, so a user
passes only ``endpoint="host:port"`` (plus ``service_map`` for ``http_completions``, which the SDK
always needs for a host that is not the cloud).
"""

from __future__ import annotations

import grpc
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as text_generation_grpc,
)
from yandex.cloud.endpoint import api_endpoint_pb2, api_endpoint_service_pb2
from yandex.cloud.endpoint import api_endpoint_service_pb2_grpc as endpoint_grpc

from fovea.errors import NotFoundError
from fovea.grpc.status import abort
from fovea.grpc.text_generation import TextGeneration
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


def build_grpc_server(services: Services, host: str, port: int, advertised: str) -> grpc.aio.Server:
    server = grpc.aio.server()
    text_generation_grpc.add_TextGenerationServiceServicer_to_server(
        TextGeneration(services), server
    )
    endpoint_grpc.add_ApiEndpointServiceServicer_to_server(Endpoints(advertised), server)
    server.add_insecure_port(f"{host}:{port}")
    return server
