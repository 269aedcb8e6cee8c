"""Wire types of the usage API (``/v1/organization/usage/completions`` and ``.../embeddings``),
in OpenAI's shape.

A project is a folder, a user a service account. Fovea adds ``input_image_tokens``,
``num_images`` and ``num_failed_requests`` to completions' results, ``num_failed_requests`` and
``batch`` to embeddings' results.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

BucketWidth = Literal["1m", "1h", "1d"]
GroupBy = Literal["project_id", "user_id", "api_key_id", "model", "batch"]

BUCKET_SECONDS: dict[str, int] = {"1m": 60, "1h": 3600, "1d": 86400}
# OpenAI's default and maximum numbers of buckets per page, by width.
BUCKET_LIMITS: dict[str, tuple[int, int]] = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


class UsageParams(BaseModel):
    start_time: int = Field(ge=0, description="Start of the range, Unix seconds (inclusive)")
    end_time: int | None = Field(
        default=None,
        ge=0,
        description="End of the range, Unix seconds (exclusive), after start_time; now if unset",
    )
    bucket_width: BucketWidth = "1d"
    project_ids: list[str] | None = None
    user_ids: list[str] | None = None
    api_key_ids: list[str] | None = None
    models: list[str] | None = None
    batch: bool | None = None
    group_by: list[GroupBy] | None = None
    limit: int | None = Field(
        default=None,
        ge=1,
        description="Buckets per page: at most 1440 of 1m, 168 of 1h, 31 of 1d (by default 60, "
        "24, 7)",
        json_schema_extra={"maximum": max(limit for _, limit in BUCKET_LIMITS.values())},
    )
    page: str | None = Field(
        default=None,
        description="The next_page of a previous page of the same query; any other value is a 400",
    )


class ResultGroup(BaseModel):
    """What a result is summed over: the values of the ``group_by`` fields, None for others."""

    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    batch: bool | None = None


class CompletionsResult(ResultGroup):
    object: Literal["organization.usage.completions.result"] = (
        "organization.usage.completions.result"
    )
    input_tokens: int
    output_tokens: int
    input_cached_tokens: int
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int
    num_model_requests: int
    num_images: int
    num_failed_requests: int


class EmbeddingsResult(ResultGroup):
    object: Literal["organization.usage.embeddings.result"] = "organization.usage.embeddings.result"
    input_tokens: int
    num_model_requests: int
    num_failed_requests: int


Result = TypeVar("Result", CompletionsResult, EmbeddingsResult)


class UsageBucket(BaseModel, Generic[Result]):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[Result]


class UsagePage(BaseModel, Generic[Result]):
    object: Literal["page"] = "page"
    data: list[UsageBucket[Result]]
    has_more: bool
    next_page: str | None
