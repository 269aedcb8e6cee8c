"""Wire types of OpenAI's Responses API (``/v1/responses``), shaped as the ``openai`` client
parses them: the request, the response object, its output items and the streamed events."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)
from pydantic.json_schema import JsonDict, JsonValue
from pydantic_core import PydanticCustomError

from fovea.protocol.models import MODEL_DESCRIPTION, MODEL_PATTERN


def _type_required(schema: dict[str, Any]) -> None:
    """A content part's ``type`` is required on the wire (it picks the part's kind), though the
    Python default fills it for parts Fovea builds."""
    schema["required"] = ["type", *schema.get("required", [])]


# -- request: input items -------------------------------------------------------------------


class InputText(BaseModel):
    type: Literal["input_text"]
    text: str


class InputImage(BaseModel):
    """An image: its ``image_url`` (a data: URL) or the ``file_id`` of an uploaded image."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["image_url"], "properties": {"image_url": {"type": "string"}}},
                {"required": ["file_id"], "properties": {"file_id": {"type": "string"}}},
            ]
        }
    )

    type: Literal["input_image"]
    image_url: str | None = Field(default=None, min_length=1)
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] = "auto"


class OutputText(BaseModel):
    """Text a model wrote: in an assistant message of the input, or in an output message."""

    model_config = ConfigDict(json_schema_extra=_type_required)

    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)


InputContent = Annotated[InputText | InputImage | OutputText, Field(discriminator="type")]


def _content_of(*types: str) -> JsonDict:
    parts: JsonDict = {"type": "array", "items": {"properties": {"type": {"enum": list(types)}}}}
    return {"anyOf": [{"type": "string"}, parts]}


# Which parts each role's message may hold: images in user messages only, text a model wrote
# (output_text) in assistant messages only.
_CONTENT_BY_ROLE: list[JsonValue] = [
    {
        "properties": {
            "role": {"const": "user"},
            "content": _content_of("input_text", "input_image"),
        }
    },
    {
        "properties": {
            "role": {"const": "assistant"},
            "content": _content_of("input_text", "output_text"),
        }
    },
    {
        "properties": {
            "role": {"enum": ["system", "developer"]},
            "content": _content_of("input_text"),
        }
    },
]


class MessageItem(BaseModel):
    """A message of the input; ``{"role", "content"}`` without a type is one too."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"anyOf": _CONTENT_BY_ROLE})

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[InputContent]
    id: str | None = None


class FunctionCallItem(BaseModel):
    """A call the model made (an earlier output item, sent back as input)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(BaseModel):
    """The result of the call ``call_id``, as the client's code computed it."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[InputText]
    id: str | None = None


InputItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")
]


# -- request: the rest ----------------------------------------------------------------------


class TextFormat(BaseModel):
    """``text.format``: plain text, any JSON object, or JSON matching ``schema``."""

    model_config = ConfigDict(
        populate_by_name=True,
        serialize_by_alias=True,
        json_schema_extra={  # json_schema needs its schema
            "anyOf": [
                {"properties": {"type": {"enum": ["text", "json_object"]}}},
                {"required": ["schema"], "properties": {"schema": {"type": "object"}}},
            ]
        },
    )

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # {"type": "text"}, as OpenAI echoes it; a json_schema format with what it names.
        fields: dict[str, Any] = handler(self)
        return {key: value for key, value in fields.items() if value is not None}


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat = Field(default_factory=lambda: TextFormat(type="text"))


class FunctionTool(BaseModel):
    """A function the model may call: the Responses API's flat shape."""

    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunctionChoice(BaseModel):
    type: Literal["function"]
    name: str = Field(min_length=1)


ToolChoice = Literal["none", "auto", "required"] | NamedFunctionChoice

MAX_METADATA_PAIRS = 16


def _string_or_items(schema: dict[str, Any]) -> None:
    """``input`` on the wire: a string (one user message) or the list of items."""
    items = dict(schema)
    schema.clear()
    schema["anyOf"] = [{"type": "string"}, items]


