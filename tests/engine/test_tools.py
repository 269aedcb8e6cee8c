"""Tool calling on an in-process model: the generic prompt, a template's own tool rendering,
the grammar a call is generated under, the parser that reads calls back as they stream, and the
real demo model calling."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

import jsonschema
import pytest
from llama_cpp.llama_grammar import LlamaGrammar

from fovea.engine.chat_template import GEMMA3_TEMPLATE, ChatTemplate
from fovea.engine.llamacpp import LlamaCppConfig, LlamaCppEngine
from fovea.engine.tools.grammar import tool_grammar
from fovea.engine.tools.parser import ToolCallParser
from fovea.engine.tools.prompt import call_text, lower
from fovea.engine.types import (
    GenerationChunk,
    GenerationRequest,
    Message,
    SamplingParams,
    TextPart,
    ToolCall,
    ToolFunction,
    ToolUse,
)
from fovea.errors import InvalidRequestError
from fovea.modelgen.demo import DemoModelFiles

WEATHER = ToolFunction(
    "get_weather",
    "The weather now in a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
SEARCH = ToolFunction(
    "search",
    "Search the web",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string", "maxLength": 40},
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 20},
                "maxItems": 3,
            },
        },
        "required": ["query"],
    },
)
# Bounded strings and arrays: a call fits in max_tokens whatever the demo model writes.


def _parse_all(text: str, piece: int) -> tuple[str, list[tuple[int, str | None, str | None, str]]]:
    parser = ToolCallParser(new_id=iter(f"call_{i}" for i in range(9)).__next__)
    content, deltas = "", []
    for start in range(0, len(text), piece):
        parsed = parser.feed(text[start : start + piece])
        content += parsed.content
        deltas += [(d.index, d.id, d.name, d.arguments) for d in parsed.calls]
    rest = parser.close()
    return content + rest.content, deltas + [
        (d.index, d.id, d.name, d.arguments) for d in rest.calls
    ]


@pytest.mark.parametrize("piece", [1, 3, 7, 1000])
def test_calls_are_read_back_however_the_text_is_cut(piece: int) -> None:
    arguments = '{"city": "Paris }{ \\" x", "unit": "celsius", "nested": [{"a": 1}]}'
    text = (
        "Let me check. <tool_c"  # not a call: looks like one at first
        "x> "
        + call_text("get_weather", arguments)
        + "\n"
        + call_text("search", '{"query": "rain"}')
    )
    content, deltas = _parse_all(text, piece)
    assert content == "Let me check. <tool_cx> "
    heads = [(i, call_id, name) for i, call_id, name, _ in deltas if call_id]
    assert heads == [(0, "call_0", "get_weather"), (1, "call_1", "search")]
    joined = {i: "".join(a for j, _, _, a in deltas if j == i) for i in (0, 1)}
    assert json.loads(joined[0]) == json.loads(arguments)
    assert json.loads(joined[1]) == {"query": "rain"}


def test_a_call_cut_short_keeps_what_was_written_and_text_alone_is_content() -> None:
    content, deltas = _parse_all('<tool_call>{"name": "search", "arguments": {"query": "ra', 4)
    assert content == ""
    assert "".join(d[3] for d in deltas) == '{"query": "ra'
    assert _parse_all("Just an answer <tool", 2) == ("Just an answer <tool", [])


def test_history_with_calls_and_results_becomes_plain_turns() -> None:
    messages = (
        Message("user", (TextPart("Weather in Paris?"),)),
        Message("assistant", (), (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", (TextPart("18 C, sunny"),), tool_call_id="call_1"),
    )
    lowered = lower(messages, ToolUse((WEATHER,), choice="required"))
    assert [m.role for m in lowered] == ["system", "user", "assistant", "user"]
    system = lowered[0].parts[0]
    assert isinstance(system, TextPart)
    assert '"get_weather"' in system.text and "must call" in system.text
    assert lowered[2].parts == (TextPart(call_text("get_weather", '{"city": "Paris"}')),)
    result = lowered[3].parts[0]
    assert isinstance(result, TextPart)
    assert json.loads(
        result.text.removeprefix("<tool_response>").removesuffix("</tool_response>")
    ) == {
        "name": "get_weather",
        "content": "18 C, sunny",
    }


# A ChatML template that renders tools itself, in the Hermes format (as Qwen's do), written for
# these tests: the functions in a <tools> block, calls as <tool_call>, results as <tool_response>.
HERMES_TEMPLATE = """
{%- if messages[0].role == 'system' %}{% set system = messages[0].content %}
{%- set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}
{%- if tools or system %}<|im_start|>system
{{ system }}{% if tools %}
# Tools
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Call a function with <tool_call>{"name": ..., "arguments": ...}</tool_call>{% endif %}<|im_end|>
{% endif %}
{%- for message in turns %}
{%- if message.role == 'tool' %}<|im_start|>user
<tool_response>{{ message.name }}: {{ message.content }}</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{% if message.content is string %}{{ message.content }}
{%- else %}{% for part in message.content %}{{ part.text }}{% endfor %}{% endif %}
{%- for call in message.tool_calls or [] %}{% set arguments = call.function.arguments | tojson %}
<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ arguments }}}</tool_call>
{%- endfor %}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
HISTORY = (
    Message("user", (TextPart("Weather in Paris and Rome?"),)),
    Message(
        "assistant",
        (),
        (
            ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "celsius"}'),
            ToolCall("call_2", "get_weather", '{"city": "Rome", "unit": "celsius"}'),
        ),
    ),
    Message("tool", (TextPart("18 C, sunny"),), tool_call_id="call_1"),
    Message("tool", (TextPart("24 C, clear"),), tool_call_id="call_2"),
)


