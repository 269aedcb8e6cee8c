"""Wire types of ``GET /v1/models`` and the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # Beyond OpenAI's four fields; clients ignore them.
    description: str = ""
    branch: str = "latest"
    status: str = "ready"
    context_length: int
    max_images: int
    vision: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class EngineStatus(BaseModel):
    model: str
    branch: str
    state: str
    error: str | None = None
    completed: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    image_cache_hits: int = 0
    image_cache_misses: int = 0
    image_cache_bytes: int = 0
    image_cache_entries: int = 0


class HealthStatus(BaseModel):
    status: Literal["ok", "loading", "degraded"]
    engines: list[EngineStatus]
