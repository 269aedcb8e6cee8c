"""Plain configuration of an upstream deployment, built from the catalog by the engine factory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    url: str  # the OpenAI base URL, e.g. http://10.0.0.11:8000/v1
    model: str  # the model name the replica expects
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    replicas: tuple[ReplicaSpec, ...]
    # Capabilities Fovea cannot discover from a remote engine.
    vision: bool = True
    max_images: int = 8
    context_length: int = 4096
    image_size: int = 896
    image_tokens: int = 256
    # Transport, health and balancing (see fovea.settings.UpstreamOptions).
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 120.0
    probe_interval_s: float = 5.0
    probe_timeout_s: float = 2.0
    max_failures: int = 3
    cooldown_s: float = 10.0
    max_attempts: int = 3
    affinity: bool = True
    affinity_slack: int = 8
    metrics: bool = False
    max_connections: int = 256
    jpeg_quality: int = 90
