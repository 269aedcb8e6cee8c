"""The one owner of loaded engines: starts them (eagerly or on first use) and shuts them down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from fovea.engine.base import Embedder, Engine, LoadedModel
from fovea.errors import ModelNotReadyError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineKey:
    model: str
    branch: str


class EngineRegistry:
    """Engines by (model, branch). ``get`` (chat) and ``get_embedder`` wait a bounded time for
    a loading engine; callers checked the deployment's kind first (``Catalog.require_kind``)."""

    def __init__(self, factory: Callable[[EngineKey], LoadedModel]) -> None:
        self._factory = factory
        self._engines: dict[EngineKey, LoadedModel] = {}
        self._starts: dict[EngineKey, asyncio.Task[None]] = {}

    def start(self, key: EngineKey) -> asyncio.Task[None]:
        """Begin loading ``key`` in the background (once); the task ends when it is ready."""
        task = self._starts.get(key)
        if task is None:
            engine = self._factory(key)
            self._engines[key] = engine
            task = asyncio.create_task(engine.start(), name=f"load {key.model}/{key.branch}")
            task.add_done_callback(_log_failure)
            self._starts[key] = task
        return task

    async def get(self, key: EngineKey, wait_s: float) -> Engine:
        return cast(Engine, await self._ready(key, wait_s))

    async def get_embedder(self, key: EngineKey, wait_s: float) -> Embedder:
        return cast(Embedder, await self._ready(key, wait_s))

    async def _ready(self, key: EngineKey, wait_s: float) -> LoadedModel:
        task = self.start(key)
        engine = self._engines[key]
        if engine.state == "ready":
            return engine
        if engine.state == "failed":
            raise ModelNotReadyError(
                f"Model {key.model}/{key.branch} failed to load: {engine.failure}. "
                "Ask the operator to check the model files and the server log."
            )
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=wait_s)
        except TimeoutError:
            raise ModelNotReadyError(
                f"Model {key.model}/{key.branch} is still loading; retry shortly",
                headers={"Retry-After": "5"},
            ) from None
        return engine

    def states(self) -> dict[EngineKey, LoadedModel]:
        return dict(self._engines)

    async def aclose(self) -> None:
        for task in self._starts.values():
            if not task.done():
                await asyncio.wait([task])
        await asyncio.gather(*(engine.aclose() for engine in self._engines.values()))
        self._engines.clear()
        self._starts.clear()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s: %s", task.get_name(), task.exception())
