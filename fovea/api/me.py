"""``GET /v1/me``: the calling key, its folder, roles, scopes and permissions."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fovea.api.deps import PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.protocol.me import Identity

router = APIRouter()


@router.get("/v1/me", response_model=Identity)
async def me(services: ServicesDep, principal: PrincipalDep) -> Response:
    """What this key is and may do: any valid key may ask about itself."""
    return json_response(await services.access.identity(principal))
