"""Wire types of ``GET /v1/models`` and the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# What a request's ``model`` may be, as fovea.services.catalog parses it: a catalog name, with
# an optional branch, or a gpt:// (emb://) URI naming the folder too. In the OpenAPI document
# only: the catalog's own check refuses the rest with a clearer message (code invalid_model_uri).
MODEL_PATTERN = (
    r"^(?:(?:gpt|emb)://[a-z0-9]{1,50}/)?[a-z0-9][a-z0-9._-]{0,62}"
    r"(?:/(?:latest|rc|deprecated))?/?$"
)
MODEL_DESCRIPTION = (
    "A model of the catalog (GET /v1/models): its name, name/branch, or "
    "gpt://<folder_id>/<name>[/<branch>] (emb:// for embedding models), the folder the key's"
)


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
    # The shipped demo (or another stand-in): its answers are not a real model's.
    demo: bool = False
    # "chat" (POST /v1/chat/completions, gpt:// ids) or "embedding" (POST /v1/embeddings,
    # emb:// ids).
    kind: Literal["chat", "embedding"] = "chat"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ReplicaStatus(BaseModel):
    url: str
    model: str
    state: Literal["up", "down"]
    in_flight: int
    served: int
    failures: int
    busy: bool
    last_error: str | None = None
    running: int | None = None
    waiting: int | None = None


class SlotStatus(BaseModel):
    id: int
    state: Literal["idle", "prompt", "generating"]
    priority: Literal["interactive", "batch"] | None = None
    cached_tokens: int


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
    tokens_per_s: float = 0.0
    queued: int = 0
    # In-process models: what each sequence slot is doing.
    slots: list[SlotStatus] = []
    # Upstream deployments: each replica's state (empty for in-process models).
    replicas: list[ReplicaStatus] = []


class HealthStatus(BaseModel):
    status: Literal["ok", "loading", "degraded"]
    # Every model loaded (upstream replicas may still be down) and, on /readyz, the database
    # answering: what /readyz answers.
    ready: bool
    engines: list[EngineStatus]
    # "ok" or "unreachable"; checked by /readyz only (null on /healthz).
    database: Literal["ok", "unreachable"] | None = None
    # Likewise for Redis, when the server uses it (FOVEA_REDIS_URL); null otherwise.
    redis: Literal["ok", "unreachable"] | None = None
