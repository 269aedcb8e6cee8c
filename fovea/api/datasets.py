"""Signed dataset URLs: the SDK PUTs a dataset's bytes here (whole, or in parts that answer with
an ETag) and GETs its rows back as Parquet. No API key: the URL's signature is the credential."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.requests import ClientDisconnect

from fovea.api.deps import ServicesDep

router = APIRouter()

UPLOAD_PREFIX = "/v1/datasets/"


@router.put("/v1/datasets/{dataset_id}/upload", include_in_schema=False)
async def upload_dataset(dataset_id: str, request: Request, services: ServicesDep) -> Response:
    try:
        etag = await services.datasets.receive_upload(
            request.url.path, dict(request.query_params), dataset_id, request.stream()
        )
    except ClientDisconnect:
        return Response(status_code=499)
    return Response(status_code=200, headers={"ETag": etag})


@router.put("/v1/datasets/{dataset_id}/parts/{number}", include_in_schema=False)
async def upload_part(
    dataset_id: str, number: int, request: Request, services: ServicesDep
) -> Response:
    try:
        etag = await services.datasets.receive_part(
            request.url.path, dict(request.query_params), dataset_id, number, request.stream()
        )
    except ClientDisconnect:
        return Response(status_code=499)
    return Response(status_code=200, headers={"ETag": etag})


@router.get("/v1/datasets/{dataset_id}/{key}", include_in_schema=False)
async def download_dataset(
    dataset_id: str, key: str, request: Request, services: ServicesDep
) -> Response:
    path = await services.datasets.parquet(
        request.url.path, dict(request.query_params), dataset_id, key
    )
    return FileResponse(path, media_type="application/vnd.apache.parquet", filename=key)