def test_a_template_that_renders_tools_is_given_them_and_the_tool_turns() -> None:
    template = ChatTemplate(HERMES_TEMPLATE, bos_token="<bos>", eos_token="<eos>")
    assert template.renders_tools
    text = template.render(HISTORY, "<image>", ToolUse((WEATHER,), choice="required"))
    function = {"name": "get_weather", "description": WEATHER.description}
    tools_block = text.split("<tools>\n")[1].split("</tools>")[0]
    assert json.loads(tools_block) == {
        "type": "function",
        "function": {**function, "parameters": WEATHER.parameters},
    }
    # The calls as the template writes them, each result in a turn of its own, and no sign of
    # the generic prompt.
    assert (
        '<|im_start|>assistant\n<tool_call>{"name": "get_weather", "arguments": '
        '{"city": "Paris", "unit": "celsius"}}</tool_call><tool_call>' in text
    )
    assert "<tool_response>get_weather: 18 C, sunny</tool_response>" in text
    assert "<tool_response>get_weather: 24 C, clear</tool_response>" in text
    assert text.count("<|im_start|>user") == 3
    assert "You can call these functions" not in text
    assert text.endswith("<|im_start|>assistant\n")


def test_a_template_without_tools_or_in_another_format_gets_the_generic_prompt() -> None:
    other_format = (
        "{% if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}"
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    )
    tools = ToolUse((WEATHER,), choice="required")
    for source in (GEMMA3_TEMPLATE, other_format):
        template = ChatTemplate(source, bos_token="<bos>", eos_token="<eos>")
        assert not template.renders_tools
        text = template.render(HISTORY, "<image>", tools)
        assert "You can call these functions" in text
        assert "[AVAILABLE_TOOLS]" not in text
        assert call_text("get_weather", '{"city": "Rome", "unit": "celsius"}') in text
        assert '"content": "24 C, clear"' in text


def test_the_grammar_is_accepted_by_llama_cpp_for_each_choice() -> None:
    for choice in ("auto", "required", "search"):
        for parallel in (True, False):
            grammar = tool_grammar(ToolUse((WEATHER, SEARCH), choice=choice, parallel=parallel))
            LlamaGrammar.from_string(grammar, verbose=False)
            assert ("get_weather" in grammar) is (choice != "search")


def test_a_schema_the_converter_cannot_take_is_a_400() -> None:
    odd = ToolFunction("odd", "", {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}})
    with pytest.raises(InvalidRequestError, match="'odd' is not supported"):
        tool_grammar(ToolUse((odd,), choice="required"))
    # A bound the grammar could not enforce is refused, not silently ignored.
    wide = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10**9}}}
    with pytest.raises(InvalidRequestError, match="integer bounds"):
        tool_grammar(ToolUse((ToolFunction("wide", "", wide),), choice="required"))


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [
        ({"type": "integer", "minimum": 1, "maximum": 7}, ["1", "7"], ["0", "8", "10"]),
        ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}, ["1", "2"], ["0", "3"]),
        ({"type": "integer", "minimum": 0}, ["0", "42"], ["-1", "007"]),
        (
            {"type": "number", "minimum": 0, "maximum": 1},
            ["0", "0.25", "1", "1.0"],
            ["1.5", "-0.1"],
        ),
    ],
)
def test_numeric_bounds_are_part_of_the_grammar(
    bounds: dict[str, object], inside: list[str], outside: list[str]
) -> None:
    grammar = tool_grammar(
        ToolUse((ToolFunction("f", "", {"type": "object", "properties": {"n": bounds}}),), "f")
    )
    rule = next(line for line in grammar.splitlines() if line.startswith("call0-arguments-n ::="))
    pattern = _gbnf_to_regex(rule.split("::=", 1)[1])
    for value in inside:
        assert re.fullmatch(pattern, value), (value, rule)
    for value in outside:
        assert not re.fullmatch(pattern, value), (value, rule)


