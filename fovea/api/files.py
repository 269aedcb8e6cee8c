"""``/v1/files``: upload, list, retrieve, download and delete files (OpenAI's Files API)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from fovea.api.deps import HeaderFolderDep, PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.protocol.files import FileListParams

router = APIRouter()


@router.post("/v1/files")
async def upload_file(
    request: Request, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    # The body is read here, as it arrives (the body-limit middleware passes it through).
    try:
        created = await services.files.upload(
            principal, header_folder, request.headers.get("content-type"), request.stream()
        )
    except ClientDisconnect:
        return Response(status_code=499)
    return json_response(created)


@router.get("/v1/files")
async def list_files(
    params: Annotated[FileListParams, Query()],
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
) -> Response:
    files = await services.files.list(principal, header_folder, params)
    return json_response(files)


@router.get("/v1/files/{file_id}")
async def retrieve_file(
    file_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    file = await services.files.retrieve(principal, header_folder, file_id)
    return json_response(file)


@router.get("/v1/files/{file_id}/content")
async def file_content(
    file_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
    format: Annotated[
        Literal["jsonl", "parquet"] | None,
        Query(description="parquet: a JSONL file's rows as Parquet (the cloud's dataset format)"),
    ] = None,
) -> Response:
    if format == "parquet":
        path = await services.files.parquet(principal, header_folder, file_id)
        return FileResponse(path, media_type="application/vnd.apache.parquet")
    content = await services.files.content(principal, header_folder, file_id)
    return StreamingResponse(
        content.chunks,
        media_type=content.media_type,
        headers={"Content-Length": str(content.file.bytes)},
    )


@router.delete("/v1/files/{file_id}")
async def delete_file(
    file_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    deleted = await services.files.delete(principal, header_folder, file_id)
    return json_response(deleted)
