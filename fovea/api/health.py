"""``GET /healthz`` (the process is up) and ``GET /readyz`` (every preloaded model is ready)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fovea.api.deps import ServicesDep

router = APIRouter()


@router.get("/healthz")
async def healthz(services: ServicesDep) -> Response:
    return Response(services.models.health().model_dump_json(), media_type="application/json")


@router.get("/readyz")
async def readyz(services: ServicesDep) -> Response:
    health = services.models.health()
    status = 200 if health.status == "ok" else 503
    headers = {} if status == 200 else {"Retry-After": "5"}
    return Response(
        health.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )
