"""``GET /v1/organization/usage/completions`` and ``.../embeddings``: token usage in time
buckets (OpenAI's shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from fovea.api.deps import PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.protocol.usage import CompletionsResult, EmbeddingsResult, UsagePage, UsageParams

router = APIRouter()


@router.get("/v1/organization/usage/completions", response_model=UsagePage[CompletionsResult])
async def completions_usage(
    params: Annotated[UsageParams, Query()], services: ServicesDep, principal: PrincipalDep
) -> Response:
    """Chat completions' tokens, requests and images per time bucket, for the caller's folder
    (``ai.viewer``) or the folders named in ``project_ids``."""
    return json_response(await services.usage.completions_page(principal, params))


@router.get("/v1/organization/usage/embeddings", response_model=UsagePage[EmbeddingsResult])
async def embeddings_usage(
    params: Annotated[UsageParams, Query()], services: ServicesDep, principal: PrincipalDep
) -> Response:
    """Embeddings requests' input tokens and requests per time bucket, for the caller's
    folder (``ai.viewer``) or the folders named in ``project_ids``."""
    return json_response(await services.usage.embeddings_page(principal, params))
