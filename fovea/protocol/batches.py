"""Wire types of the Batches API, shaped exactly as OpenAI's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fovea.protocol.chat import ResponseFormat
from fovea.protocol.models import MODEL_PATTERN

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]

CUSTOM_ID_MAX = 512  # the batch_lines.custom_id column's length
# What a batch may run and how long it may take; stated in the document here, checked (with
# messages naming the choices) by fovea.services.batches.
ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
COMPLETION_WINDOWS = ("24h",)


class BatchCompletionOptions(BaseModel):
    """Fovea's batch-wide request fields: every dataset row gets them; an OpenAI request line
    keeps whichever of them it sets itself."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = Field(default=None, json_schema_extra={"maxItems": 4})
    response_format: ResponseFormat | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    def as_body(self) -> dict[str, Any] | None:
        """The fields set, as they go into a chat request's body; None when none is."""
        return self.model_dump(exclude_none=True, by_alias=True) or None


class CreateBatchRequest(BaseModel):
    """OpenAI's fields, plus two of Fovea's for the cloud's dataset rows (which name no model)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            # completion_options and dataset rows go with chat requests only; rows need a model.
            "allOf": [
                {
                    "anyOf": [
                        {"properties": {"endpoint": {"const": ENDPOINTS[0]}}},
                        {"properties": {"completion_options": {"type": "null"}}},
                    ]
                },
                {
                    "anyOf": [
                        {"properties": {"input_format": {"enum": ["openai", None]}}},
                        {
                            "required": ["model"],
                            "properties": {
                                "endpoint": {"const": ENDPOINTS[0]},
                                "model": {"type": "string"},
                            },
                        },
                    ]
                },
            ]
        },
    )

    input_file_id: str = Field(min_length=1)
    endpoint: str = Field(
        description="Dataset rows (input_format: dataset) run on /v1/chat/completions only",
        json_schema_extra={"enum": list(ENDPOINTS)},
    )
    completion_window: str = Field(
        default="24h", json_schema_extra={"enum": list(COMPLETION_WINDOWS)}
    )
    metadata: dict[str, str] | None = Field(
        default=None,
        description="At most 16 pairs, keys up to 64 and values up to 512 characters",
        json_schema_extra={
            "maxProperties": 16,
            "propertyNames": {"maxLength": 64},
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
    )
    model: str | None = Field(
        default=None,
        description="The model dataset rows run on: required with them",
        json_schema_extra={"pattern": MODEL_PATTERN},
    )
    input_format: Literal["openai", "dataset"] | None = None
    completion_options: BatchCompletionOptions | None = Field(
        default=None, description="Chat request fields: with endpoint /v1/chat/completions only"
    )


class BatchRequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchError(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    # Fovea's: the model dataset rows run on, and the input's format.
    model: str | None = None
    input_format: str = "openai"
    completion_options: dict[str, Any] | None = None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchInputLine(BaseModel):
    """One line of an OpenAI batch input file."""

    model_config = ConfigDict(extra="ignore")

    custom_id: str = Field(min_length=1, max_length=CUSTOM_ID_MAX)
    method: str
    url: str
    body: dict[str, Any]
