"""One upstream replica's state: requests in flight, failures, ejection and re-admission.

A replica is UP or DOWN. It goes DOWN at once when a connection to it is refused (the process
is gone), or after ``max_failures`` consecutive failures of requests (5xx answers, broken
streams; a passing health probe does not clear them: ``/health`` can pass while every chat
request fails). A DOWN replica gets no requests for ``cooldown_s``; after that the next passing
probe re-admits it on probation: until a request succeeds there, one failure ejects it again.
A probe that times out marks it ``busy`` (connected, answering slowly) without ejecting it:
llama_cpp.server, for one, answers ``/v1/models`` only between generations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from urllib.parse import urlsplit

from fovea.engine.types import ReplicaInfo
from fovea.engine.upstream.config import ReplicaSpec

Clock = Callable[[], float]


class ReplicaState(StrEnum):
    UP = "up"
    DOWN = "down"


class Replica:
    def __init__(
        self, spec: ReplicaSpec, *, max_failures: int, cooldown_s: float, clock: Clock
    ) -> None:
        self.spec = spec
        base = spec.url.rstrip("/")
        self.chat_url = f"{base}/chat/completions"
        self.models_url = f"{base}/models"
        # The server's root: /health and /metrics live there, beside /v1.
        root = base[: -len("/v1")] if base.endswith("/v1") else base
        self.health_url = f"{root}/health"
        self.metrics_url = f"{root}/metrics"
        self.probe_url = self.health_url
        self.headers = {"Content-Type": "application/json"}
        if spec.api_key:
            self.headers["Authorization"] = f"Bearer {spec.api_key}"
        self.label = urlsplit(spec.url).netloc
        self.state = ReplicaState.UP
        self.in_flight = 0
        self.served = 0
        self.failures = 0
        self.busy = False
        self.last_error: str | None = None
        self.running: int | None = None
        self.waiting: int | None = None
        self._max_failures = max_failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._down_until = 0.0
        self._on_probation = False

    @property
    def is_available(self) -> bool:
        return self.state is ReplicaState.UP

    @property
    def load(self) -> int:
        """Requests it is working on: Fovea's own count, or the engine's when that is higher
        (other gateways send to it too)."""
        gauge = (self.running or 0) + (self.waiting or 0)
        return max(self.in_flight, gauge)

    def seconds_until_retry(self) -> float:
        return max(0.0, self._down_until - self._clock())

    @contextmanager
    def track(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def succeeded(self) -> None:
        self.served += 1
        self.failures = 0
        self._on_probation = False

    def failed(self, reason: str, *, unreachable: bool = False) -> None:
        """A request or probe failed; ``unreachable`` (connection refused) ejects at once."""
        self.failures += 1
        self.last_error = reason
        if unreachable or self._on_probation or self.failures >= self._max_failures:
            self.eject()

    def eject(self) -> None:
        self.state = ReplicaState.DOWN
        self._down_until = self._clock() + self._cooldown_s

    def probe_passed(self) -> None:
        self.busy = False
        if self.state is ReplicaState.DOWN and self._clock() >= self._down_until:
            self.state = ReplicaState.UP
            self.failures = 0
            self._on_probation = True

    def info(self) -> ReplicaInfo:
        return ReplicaInfo(
            url=self.spec.url,
            model=self.spec.model,
            state=self.state.value,
            in_flight=self.in_flight,
            served=self.served,
            failures=self.failures,
            busy=self.busy,
            last_error=self.last_error,
            running=self.running,
            waiting=self.waiting,
        )
