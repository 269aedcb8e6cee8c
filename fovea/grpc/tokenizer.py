"""``TokenizerService``: the tokens of a prompt, over gRPC, on Fovea's chat service.

``TokenizeCompletion`` takes the ``CompletionRequest`` a completion takes and answers the tokens of
the prompt the model would be fed for it (chat template applied, as many as the completion's
``input_text_tokens``); ``Tokenize`` takes plain text, tokenized as it is. Auth, folder checks and
the catalog are the completion's; no generation quota is taken.
"""

from __future__ import annotations

import logging

import grpc
from yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as service,
)
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as service_grpc,
)

from fovea.engine.types import Token
from fovea.errors import FoveaError
from fovea.grpc.calls import caller
from fovea.grpc.status import abort
from fovea.grpc.text_generation import chat_request
from fovea.iam.types import Principal
from fovea.services.container import Services

log = logging.getLogger(__name__)


class Tokenizer(service_grpc.TokenizerServiceServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    async def TokenizeCompletion(
        self, request: service.CompletionRequest, context: grpc.aio.ServicerContext
    ) -> service.TokenizeResponse:
        try:
            principal = await self._authenticate(context)
            tokens, _ = await self._services.chat.tokenize(principal, chat_request(request))
            return _response(tokens)
        except FoveaError as error:
            await abort(context, error)
        except Exception:
            log.exception("gRPC TokenizeCompletion failed")
            await abort(context, FoveaError("The server had an error processing your request."))

    async def Tokenize(
        self, request: service.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> service.TokenizeResponse:
        try:
            principal = await self._authenticate(context)
            chat = self._services.chat
            tokens, _ = await chat.tokenize_text(principal, request.model_uri, request.text)
            return _response(tokens)
        except FoveaError as error:
            await abort(context, error)
        except Exception:
            log.exception("gRPC Tokenize failed")
            await abort(context, FoveaError("The server had an error processing your request."))

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        return await caller(self._services.access, context)


def _response(tokens: list[Token]) -> service.TokenizeResponse:
    return service.TokenizeResponse(
        tokens=[common.Token(id=t.id, text=t.text, special=t.special) for t in tokens],
        model_version="",  # as TextGenerationService.Completion answers
    )
