"""Tool calling in chat requests: checking ``tools`` and ``tool_choice``, and putting a
completion's streamed calls back together."""

from __future__ import annotations

from dataclasses import dataclass, field

from fovea.engine.types import ToolCallDelta, ToolFunction, ToolUse
from fovea.errors import InvalidRequestError
from fovea.protocol import chat as wire


def tool_use(body: wire.ChatCompletionRequest) -> ToolUse | None:
    """What the request offers the model; None when it offers nothing or ``tool_choice`` is
    "none". Raises ``InvalidRequestError`` for a choice the tools cannot meet."""
    choice = body.tool_choice
    if not body.tools:
        if choice is not None and choice not in ("none", "auto"):
            raise InvalidRequestError(
                "tool_choice names a tool or requires one, but the request has no tools",
                param="tool_choice",
            )
        return None
    names = [tool.function.name for tool in body.tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidRequestError(
            f"Function names must be unique; {duplicates[0]!r} is given twice", param="tools"
        )
    for index, tool in enumerate(body.tools):
        if tool.function.parameters.get("type", "object") != "object":
            raise InvalidRequestError(
                f"tools[{index}].function.parameters must be a JSON schema of type 'object'",
                param=f"tools[{index}].function.parameters",
            )
    if choice == "none":
        return None
    chosen: str
    if isinstance(choice, wire.NamedToolChoice):
        if choice.function.name not in names:
            raise InvalidRequestError(
                f"tool_choice names function {choice.function.name!r}, which is not in tools "
                f"({', '.join(names)})",
                param="tool_choice",
            )
        chosen = choice.function.name
    else:
        chosen = choice or "auto"
    if body.response_format is not None and body.response_format.type != "text":
        raise InvalidRequestError(
            "response_format cannot be combined with tools: a tool call's arguments already "
            "follow its schema; set tool_choice to 'none' to get structured text instead",
            param="response_format",
        )
    functions = tuple(
        ToolFunction(t.function.name, t.function.description, t.function.parameters)
        for t in body.tools
    )
    parallel = body.parallel_tool_calls is not False
    return ToolUse(functions, choice=chosen, parallel=parallel)


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class CallsSoFar:
    """The calls of a completion, gathered from its chunks' deltas."""

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}

    def add(self, deltas: tuple[ToolCallDelta, ...]) -> None:
        for delta in deltas:
            call = self._calls.setdefault(delta.index, _Call())
            call.id = delta.id or call.id
            call.name = delta.name or call.name
            if delta.arguments:
                call.arguments.append(delta.arguments)

    def wire(self) -> list[wire.ToolCall] | None:
        if not self._calls:
            return None
        return [
            wire.ToolCall(
                id=call.id,
                function=wire.FunctionCall(name=call.name, arguments="".join(call.arguments)),
            )
            for _, call in sorted(self._calls.items())
        ]


def wire_deltas(deltas: tuple[ToolCallDelta, ...]) -> list[wire.ToolCallDelta]:
    return [
        wire.ToolCallDelta(
            index=delta.index,
            id=delta.id,
            type="function" if delta.id is not None else None,
            function=wire.FunctionCallDelta(name=delta.name, arguments=delta.arguments),
        )
        for delta in deltas
    ]
