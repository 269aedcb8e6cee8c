"""Plain data the engine takes and gives. No wire schemas, no web framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An image Fovea already decoded and validated: packed RGB888 pixels."""

    width: int
    height: int
    rgb: bytes
    digest: str
    detail: str = "auto"  # "high" may add crops (see pan_and_scan)


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    image: ImageInput


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made: ``arguments`` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[ContentPart, ...]
    # An assistant message's calls; a tool message answers the call ``tool_call_id``.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolFunction:
    name: str
    description: str
    parameters: dict[str, object]  # a JSON schema of an object


@dataclass(frozen=True, slots=True)
class ToolUse:
    """The functions a request offers and whether the model must call one.

    ``choice``: "auto" (text or calls), "required" (at least one call) or a function's name
    (exactly that one). A request whose client said ``tool_choice: "none"`` carries no ToolUse.
    """

    functions: tuple[ToolFunction, ...]
    choice: str = "auto"
    parallel: bool = True


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # vLLM's extension: keep generating past end-of-sequence (benchmarks, load tests).
    ignore_eos: bool = False


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, object] | None = None


class Priority(IntEnum):
    """Lower runs first: interactive requests go ahead of queued batch lines."""

    INTERACTIVE = 0
    BATCH = 10


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    messages: tuple[Message, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    # Used when the client sets no max_tokens; capped by what the context has left.
    default_max_tokens: int = 512
    priority: Priority = Priority.INTERACTIVE
    # Whether chunks reach the client as they come. When False nothing is seen before the end,
    # so a backend may retry a failed generation whole (an upstream on another replica).
    streamed: bool = True
    tools: ToolUse | None = None
    # False when the client sent ``x-data-logging-enabled: false``: no text of this request
    # (nor of an upstream's error about it) may reach a log.
    data_logging: bool = True


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    image_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: the first piece of call ``index`` carries its id
    and name, the next ones fragments of its arguments' JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """A piece of streamed output. The last chunk has a finish reason and the usage."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a prompt as the model is fed it; ``special`` marks control tokens (BOS)."""

    id: int
    text: str
    special: bool


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a loaded model can do; checked once, before dispatch."""

    vision: bool
    max_images: int
    context_length: int
    # The encoder's square input; images need no more pixels than this on each side...
    image_size: int = 896
    # ...except for detail="high", whose crops need this many.
    high_detail_min_side: int = 896
    json_schema: bool = True
    tools: bool = False
    max_n: int = 1


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """One sequence slot of an in-process model, as ``/healthz`` shows it."""

    id: int
    state: str  # idle | prompt | generating
    priority: str | None  # interactive | batch, while busy
    cached_tokens: int  # positions its KV cache holds


@dataclass(slots=True)
class EngineStats:
    """Counters since start, written by the engine, read by health checks."""

    completed: int = 0
    cancelled: int = 0  # stopped because the caller left
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # reused from the KV cache instead of processed
    image_cache_hits: int = 0  # images whose encoder output came from the cache
    image_cache_misses: int = 0
    image_cache_bytes: int = 0
    image_cache_entries: int = 0
    # Generated tokens a second, over the last ten seconds; the slots of an in-process model.
    tokens_per_s: float = 0.0
    queued: int = 0  # accepted requests waiting for a free slot
    slots: tuple[SlotInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One upstream replica as health checks show it."""

    url: str
    model: str
    state: str  # "up" or "down"
    in_flight: int
    served: int
    failures: int  # consecutive, since the last success
    busy: bool  # its last probe timed out: alive but not answering quickly
    last_error: str | None = None
    running: int | None = None  # the engine's own gauges, when scraped
    waiting: int | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    """An embedding request's vectors, in input order, and the tokens each input took."""

    vectors: npt.NDArray[np.float32]  # (inputs, dimensions), each row L2-normalised
    token_counts: tuple[int, ...]

    @property
    def prompt_tokens(self) -> int:
        return sum(self.token_counts)
