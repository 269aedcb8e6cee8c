"""Builds the engine a catalog entry asks for."""

from __future__ import annotations

from fovea.engine.base import Engine
from fovea.settings import BranchFiles, DeploymentConfig


def create_engine(deployment: DeploymentConfig, files: BranchFiles) -> Engine:
    if deployment.backend == "llamacpp":
        from fovea.engine.llamacpp import LlamaCppConfig, LlamaCppEngine

        return LlamaCppEngine(
            LlamaCppConfig(
                name=deployment.name,
                model_path=files.model,
                mmproj_path=files.mmproj,
                context_length=deployment.context_length,
                n_threads=deployment.n_threads,
                n_gpu_layers=deployment.n_gpu_layers,
                flash_attn=deployment.flash_attn,
                chat_template=deployment.chat_template,
                max_images=deployment.max_images,
                image_cache_bytes=deployment.image_cache_mb * 1024 * 1024,
                prefix_cache=deployment.prefix_cache,
            )
        )
    raise ValueError(f"unknown backend {deployment.backend!r}")
