"""What the in-process backends share: a model owned by one worker thread, its load state,
starting that thread and refusing work until the model is ready."""

from __future__ import annotations

import asyncio
import threading

from fovea.engine.base import EngineState
from fovea.engine.types import ReplicaInfo
from fovea.errors import ModelNotReadyError


class ModelThread:
    """Subclasses set ``_thread_name`` and implement ``_run(loop)``, which loads the model,
    sets ``_state`` (and ``_failure``) and settles ``_loaded``, then serves until told to stop."""

    _thread_name = "model"

    def __init__(self, name: str) -> None:
        self._name = name
        self._state: EngineState = "stopped"
        self._failure: str | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def replicas(self) -> tuple[ReplicaInfo, ...]:
        return ()  # in-process: no remote replicas

    async def start(self) -> None:
        """Load the model; returns when it is ready, raises ModelNotReadyError if it failed."""
        if self._loaded is None:
            loop = asyncio.get_running_loop()
            self._loaded = loop.create_future()
            self._state = "loading"
            self._thread = threading.Thread(
                target=self._run,
                args=(loop,),
                name=f"{self._thread_name}-{self._name}",
                daemon=True,
            )
            self._thread.start()
        await asyncio.shield(self._loaded)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError

    def _require_ready(self) -> None:
        if self._state != "ready":
            raise ModelNotReadyError(
                f"Model {self._name} is not ready ({self._state})",
                headers={"Retry-After": "5"},
            )
