"""Model listing and readiness, as the caller's folder sees them."""

from __future__ import annotations

from dataclasses import asdict

from fovea.engine.registry import EngineKey, EngineRegistry
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol.models import (
    EngineStatus,
    HealthStatus,
    ModelList,
    ModelObject,
    ReplicaStatus,
)
from fovea.services.access import AccessControl
from fovea.services.catalog import Catalog


class ModelsService:
    def __init__(
        self, *, catalog: Catalog, engines: EngineRegistry, access: AccessControl, started_at: int
    ) -> None:
        self._catalog = catalog
        self._engines = engines
        self._access = access
        self._started_at = started_at

    async def list(self, principal: Principal, header_folder: str | None) -> ModelList:
        folder_id = self._access.folder_for(principal, uri_folder=None, header_folder=header_folder)
        await self._access.require(principal, folder_id, Permission.MODELS_READ)
        engines = self._engines.states()
        data = []
        for model in self._catalog.all_branches():
            deployment = model.deployment
            engine = engines.get(EngineKey(deployment.name, model.branch))
            vision = deployment.accepts_images(model.config)
            data.append(
                ModelObject(
                    id=model.uri(folder_id),
                    created=self._started_at,
                    owned_by=deployment.owned_by,
                    description=deployment.description,
                    branch=model.branch,
                    status=engine.state if engine else "not loaded (loads on first use)",
                    context_length=deployment.context_length,
                    max_images=deployment.max_images if vision else 0,
                    vision=vision,
                    demo=deployment.demo,
                    kind=deployment.kind,
                )
            )
        return ModelList(data=data)

    def health(self) -> HealthStatus:
        engines = [
            EngineStatus(
                model=key.model,
                branch=key.branch,
                state=e.state,
                error=e.failure,
                replicas=[ReplicaStatus(**asdict(r)) for r in e.replicas],
                **asdict(e.stats),
            )
            for key, e in self._engines.states().items()
        ]
        states = {e.state for e in engines}
        no_replica_up = any(
            e.replicas and all(r.state != "up" for r in e.replicas) for e in engines
        )
        if "failed" in states or no_replica_up:
            status = "degraded"
        elif states - {"ready"}:
            status = "loading"
        else:
            status = "ok"
        # Replicas that are down do not make this gateway unready: every gateway would be
        # pulled from the load balancer, and clients would lose the clear 503 with Retry-After.
        # Nor does a model that failed to load (its files missing or corrupt): waiting will not
        # load it, the other models serve, and its requests get a 503 naming the problem;
        # "degraded" and the engine's error say which and why.
        ready = states <= {"ready", "failed"}
        return HealthStatus(status=status, ready=ready, engines=engines)  # type: ignore[arg-type]
