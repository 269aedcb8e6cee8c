"""The model catalog: model URIs and plain names resolved to deployment branches."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fovea.errors import ModelNotFoundError, ModelUriError
from fovea.settings import BRANCHES, BranchConfig, CatalogConfig, DeploymentConfig

_NAME = r"[a-z0-9][a-z0-9._-]{0,62}"
_URI = re.compile(
    rf"^gpt://(?P<folder>[a-z0-9]{{1,50}})/(?P<name>{_NAME})(?:/(?P<branch>[a-z]+))?/?$"
)
_PLAIN = re.compile(rf"^(?P<name>{_NAME})(?:/(?P<branch>[a-z]+))?/?$")


@dataclass(frozen=True)
class ModelUri:
    """``gpt://<folder>/<name>[/<branch>]``; ``folder_id`` is None for a plain name."""

    folder_id: str | None
    name: str
    branch: str = "latest"

    def canonical(self, folder_id: str) -> str:
        return f"gpt://{folder_id}/{self.name}/{self.branch}"


def parse_model_uri(value: str) -> ModelUri:
    match = _URI.match(value) or _PLAIN.match(value)
    if match is None:
        raise ModelUriError(
            f"Failed to parse model URI {value!r}: expected gpt://<folder_id>/<model>[/<branch>] "
            "or a plain model name",
            param="model",
        )
    groups = match.groupdict()
    branch = groups.get("branch") or "latest"
    if branch not in BRANCHES:
        raise ModelUriError(
            f"Failed to parse model URI {value!r}: unknown branch {branch!r}; "
            f"use one of {', '.join(BRANCHES)}",
            param="model",
        )
    return ModelUri(folder_id=groups.get("folder"), name=groups["name"], branch=branch)


@dataclass(frozen=True)
class ResolvedModel:
    deployment: DeploymentConfig
    branch: str
    config: BranchConfig


class Catalog:
    """The deployments an operator configured, looked up by name and branch."""

    def __init__(self, config: CatalogConfig) -> None:
        self._deployments = {d.name: d for d in config.deployments}

    @property
    def deployments(self) -> list[DeploymentConfig]:
        return list(self._deployments.values())

    def resolve(self, uri: ModelUri, folder_id: str) -> ResolvedModel:
        deployment = self._deployments.get(uri.name)
        if deployment is None:
            raise ModelNotFoundError(
                f"The model {uri.canonical(folder_id)} does not exist or you do not have access "
                f"to it. Available models: {', '.join(sorted(self._deployments)) or 'none'}",
                param="model",
            )
        config = deployment.branches.get(uri.branch)  # type: ignore[call-overload]
        if config is None:
            raise ModelNotFoundError(
                f"The model {uri.name} has no branch {uri.branch!r}; available: "
                f"{', '.join(deployment.branches)}",
                param="model",
            )
        return ResolvedModel(deployment=deployment, branch=uri.branch, config=config)

    def resolve_key(self, name: str, branch: str) -> ResolvedModel:
        deployment = self._deployments[name]
        return ResolvedModel(deployment, branch, deployment.branches[branch])  # type: ignore[index]

    def all_branches(self) -> list[ResolvedModel]:
        return [
            ResolvedModel(deployment=d, branch=branch, config=config)
            for d in self._deployments.values()
            for branch, config in d.branches.items()
        ]
