"""Families read when Prometheus scrapes, not counted on the request path: each loaded engine's
own counters and gauges (what ``/healthz`` shows), upstream replicas, batch lines, the admission
budget and quota refusals."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fovea.engine.base import LoadedModel
from fovea.engine.registry import EngineKey, EngineRegistry

ENGINE_STATES = ("stopped", "loading", "ready", "failed")
SLOT_STATES = ("idle", "prompt", "generating")
ENGINE = ["model", "branch"]
REPLICA = ["model", "branch", "replica"]


@dataclass(frozen=True)
class ServerState:
    """What a scrape reads besides the engines, gathered just before it (the batch query runs
    off the event loop; everything else is read on it)."""

    batch_lines: Mapping[str, int] = field(default_factory=dict)  # by state
    budget_in_use: int = 0
    budget_capacity: int = 0
    quota_refusals: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (folder, limit)


class StateCollector:
    """A prometheus_client collector over the engine registry and the latest ``ServerState``."""

    def __init__(self, engines: EngineRegistry) -> None:
        self._engines = engines
        self.server = ServerState()

    def collect(self) -> Iterator[Metric]:
        engines = self._engines.states()
        yield from _engine_families(engines)
        yield from _replica_families(engines)
        yield from _server_families(self.server)


def _engine_families(engines: Mapping[EngineKey, LoadedModel]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "fovea_engine_state", "1 for the engine's current state", labels=[*ENGINE, "state"]
    )
    queued = GaugeMetricFamily(
        "fovea_engine_queued_requests", "Accepted requests waiting for a slot", labels=ENGINE
    )
    slots = GaugeMetricFamily(
        "fovea_engine_slots",
        "Sequence slots of in-process models by state",
        labels=[*ENGINE, "state"],
    )
    rate = GaugeMetricFamily(
        "fovea_engine_tokens_per_second", "Generated tokens a second, last 10 s", labels=ENGINE
    )
    image_hits = CounterMetricFamily(
        "fovea_engine_image_cache_hits", "Images whose encoder output was cached", labels=ENGINE
    )
    image_misses = CounterMetricFamily(
        "fovea_engine_image_cache_misses", "Images run through the encoder", labels=ENGINE
    )
    image_bytes = GaugeMetricFamily(
        "fovea_engine_image_cache_bytes", "Bytes the embedding cache holds", labels=ENGINE
    )
    prefix_hits = CounterMetricFamily(
        "fovea_engine_prefix_cache_hit_tokens",
        "Prompt tokens reused from the KV cache",
        labels=ENGINE,
    )
    prefix_misses = CounterMetricFamily(
        "fovea_engine_prefix_cache_miss_tokens",
        "Prompt tokens processed (not found in the KV cache)",
        labels=ENGINE,
    )
    for key, engine in engines.items():
        labels = [key.model, key.branch]
        stats = engine.stats
        for name in ENGINE_STATES:
            state.add_metric([*labels, name], 1.0 if engine.state == name else 0.0)
        queued.add_metric(labels, stats.queued)
        if stats.slots:
            for name in SLOT_STATES:
                slots.add_metric([*labels, name], sum(s.state == name for s in stats.slots))
        rate.add_metric(labels, stats.tokens_per_s)
        image_hits.add_metric(labels, stats.image_cache_hits)
        image_misses.add_metric(labels, stats.image_cache_misses)
        image_bytes.add_metric(labels, stats.image_cache_bytes)
        prefix_hits.add_metric(labels, stats.cached_prompt_tokens)
        prefix_misses.add_metric(labels, stats.prompt_tokens - stats.cached_prompt_tokens)
    yield from (state, queued, slots, rate, image_hits, image_misses, image_bytes)
    yield from (prefix_hits, prefix_misses)


def _replica_families(engines: Mapping[EngineKey, LoadedModel]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "fovea_upstream_replica_up", "1 while the replica takes requests", labels=REPLICA
    )
    in_flight = GaugeMetricFamily(
        "fovea_upstream_replica_in_flight", "Requests this gateway has on it", labels=REPLICA
    )
    served = CounterMetricFamily(
        "fovea_upstream_replica_served", "Requests it answered", labels=REPLICA
    )
    failures = GaugeMetricFamily(
        "fovea_upstream_replica_failures", "Consecutive failures", labels=REPLICA
    )
    waiting = GaugeMetricFamily(
        "fovea_upstream_replica_waiting",
        "Requests queued in the engine, from its own /metrics (when it exposes them)",
        labels=REPLICA,
    )
    for key, engine in engines.items():
        for replica in engine.replicas:
            labels = [key.model, key.branch, replica.url]
            up.add_metric(labels, 1.0 if replica.state == "up" else 0.0)
            in_flight.add_metric(labels, replica.in_flight)
            served.add_metric(labels, replica.served)
            failures.add_metric(labels, replica.failures)
            if replica.waiting is not None:
                waiting.add_metric(labels, replica.waiting)
    yield from (up, in_flight, served, failures, waiting)


def _server_families(server: ServerState) -> Iterator[Metric]:
    lines = GaugeMetricFamily(
        "fovea_batch_lines", "Lines of unfinished batches, by state", labels=["state"]
    )
    for name, count in sorted(server.batch_lines.items()):
        lines.add_metric([name], count)
    yield lines
    yield GaugeMetricFamily(
        "fovea_admission_bytes_in_use",
        "Request-body bytes admitted and in flight",
        value=server.budget_in_use,
    )
    yield GaugeMetricFamily(
        "fovea_admission_bytes_capacity",
        "The admission budget (FOVEA_MAX_INFLIGHT_REQUEST_BYTES)",
        value=server.budget_capacity,
    )
    refusals = CounterMetricFamily(
        "fovea_quota_refusals", "Requests refused by a folder's limit", labels=["folder", "limit"]
    )
    for (folder, limit), count in sorted(server.quota_refusals.items()):
        refusals.add_metric([folder, limit], count)
    yield refusals
