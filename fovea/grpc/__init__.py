"""The gRPC front for the cloud's own SDK (``yandex-ai-studio-sdk``): the services it calls, served
by ``grpc.aio`` on ``FOVEA_GRPC_PORT`` beside the HTTP API, calling Fovea's services directly.

    server           builds the server (plaintext or TLS) and the endpoint discovery service
    calls            the caller's key from metadata, errors as statuses, timestamps
    text_generation  TextGenerationService.Completion (unary and streamed)
    tokenizer        TokenizerService.Tokenize and TokenizeCompletion
    operations       OperationService Get/Cancel, TextGenerationAsyncService.Completion
    datasets         DatasetService (uploads go to signed HTTP URLs: fovea/api/datasets.py)
    batches          TextGenerationBatchService.Completion, BatchInferenceService
    status           Fovea's errors as gRPC status codes
"""
