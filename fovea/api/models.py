"""``GET /v1/models``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fovea.api.deps import HeaderFolderDep, PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.protocol.models import ModelList

router = APIRouter()


@router.get("/v1/models", response_model=ModelList)
async def list_models(
    services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    models = await services.models.list(principal, header_folder)
    return json_response(models)
