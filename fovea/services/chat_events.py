"""What the chat service tells the rest of the house about each completion: where it came
from (``RequestContext``) and how it ended (``FinishedCompletion``).

Usage records, rate limits, metrics and the request log are ``CompletionObserver``s: each is
called once per completion, on the event loop, after its last chunk, and must return at once
(buffer, then write elsewhere).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from fovea.engine.types import Usage
from fovea.iam.types import Principal
from fovea.protocol import chat as wire


@dataclass(frozen=True)
class RequestContext:
    """Where a completion request came from, beyond its body and key."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # False when the client sent ``x-data-logging-enabled: false``: its bodies are never kept.
    data_logging: bool = True
    batch_id: str | None = None  # set for a batch line


def data_logging_enabled(header: str | None) -> bool:
    """What ``x-data-logging-enabled`` asks for: only an explicit no turns logging off."""
    return (header or "true").strip().lower() not in ("false", "0", "no", "off")


class CompletionStatus(StrEnum):
    OK = "ok"  # the model finished (stop or length)
    CANCELLED = "cancelled"  # the client left before the end
    TIMEOUT = "timeout"
    ERROR = "error"  # the engine failed after the request was accepted


@dataclass(frozen=True)
class FinishedCompletion:
    context: RequestContext
    principal: Principal
    folder_id: str
    model_uri: str
    model: str  # the deployment
    branch: str
    request: wire.ChatCompletionRequest
    status: CompletionStatus
    usage: Usage | None  # None when the engine never reported it (cancelled, failed)
    images: int
    started_at: float  # time.time() when the request was accepted
    ttft_s: float | None
    duration_s: float
    text: str  # the answer as generated so far
    finish_reason: str | None = None
    error: str | None = None

    @property
    def key_id(self) -> str:
        """The API key the completion was asked with (empty for batch lines and deferred
        completions)."""
        return self.principal.api_key_id

    @property
    def is_batch(self) -> bool:
        return self.context.batch_id is not None

    @property
    def inter_token_s(self) -> float | None:
        """Mean time between generated tokens after the first."""
        if self.usage is None or self.ttft_s is None or self.usage.completion_tokens < 2:
            return None
        return (self.duration_s - self.ttft_s) / (self.usage.completion_tokens - 1)


class CompletionObserver(Protocol):
    def completion_finished(self, completion: FinishedCompletion) -> None: ...