class CreateResponseRequest(BaseModel):
    """``POST /v1/responses``. Unknown fields are kept in ``model_extra``, never rejected."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(
        min_length=1, description=MODEL_DESCRIPTION, json_schema_extra={"pattern": MODEL_PATTERN}
    )
    # A string is sent as one user message.
    input: Annotated[list[InputItem], Field(min_length=1, json_schema_extra=_string_or_items)]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    text: TextConfig = Field(default_factory=TextConfig)
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        # A string is one user message; {"role", "content"} without a type is a message too.
        if isinstance(value, str):
            return [{"type": "message", "role": "user", "content": value}]
        if value == []:
            raise PydanticCustomError(
                "empty_input", "input is empty: send a string, or a list with at least one item"
            )
        if isinstance(value, list):
            return [
                {**item, "type": "message"}
                if isinstance(item, dict) and "type" not in item and "role" in item
                else item
                for item in value
            ]
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            if len(value) > MAX_METADATA_PAIRS:
                raise ValueError(f"at most {MAX_METADATA_PAIRS} key-value pairs are allowed")
            if any(len(key) > 64 for key in value):
                raise ValueError("keys are at most 64 characters long")
        return value


# -- response -------------------------------------------------------------------------------

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    status: ItemStatus
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class FunctionCall(BaseModel):
    id: str
    type: Literal["function_call"] = "function_call"
    status: ItemStatus
    call_id: str
    name: str
    arguments: str


OutputItem = Annotated[OutputMessage | FunctionCall, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class ResponseError(BaseModel):
    code: str
    message: str


ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed"]


class ResponseObject(BaseModel):
    """A response, as created, streamed, stored and read back."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    temperature: float | None = None
    top_p: float | None = None
    text: TextConfig = Field(default_factory=TextConfig)
    tool_choice: ToolChoice = "auto"
    tools: list[FunctionTool] = Field(default_factory=list)
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


# -- input items of a stored response (GET /v1/responses/{id}/input_items) -------------------


class StoredMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    status: ItemStatus = "completed"
    role: Literal["user", "system", "developer", "assistant"]
    content: list[InputContent]


class StoredFunctionCallOutput(BaseModel):
    id: str
    type: Literal["function_call_output"] = "function_call_output"
    status: ItemStatus = "completed"
    call_id: str
    output: str


StoredItem = Annotated[
    StoredMessage | FunctionCall | StoredFunctionCallOutput, Field(discriminator="type")
]


class InputItemsParams(BaseModel):
    """The query of ``GET /v1/responses/{id}/input_items``."""

    limit: int = Field(default=20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


class InputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StoredItem]
    first_id: str | None
    last_id: str | None
    has_more: bool = False


# -- streamed events ------------------------------------------------------------------------


LifecycleEventType = Literal[
    "response.created", "response.in_progress", "response.completed", "response.incomplete"
]
OutputItemEventType = Literal["response.output_item.added", "response.output_item.done"]
ContentPartEventType = Literal["response.content_part.added", "response.content_part.done"]


class ResponseLifecycleEvent(BaseModel):
    type: LifecycleEventType
    sequence_number: int
    response: ResponseObject


class OutputItemEvent(BaseModel):
    type: OutputItemEventType
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartEvent(BaseModel):
    type: ContentPartEventType
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class TextDeltaEvent(BaseModel):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = Field(default_factory=list)


class TextDoneEvent(BaseModel):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = Field(default_factory=list)


class FunctionArgumentsDeltaEvent(BaseModel):
    type: Literal["response.function_call_arguments.delta"] = (
        "response.function_call_arguments.delta"
    )
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class FunctionArgumentsDoneEvent(BaseModel):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    sequence_number: int
    item_id: str
    output_index: int
    name: str
    arguments: str


ResponseEvent = (
    ResponseLifecycleEvent
    | OutputItemEvent
    | ContentPartEvent
    | TextDeltaEvent
    | TextDoneEvent
    | FunctionArgumentsDeltaEvent
    | FunctionArgumentsDoneEvent
)
