"""``GET /metrics``: Prometheus's text exposition of the server's metrics (``fovea.observability``);
behind a bearer token when ``FOVEA_METRICS_TOKEN`` is set."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from fovea.api.deps import authorization_of, services_of
from fovea.errors import NotFoundError

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    services = services_of(request)
    if services.metrics is None:
        raise NotFoundError("Metrics are off on this server (FOVEA_METRICS_ENABLED=false)")
    services.metrics.authorize(authorization_of(request))
    budget = request.app.state.request_budget
    body = await services.metrics.exposition(budget, services.quotas.refusals)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
