"""The gRPC front for the cloud's own SDK (``yandex-ai-studio-sdk``): the services it calls, served
by ``grpc.aio`` on ``FOVEA_GRPC_PORT`` beside the HTTP API, calling Fovea's services directly.

    server           builds the server and the endpoint discovery service
    text_generation  TextGenerationService.Completion (unary and streamed)
    status           Fovea's errors as gRPC status codes
"""
