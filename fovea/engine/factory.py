"""Builds the engine a catalog entry asks for."""

from __future__ import annotations

from fovea.engine.base import LoadedModel
from fovea.settings import BranchConfig, DeploymentConfig


def create_engine(deployment: DeploymentConfig, branch: BranchConfig) -> LoadedModel:
    if deployment.kind == "embedding":
        from fovea.engine.llamacpp_embeddings import EmbeddingConfig, LlamaCppEmbedder

        assert branch.model is not None  # checked when the catalog was read
        return LlamaCppEmbedder(
            EmbeddingConfig(
                name=deployment.name,
                model_path=branch.model,
                context_length=deployment.context_length,
                pooling=deployment.pooling,
                n_threads=deployment.n_threads,
                n_gpu_layers=deployment.n_gpu_layers,
                flash_attn=deployment.flash_attn,
            )
        )
    if deployment.backend == "llamacpp":
        from fovea.engine.llamacpp import LlamaCppConfig, LlamaCppEngine

        assert branch.model is not None  # checked when the catalog was read
        return LlamaCppEngine(
            LlamaCppConfig(
                name=deployment.name,
                model_path=branch.model,
                mmproj_path=branch.mmproj,
                context_length=deployment.context_length,
                n_threads=deployment.n_threads,
                n_gpu_layers=deployment.n_gpu_layers,
                flash_attn=deployment.flash_attn,
                chat_template=deployment.chat_template,
                max_images=deployment.max_images,
                image_cache_bytes=deployment.image_cache_mb * 1024 * 1024,
                prefix_cache=deployment.prefix_cache,
                parallel=deployment.parallel,
            )
        )
    if deployment.backend == "upstream":
        from fovea.engine.upstream import ReplicaSpec, UpstreamConfig, UpstreamEngine

        options = deployment.upstream
        return UpstreamEngine(
            UpstreamConfig(
                name=deployment.name,
                replicas=tuple(
                    ReplicaSpec(url=r.url, model=r.model, api_key=r.api_key)
                    for r in branch.replicas
                ),
                vision=deployment.vision,
                max_images=deployment.max_images,
                context_length=deployment.context_length,
                image_size=deployment.image_size,
                image_tokens=deployment.image_tokens,
                **options.model_dump(),
            )
        )
    raise ValueError(f"unknown backend {deployment.backend!r}")
