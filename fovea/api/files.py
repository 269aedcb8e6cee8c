"""``/v1/files``: upload, list, retrieve, download and delete files (OpenAI's Files API)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from fovea.api.deps import HeaderFolderDep, PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.protocol.files import (
    CONTENT_TYPES,
    UPLOAD_FORM,
    FileDeleted,
    FileList,
    FileListParams,
    FileObject,
)

router = APIRouter()

# What may stand in a quoted Content-Disposition filename as is; anything else becomes "_".
_UNSAFE_IN_QUOTES = re.compile(r"[^A-Za-z0-9 ._()+,@!#$&'~=\[\]-]")


@router.post(
    "/v1/files",
    response_model=FileObject,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": UPLOAD_FORM}},
        }
    },
)
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


@router.get("/v1/files", response_model=FileList)
async def list_files(
    params: Annotated[FileListParams, Query()],
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
) -> Response:
    files = await services.files.list(principal, header_folder, params)
    return json_response(files)


@router.get("/v1/files/{file_id}", response_model=FileObject)
async def retrieve_file(
    file_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    file = await services.files.retrieve(principal, header_folder, file_id)
    return json_response(file)


@router.get("/v1/files/{file_id}/content", responses={200: {"content": CONTENT_TYPES}})
async def file_content(
    file_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    header_folder: HeaderFolderDep,
    format: Annotated[
        Literal["jsonl", "parquet"] | None,
        Query(
            description="parquet: a JSONL file's rows as Parquet (the cloud's dataset format); "
            "a file that is not JSONL is a 400"
        ),
    ] = None,
) -> Response:
    if format == "parquet":
        path = await services.files.parquet(principal, header_folder, file_id)
        stored = await services.files.retrieve(principal, header_folder, file_id)
        name = f"{PurePosixPath(stored.filename).stem}.parquet"
        return FileResponse(
            path, media_type="application/vnd.apache.parquet", headers=_download_headers(name)
        )
    content = await services.files.content(principal, header_folder, file_id)
    return StreamingResponse(
        content.chunks,
        media_type=content.media_type,
        headers={
            "Content-Length": str(content.file.bytes),
            **_download_headers(content.file.filename),
        },
    )


@router.delete("/v1/files/{file_id}", response_model=FileDeleted)
async def delete_file(
    file_id: str, services: ServicesDep, principal: PrincipalDep, header_folder: HeaderFolderDep
) -> Response:
    deleted = await services.files.delete(principal, header_folder, file_id)
    return json_response(deleted)


def _download_headers(filename: str) -> dict[str, str]:
    """A download, never a page: ``attachment`` (an uploaded ``.html`` is not rendered on this
    origin) with the name quoted safely (RFC 6266: an ASCII fallback and the UTF-8 name), and
    no content sniffing."""
    fallback = _UNSAFE_IN_QUOTES.sub("_", filename)
    encoded = quote(filename, safe="")
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}",
        "X-Content-Type-Options": "nosniff",
    }
