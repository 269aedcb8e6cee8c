"""The model catalog: model URIs and plain names resolved to deployment branches.

A URI's scheme names the kind of model, as the cloud's do: ``gpt://`` chat models,
``emb://`` embedding models; a plain name stands for either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fovea.errors import ModelKindError, ModelNotFoundError, ModelUriError
from fovea.settings import BRANCHES, BranchConfig, CatalogConfig, DeploymentConfig, DeploymentKind

_NAME = r"[a-z0-9][a-z0-9._-]{0,62}"
_URI = re.compile(
    rf"^(?P<scheme>gpt|emb)://(?P<folder>[a-z0-9]{{1,50}})/(?P<name>{_NAME})"
    r"(?:/(?P<branch>[a-z]+))?/?$"
)
_PLAIN = re.compile(rf"^(?P<name>{_NAME})(?:/(?P<branch>[a-z]+))?/?$")
SCHEMES: dict[DeploymentKind, str] = {"chat": "gpt", "embedding": "emb"}
_ENDPOINTS: dict[DeploymentKind, str] = {
    "chat": "POST /v1/chat/completions",
    "embedding": "POST /v1/embeddings",
}


@dataclass(frozen=True)
class ModelUri:
    """``gpt://`` or ``emb://<folder>/<name>[/<branch>]``; ``folder_id`` and ``scheme`` are
    None for a plain name."""

    folder_id: str | None
    name: str
    branch: str = "latest"
    scheme: str | None = None

    def canonical(self, folder_id: str) -> str:
        return f"{self.scheme or 'gpt'}://{folder_id}/{self.name}/{self.branch}"


def parse_model_uri(value: str) -> ModelUri:
    match = _URI.match(value) or _PLAIN.match(value)
    if match is None:
        raise ModelUriError(
            f"Failed to parse model URI {value!r}: expected gpt://<folder_id>/<model>[/<branch>] "
            "(emb:// for embedding models) or a plain model name",
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
    return ModelUri(
        folder_id=groups.get("folder"),
        name=groups["name"],
        branch=branch,
        scheme=groups.get("scheme"),
    )


@dataclass(frozen=True)
class ResolvedModel:
    deployment: DeploymentConfig
    branch: str
    config: BranchConfig

    def uri(self, folder_id: str) -> str:
        """The canonical URI, its scheme by the deployment's kind."""
        scheme = SCHEMES[self.deployment.kind]
        return f"{scheme}://{folder_id}/{self.deployment.name}/{self.branch}"


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

    def require_kind(self, uri: ModelUri, model: ResolvedModel, kind: DeploymentKind) -> None:
        """Refuses a model of another kind than the endpoint serves (a chat model asked for
        embeddings, or the reverse), and a URI whose scheme names the other kind."""
        deployment = model.deployment
        if deployment.kind != kind:
            others = sorted(d.name for d in self._deployments.values() if d.kind == kind)
            raise ModelKindError(
                f"Model {deployment.name} is {_A_KIND[deployment.kind]}, not "
                f"{_A_KIND[kind]}: send it to {_ENDPOINTS[deployment.kind]}. "
                f"{_PLURAL[kind].capitalize()} here: {', '.join(others) or 'none'}",
                param="model",
            )
        scheme = SCHEMES[kind]
        if uri.scheme is not None and uri.scheme != scheme:
            raise ModelUriError(
                f"{uri.scheme}:// names {_PLURAL[_SCHEME_KINDS[uri.scheme]]}; {deployment.name} is "
                f"{_A_KIND[kind]}: use {scheme}://<folder_id>/{deployment.name}/{uri.branch} "
                "or the plain name",
                param="model",
            )

    def resolve_key(self, name: str, branch: str) -> ResolvedModel:
        deployment = self._deployments[name]
        return ResolvedModel(deployment, branch, deployment.branches[branch])  # type: ignore[index]

    def all_branches(self) -> list[ResolvedModel]:
        return [
            ResolvedModel(deployment=d, branch=branch, config=config)
            for d in self._deployments.values()
            for branch, config in d.branches.items()
        ]


_A_KIND: dict[DeploymentKind, str] = {"chat": "a chat model", "embedding": "an embedding model"}
_PLURAL: dict[DeploymentKind, str] = {"chat": "chat models", "embedding": "embedding models"}
_SCHEME_KINDS: dict[str, DeploymentKind] = {scheme: kind for kind, scheme in SCHEMES.items()}
