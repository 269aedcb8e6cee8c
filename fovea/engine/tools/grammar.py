"""The grammar a tool call is generated under: the call's fixed frame around each function's
arguments, converted from its JSON schema by llama.cpp's own converter."""

from __future__ import annotations

import json
import math
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from fovea.engine.tools.prompt import CALL_CLOSE, CALL_OPEN
from fovea.engine.types import ToolFunction, ToolUse
from fovea.errors import InvalidRequestError

ROOT = "root"
# Where a lazy grammar (tool_choice "auto") takes over: at the first call's opening tag.
AUTO_TRIGGER = r"[\s\S]*?(" + CALL_OPEN + r")[\s\S]*"


# Integer ranges up to this many values are written out as alternatives.
_MAX_ENUMERATED = 2048
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


# A JSON string's character: llama-cpp-python's converter allows raw control characters
# (a newline inside a string: not JSON); llama.cpp's own grammars refuse them, as here.
_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


class _Converter(SchemaConverter):
    """llama.cpp's converter, with strings that are JSON (no raw control characters) and the
    numeric bounds it leaves out (it would let a model write ``"days": 1000000`` for
    ``maximum: 7``): small integer ranges exactly, and the sign of a number bounded at zero;
    other bounds are refused rather than not enforced."""

    def format_grammar(self) -> str:
        if "char" in self._rules:
            self._rules["char"] = _CHAR
        return str(super().format_grammar())

    def visit(self, schema: dict[str, Any], name: str) -> str:
        kind = schema.get("type")
        bounds = {key: schema[key] for key in _BOUNDS if key in schema}
        if kind in ("integer", "number") and bounds:
            rule = _integer_rule(bounds) if kind == "integer" else _number_rule(bounds)
            return str(self._add_rule(name or "root", rule))
        return str(super().visit(schema, name))


def _integer_rule(bounds: dict[str, Any]) -> str:
    low = _low(bounds)
    high = _high(bounds)
    if low is not None and high is not None and 0 <= high - low < _MAX_ENUMERATED:
        values = " | ".join(f'"{value}"' for value in range(low, high + 1))
        return f"({values}) space"
    if high is None and low in (0, 1):
        digits = "[1-9] [0-9]{0,15}"
        return f'("0" | {digits}) space' if low == 0 else f"{digits} space"
    raise ValueError(
        f"integer bounds {bounds} (supported: a range of fewer than {_MAX_ENUMERATED} "
        "values, or a minimum of 0 or 1)"
    )


def _number_rule(bounds: dict[str, Any]) -> str:
    fraction = '("." [0-9]{1,15})?'
    if bounds == {"minimum": 0}:
        return f'("0" | [1-9] [0-9]{{0,15}}) {fraction} space'
    if bounds == {"minimum": 0, "maximum": 1}:
        return f'("0" {fraction} | "1" ("." "0"{{1,15}})?) space'
    raise ValueError(f"number bounds {bounds} (supported: minimum 0, or minimum 0 and maximum 1)")


def _low(bounds: dict[str, Any]) -> int | None:
    if "minimum" in bounds:
        return math.ceil(bounds["minimum"])
    if "exclusiveMinimum" in bounds:
        return math.floor(bounds["exclusiveMinimum"]) + 1
    return None


def _high(bounds: dict[str, Any]) -> int | None:
    if "maximum" in bounds:
        return math.floor(bounds["maximum"])
    if "exclusiveMaximum" in bounds:
        return math.ceil(bounds["exclusiveMaximum"]) - 1
    return None


def json_schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF for a JSON value that matches ``schema`` (``response_format`` json_schema); raises
    ``InvalidRequestError`` for a schema the converter cannot take."""
    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        converter.visit(converter.resolve_refs(dict(schema), "response_format"), "")
    except Exception as exc:  # the converter raises bare exceptions for what it cannot take
        raise InvalidRequestError(
            f"response_format.json_schema.schema is not supported: {exc}",
            param="response_format",
        ) from exc
    return converter.format_grammar()


def tool_grammar(tools: ToolUse) -> str:
    """GBNF whose ``root`` is one call (or several, when parallel calls are allowed) of the
    functions ``tools.choice`` allows; raises ``InvalidRequestError`` for a schema the
    converter cannot take."""
    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    calls = []
    for index, function in enumerate(_allowed(tools)):
        arguments = _arguments_rule(converter, function, index)
        head = f'{CALL_OPEN}{{"name": {json.dumps(function.name)}, "arguments": '
        literal_head = converter._format_literal(head)
        literal_tail = converter._format_literal(f"}}{CALL_CLOSE}")
        calls.append(
            converter._add_rule(f"call{index}", f"{literal_head} {arguments} {literal_tail}")
        )
    call = converter._add_rule("call", " | ".join(calls))
    # A named function is called once; "auto" and "required" may call several in a row.
    several = tools.parallel and tools.choice in ("auto", "required")
    more = f" ({converter._format_literal(chr(10))} {call})*" if several else ""
    converter._add_rule(ROOT, f"{call}{more}")
    return str(converter.format_grammar())


def _allowed(tools: ToolUse) -> list[ToolFunction]:
    if tools.choice in ("auto", "required"):
        return list(tools.functions)
    return [f for f in tools.functions if f.name == tools.choice]


def _arguments_rule(converter: _Converter, function: ToolFunction, index: int) -> str:
    try:
        schema = converter.resolve_refs(dict(function.parameters), f"tool{index}")
        return str(converter.visit(schema, f"call{index}-arguments"))
    except Exception as exc:  # the converter raises bare exceptions for what it cannot take
        raise InvalidRequestError(
            f"The parameters schema of function {function.name!r} is not supported: {exc}",
            param="tools",
        ) from exc
