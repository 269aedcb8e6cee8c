"""Wire types of the Files API (``/v1/files``), shaped exactly as OpenAI's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FILE_PURPOSES = (
    "assistants",
    "assistants_output",
    "batch",
    "batch_output",
    "evals",
    "fine-tune",
    "user_data",
    "vision",
)
MAX_LIST_LIMIT = 10_000

# What ``GET /v1/files/{id}/content`` answers: the bytes as uploaded, typed by the file's name
# (JSONL for batch files), or, with ``format=parquet``, a JSONL file's rows as Parquet.
_BYTES = {"schema": {"type": "string", "format": "binary"}}
CONTENT_TYPES = {
    "application/jsonl": _BYTES,
    "application/vnd.apache.parquet": _BYTES,
    "*/*": _BYTES,
}

# The multipart/form-data body of ``POST /v1/files``, as the document states it: the route
# streams it to disk itself (fovea.services.uploads), so no model parses it.
UPLOAD_FORM = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The file (one)"},
        "purpose": {"type": "string", "enum": list(FILE_PURPOSES)},
    },
}


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FileListParams(BaseModel):
    """The query of ``GET /v1/files``: newest first by default, ``after`` a file id."""

    purpose: str | None = None
    limit: int = Field(default=MAX_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT)
    after: str | None = Field(
        default=None,
        description="The id of a file of the list (a page's last): the page after it; an id "
        "that is not one is a 400",
    )
    order: Literal["asc", "desc"] = "desc"