def _gbnf_to_regex(rule: str) -> str:
    """The few GBNF forms the numeric rules use, as a Python regex (space dropped)."""
    body = rule.replace(" space", "").strip()
    body = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), body)
    return body.replace(" ", "")


# -- the real demo model ----------------------------------------------------------------------


def _started(
    demo_model: DemoModelFiles, chat_template: str
) -> Iterator[tuple[LlamaCppEngine, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    config = LlamaCppConfig(
        name="gemma-3-demo",
        model_path=demo_model.model,
        mmproj_path=demo_model.mmproj,
        context_length=2048,
        chat_template=chat_template,
    )
    engine = LlamaCppEngine(config)
    loop.run_until_complete(engine.start())
    yield engine, loop
    loop.run_until_complete(engine.aclose())
    loop.close()


@pytest.fixture(scope="module")
def engine(
    demo_model: DemoModelFiles,
) -> Iterator[tuple[LlamaCppEngine, asyncio.AbstractEventLoop]]:
    yield from _started(demo_model, "gemma3")


def _generate(
    engine: tuple[LlamaCppEngine, asyncio.AbstractEventLoop], request: GenerationRequest
) -> list[GenerationChunk]:
    model, loop = engine

    async def collect() -> list[GenerationChunk]:
        return [chunk async for chunk in model.generate(request)]

    return loop.run_until_complete(collect())


def _ask(tools: ToolUse, seed: int) -> GenerationRequest:
    return GenerationRequest(
        f"tools-{seed}",
        (Message("user", (TextPart("What is the weather like in Paris this week?"),)),),
        SamplingParams(temperature=1.0, seed=seed, max_tokens=200),
        tools=tools,
    )


@pytest.mark.slow
def test_required_calls_always_parse_and_match_their_schema(
    engine: tuple[LlamaCppEngine, asyncio.AbstractEventLoop],
) -> None:
    schemas = {f.name: f.parameters for f in (WEATHER, SEARCH)}
    for seed in range(8):
        tools = ToolUse((WEATHER, SEARCH), choice="required", parallel=False)
        chunks = _generate(engine, _ask(tools, seed))
        assert chunks[-1].finish_reason == "tool_calls"
        deltas = [d for c in chunks for d in c.tool_calls]
        names = {d.index: d.name for d in deltas if d.name}
        assert names, "at least one call"
        for index, name in names.items():
            arguments = json.loads("".join(d.arguments for d in deltas if d.index == index))
            jsonschema.validate(arguments, schemas[name])
        assert "".join(c.text for c in chunks).strip() == ""


@pytest.mark.slow
def test_a_named_choice_calls_that_function_once(
    engine: tuple[LlamaCppEngine, asyncio.AbstractEventLoop],
) -> None:
    tools = ToolUse((WEATHER, SEARCH), choice="search", parallel=False)
    chunks = _generate(engine, _ask(tools, 3))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [d.name for d in deltas if d.name] == ["search"]
    jsonschema.validate(json.loads("".join(d.arguments for d in deltas)), SEARCH.parameters)
    assert chunks[-1].finish_reason == "tool_calls"


@pytest.mark.slow
def test_a_model_whose_template_renders_tools_calls_through_it(
    demo_model: DemoModelFiles,
) -> None:
    """The demo model behind the Hermes template: the prompt is the template's, and the call
    is still generated under the grammar and read back."""
    for engine in _started(demo_model, HERMES_TEMPLATE):
        model, loop = engine
        tools = ToolUse((WEATHER,), choice="required", parallel=False)
        tokens = loop.run_until_complete(model.tokenize(HISTORY))
        assert "<tool_response>get_weather: 24 C, clear</tool_response>" in "".join(
            t.text for t in tokens
        )
        for request in (_ask(tools, 1), GenerationRequest("again", HISTORY, tools=tools)):
            chunks = _generate(engine, request)
            assert chunks[-1].finish_reason == "tool_calls"
            deltas = [d for c in chunks for d in c.tool_calls]
            assert [d.name for d in deltas if d.name] == ["get_weather"]
            arguments = json.loads("".join(d.arguments for d in deltas))
            jsonschema.validate(arguments, WEATHER.parameters)
