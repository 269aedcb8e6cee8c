"""The ``upstream`` backend: remote OpenAI-compatible engines (vLLM, SGLang, llama-server,
llama_cpp.server, another Fovea) behind Fovea, balanced, health-checked, with failover.

    engine    UpstreamEngine: the Engine interface; picks a replica, retries before the first byte
    balancer  which replica: least outstanding requests, prefix and image affinity
    replica   one replica's state: in flight, failures, ejection and re-admission
    probes    active health probes and the engines' own load gauges
    wire      Fovea's request to an OpenAI body (images re-encoded at the edge) and back
"""

from fovea.engine.upstream.config import ReplicaSpec, UpstreamConfig
from fovea.engine.upstream.engine import UpstreamEngine

__all__ = ["ReplicaSpec", "UpstreamConfig", "UpstreamEngine"]
