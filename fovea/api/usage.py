"""``GET /v1/organization/usage/completions``: token usage in time buckets (OpenAI's shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from fovea.api.deps import PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.protocol.usage import UsagePage, UsageParams

router = APIRouter()


@router.get("/v1/organization/usage/completions", response_model=UsagePage)
async def completions_usage(
    params: Annotated[UsageParams, Query()], services: ServicesDep, principal: PrincipalDep
) -> Response:
    """Chat completions' tokens, requests and images per time bucket, for the caller's folder
    (``ai.viewer``) or the folders named in ``project_ids``."""
    return json_response(await services.usage.completions_page(principal, params))
