"""Active health probes and the engines' own load gauges, for every replica of a deployment.

A probe asks ``<root>/health`` (vLLM, SGLang, llama-server) and falls back for good to
``<base>/models`` when that is 404 (llama_cpp.server, a Fovea node). Its timeout tells "busy"
from "down": a refused or unroutable connection means the process is gone, while a server that
accepted the connection but did not answer in time is alive and working.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from fovea.engine.upstream.replica import Replica, ReplicaState

log = logging.getLogger(__name__)

# Gauge names of requests being decoded and queued: vLLM's, then SGLang's.
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")


class Prober:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        replicas: list[Replica],
        *,
        timeout_s: float,
        read_metrics: bool,
    ) -> None:
        self._session = session
        self._replicas = replicas
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        self._read_metrics = read_metrics

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.probe_all()

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(replica) for replica in self._replicas))

    async def probe(self, replica: Replica) -> None:
        was = replica.state
        try:
            status = await self._status(replica, replica.probe_url)
            if status in (404, 405) and replica.probe_url == replica.health_url:
                replica.probe_url = replica.models_url
                status = await self._status(replica, replica.probe_url)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            replica.failed(f"unreachable: {_describe(exc)}", unreachable=True)
        except (aiohttp.ServerTimeoutError, TimeoutError):
            replica.busy = True
        except aiohttp.ClientError as exc:
            replica.failed(f"probe failed: {_describe(exc)}")
        else:
            if 200 <= status < 300:
                replica.probe_passed()
                if self._read_metrics:
                    await self._gauges(replica)
            else:
                replica.failed(f"probe {replica.probe_url} answered {status}")
                replica.eject()
        if replica.state is not was:
            log.warning(
                "replica %s is %s%s",
                replica.spec.url,
                replica.state.value,
                f" ({replica.last_error})" if replica.state is ReplicaState.DOWN else "",
            )

    async def _status(self, replica: Replica, url: str) -> int:
        async with self._session.get(
            url, headers=replica.headers, timeout=self._timeout
        ) as response:
            await response.read()
            return response.status

    async def _gauges(self, replica: Replica) -> None:
        try:
            async with self._session.get(
                replica.metrics_url, headers=replica.headers, timeout=self._timeout
            ) as response:
                response.raise_for_status()
                text = await response.text()
            running, waiting = parse_load_gauges(text, replica.spec.model)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("no load gauges from %s: %s", replica.metrics_url, exc)
            replica.running = replica.waiting = None
            return
        replica.running, replica.waiting = running, waiting


def parse_load_gauges(text: str, model: str) -> tuple[int | None, int | None]:
    """Requests running and waiting for ``model`` in a Prometheus text page (None: absent)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in _RUNNING + _WAITING:
                continue
            served = sample.labels.get("model_name")
            if served is not None and served != model:
                continue
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    running = next((found[name] for name in _RUNNING if name in found), None)
    waiting = next((found[name] for name in _WAITING if name in found), None)
    return (
        None if running is None else int(running),
        None if waiting is None else int(waiting),
    )


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
