"""``GET /healthz`` (the process is up, with every engine's state) and ``GET /readyz`` (every
preloaded model is loaded and the database, and Redis when configured, answer; upstream
replicas being down is in /healthz, not a reason to be taken out of a load balancer, nor is a
model that failed to load: both answer "degraded" and name the engine and its error)."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Response

from fovea.api.deps import ServicesDep
from fovea.api.responses import json_response
from fovea.protocol.models import HealthStatus
from fovea.services.redis_client import redis_answers

router = APIRouter()


@router.get("/healthz", response_model=HealthStatus)
async def healthz(services: ServicesDep) -> Response:
    return json_response(services.models.health())


@router.get(
    "/readyz",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus, "description": "Not ready: what is not, and why"}},
)
async def readyz(services: ServicesDep) -> Response:
    """Ready: every preloaded model loaded and the database answering (a replica whose
    database is unreachable is taken out of the load balancer until it answers again)."""
    health = services.models.health()
    reachable = await to_thread.run_sync(services.database.ping)
    health.database = "ok" if reachable else "unreachable"
    health.ready = health.ready and reachable
    if services.redis is not None:  # the replicas' quota counters and access changes
        answers = await redis_answers(services.redis)
        health.redis = "ok" if answers else "unreachable"
        health.ready = health.ready and answers
    status = 200 if health.ready else 503
    headers = {} if status == 200 else {"Retry-After": "5"}
    return json_response(health, status_code=status, headers=headers)
