"""Wire types of ``POST /v1/embeddings``, shaped exactly as OpenAI's."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from fovea.protocol.models import MODEL_DESCRIPTION, MODEL_PATTERN

# OpenAI's limit on the inputs of one request.
MAX_INPUTS = 2048

# The shapes ``input`` may take, as the document states them (``_check_input`` refuses the rest
# first, in words that name the culprit).
Text = Annotated[str, Field(min_length=1)]
TokenId = Annotated[int, Field(ge=0)]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
TokenIds = Annotated[list[TokenId], Field(min_length=1, max_length=MAX_INPUTS)]
TokenArrays = Annotated[
    list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1, max_length=MAX_INPUTS)
]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1, description=MODEL_DESCRIPTION, json_schema_extra={"pattern": MODEL_PATTERN}
    )
    # A text, texts, or OpenAI's token arrays (one, or several): token ids of this model's
    # vocabulary, fed as given.
    input: Text | Texts | TokenIds | TokenArrays
    # base64: each vector's little-endian float32 bytes (what the openai client asks for).
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        """Refuses, in words that name the culprit, what OpenAI refuses: nothing to embed, an
        empty text, a list mixing texts and token ids, more than ``MAX_INPUTS`` inputs."""
        if isinstance(value, str):
            _require_text(value, "input")
            return value
        if not isinstance(value, list):
            raise _invalid("input must be a string, a list of strings or a list of token ids")
        if not value:
            raise _invalid("input is an empty list: send at least one text")
        if len(value) > MAX_INPUTS:
            raise _invalid(f"input has {len(value)} items; at most {MAX_INPUTS} per request")
        for index, item in enumerate(value):
            if isinstance(item, str):
                _require_text(item, f"input[{index}]")
            elif isinstance(item, list):
                if not item or not all(_is_token(t) for t in item):
                    raise _invalid(
                        f"input[{index}] must be a non-empty list of token ids (integers, 0 or "
                        "more)"
                    )
            elif not _is_token(item):
                what = item if isinstance(item, int) else type(item).__name__
                raise _invalid(
                    f"input[{index}] must be a string or a token id (an integer, 0 or more), "
                    f"not {what}"
                )
        if len({_kind(item) for item in value}) > 1:
            raise _invalid("input mixes texts, token ids and token lists: send one kind")
        return value


def _kind(item: Any) -> str:
    return "text" if isinstance(item, str) else "tokens" if isinstance(item, list) else "token"


def _is_token(value: Any) -> bool:
    # 7.0 is the integer 7 in JSON (and to JSON Schema), as pydantic reads it too.
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return integral and not isinstance(value, bool) and value >= 0


def _require_text(value: str, where: str) -> None:
    if not value:
        raise _invalid(f"{where} is an empty string: there is nothing to embed")


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_input", message)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
