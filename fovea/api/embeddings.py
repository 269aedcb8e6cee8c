"""``POST /v1/embeddings``: OpenAI's Embeddings API."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from fovea.api.deps import HeaderFolderDep, PrincipalDep, ServicesDep, request_context
from fovea.api.openapi import GENERATION_ERRORS, errors
from fovea.api.responses import json_response
from fovea.api.streaming import ClientDisconnected, cancel_on_disconnect
from fovea.protocol.embeddings import EmbeddingList, EmbeddingRequest

router = APIRouter()


@router.post("/v1/embeddings", response_model=EmbeddingList, responses=errors(*GENERATION_ERRORS))
async def create_embeddings(
    body: EmbeddingRequest,
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
) -> Response:
    """Embed a text or texts (or token arrays) with an embedding model (``emb://`` URIs)."""
    request.scope.setdefault("state", {})["model"] = body.model  # for the access log
    try:
        # A client that leaves stops the work before the model's next round of inputs.
        result = await cancel_on_disconnect(
            request,
            services.embeddings.create(
                principal, body, header_folder, context=request_context(request)
            ),
        )
    except ClientDisconnected:
        return Response(status_code=499)
    return json_response(result.body, headers=result.headers)
