"""Embeddings: from an OpenAI request to an embedding model's vectors and back.

Checked as a chat completion is (the key's generation scopes, the folder, ``models.use`` on it,
the model), then admitted against the folder's quotas: a request slot, a concurrent slot while
the vectors are computed, and its input tokens against tokens per minute. Each request that
reached the model leaves a usage record of kind ``embedding`` (ok or error), which the
embeddings usage report reads and the completions report leaves out.

Batch lines (``/v1/embeddings`` batches) come with their batch's id: they take no request or
concurrent slot (the runner's concurrency bounds them), only tokens.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import numpy as np
import numpy.typing as npt

from fovea.engine.registry import EngineKey, EngineRegistry
from fovea.errors import GenerationTimeoutError, InvalidRequestError
from fovea.iam.apikeys import GENERATION_SCOPES
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol import embeddings as wire
from fovea.services.access import AccessControl
from fovea.services.catalog import Catalog, ResolvedModel, parse_model_uri
from fovea.services.chat_events import RequestContext
from fovea.services.quotas import RateLimiter
from fovea.services.usage import UsageRecorder
from fovea.settings import DeploymentConfig
from fovea.store.usage import UsageKind, UsageRow


@dataclass(frozen=True)
class EmbeddingLimits:
    model_load_wait_s: float = 30.0
    timeout_s: float = 600.0


@dataclass(frozen=True)
class EmbeddingResult:
    """The response, and the rate-limit headers that go with it."""

    body: wire.EmbeddingList
    headers: dict[str, str]


class EmbeddingsService:
    """Checks access, the model's kind and ``dimensions``; admits the request and embeds."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        engines: EngineRegistry,
        access: AccessControl,
        quotas: RateLimiter,
        limits: EmbeddingLimits,
        usage: UsageRecorder | None = None,
    ) -> None:
        self._catalog = catalog
        self._engines = engines
        self._access = access
        self._quotas = quotas
        self._limits = limits
        self._usage = usage

    async def create(
        self,
        principal: Principal,
        body: wire.EmbeddingRequest,
        header_folder: str | None = None,
        context: RequestContext | None = None,
    ) -> EmbeddingResult:
        context = context or RequestContext()
        self._access.require_scope(principal, GENERATION_SCOPES)
        uri = parse_model_uri(body.model)
        folder_id = self._access.folder_for(
            principal, uri_folder=uri.folder_id, header_folder=header_folder
        )
        await self._access.require(principal, folder_id, Permission.MODELS_USE)
        model = self._catalog.resolve(uri, folder_id)
        self._catalog.require_kind(uri, model, "embedding")
        embedder = await self._engines.get_embedder(
            EngineKey(model.deployment.name, model.branch), self._limits.model_load_wait_s
        )
        size = _size(body.dimensions, model.deployment, embedder.dimensions)
        admission = await self._quotas.admit(
            principal, folder_id, interactive=context.batch_id is None
        )
        record = _Record(principal, folder_id, model, context)
        try:
            async with asyncio.timeout(self._limits.timeout_s):
                result = await embedder.embed(_inputs(body.input))
        except TimeoutError:
            self._record(record.row(0, "timeout"))
            raise GenerationTimeoutError(
                "The embeddings took longer than this server allows "
                "(FOVEA_GENERATION_TIMEOUT_S); send fewer or shorter inputs"
            ) from None
        except asyncio.CancelledError:
            self._record(record.row(0, "cancelled"))
            raise
        except Exception:
            self._record(record.row(0, "error"))
            raise
        finally:
            admission.release()
        self._record(record.row(result.prompt_tokens, "ok"))
        self._quotas.spend(folder_id, principal.key_id, result.prompt_tokens)
        vectors = result.vectors if size is None else _shorten(result.vectors, size)
        response = wire.EmbeddingList(
            data=_encode(vectors, body.encoding_format),
            model=model.uri(folder_id),
            usage=wire.EmbeddingUsage(
                prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
            ),
        )
        return EmbeddingResult(response, admission.headers)

    def _record(self, row: UsageRow) -> None:
        if self._usage is not None:
            self._usage.record(row)


class _Record:
    """What an embeddings request's usage record says, from the moment it reached the model."""

    def __init__(
        self, principal: Principal, folder_id: str, model: ResolvedModel, context: RequestContext
    ) -> None:
        self._principal = principal
        self._folder_id = folder_id
        self._model = model
        self._context = context
        self._started = time.monotonic()

    def row(self, tokens: int, status: str) -> UsageRow:
        return UsageRow(
            created_at=datetime.now(UTC),
            request_id=self._context.request_id,
            folder_id=self._folder_id,
            service_account_id=self._principal.service_account_id,
            key_id=self._principal.api_key_id,
            model_uri=self._model.uri(self._folder_id),
            model=self._model.deployment.name,
            branch=self._model.branch,
            prompt_tokens=tokens,
            completion_tokens=0,
            image_tokens=0,
            cached_tokens=0,
            images=0,
            ttft_ms=None,
            duration_ms=(time.monotonic() - self._started) * 1000,
            status=status,
            batch_id=self._context.batch_id,
            kind=UsageKind.EMBEDDING.value,
        )


def _inputs(
    value: str | list[str] | list[int] | list[list[int]],
) -> Sequence[str | Sequence[int]]:
    """A request's input as a list of inputs (a lone text or token array is one)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value[0], int):  # one token array (the wire type refuses empty lists)
        return [cast(list[int], value)]
    return cast(list[str] | list[list[int]], value)


def _size(wanted: int | None, deployment: DeploymentConfig, native: int) -> int | None:
    """The size to shorten vectors to; None for the model's own. Only the sizes the catalog
    allows (models trained for it); anything else is a 400 naming them."""
    if wanted is None or wanted == native:
        return None
    allowed = sorted({n for n in deployment.dimensions if n < native})
    if wanted in allowed:
        return wanted
    if allowed:
        sizes = ", ".join(str(n) for n in [*allowed, native])
        offer = f"dimensions may be one of {sizes}"
    else:
        offer = f"this model gives {native} dimensions and cannot shorten its vectors"
    raise InvalidRequestError(
        f"dimensions={wanted} is not supported by model {deployment.name}: {offer}",
        param="dimensions",
    )


def _shorten(vectors: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.float32]:
    """The first ``size`` dimensions, normalised again (Matryoshka)."""
    head = vectors[:, :size]
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return (head / np.maximum(norms, 1e-12)).astype(np.float32)


def _encode(vectors: npt.NDArray[np.float32], encoding_format: str) -> list[wire.Embedding]:
    if encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        return [
            wire.Embedding(index=i, embedding=base64.b64encode(row.tobytes()).decode("ascii"))
            for i, row in enumerate(little)
        ]
    return [wire.Embedding(index=i, embedding=row) for i, row in enumerate(vectors.tolist())]
