"""``/v1/batches``: OpenAI's Batches API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from fovea.api.deps import HeaderFolderDep, PrincipalDep, ServicesDep
from fovea.api.openapi import errors
from fovea.api.responses import json_response
from fovea.protocol.batches import BatchList, BatchObject, CreateBatchRequest

router = APIRouter()


@router.post("/v1/batches", response_model=BatchObject, responses=errors(404, 409))
async def create_batch(
    body: CreateBatchRequest,
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
) -> Response:
    return json_response(await services.batches.create(principal, header_folder, body))


@router.get("/v1/batches", response_model=BatchList)
async def list_batches(
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    return json_response(
        await services.batches.list_batches(principal, header_folder, after=after, limit=limit)
    )


@router.get("/v1/batches/{batch_id}", response_model=BatchObject)
async def retrieve_batch(
    batch_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    return json_response(await services.batches.get(principal, header_folder, batch_id))


@router.post("/v1/batches/{batch_id}/cancel", response_model=BatchObject)
async def cancel_batch(
    batch_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    return json_response(await services.batches.cancel(principal, header_folder, batch_id))
