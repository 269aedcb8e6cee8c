"""Tool calling with the clients users have (the ``openai`` client, LangChain's ``bind_tools``)
against a real ``fovea serve`` on the demo model: the calls are generated under a grammar built
from the functions' schemas, so their arguments parse and match whatever the model's quality."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

from tests.contract.demo_server import DemoServer
from tests.contract.test_reference_client import _reference_messages, server

__all__ = ["server"]  # the module-scoped fixture, shared with the reference client's tests

pytestmark = pytest.mark.slow

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city",
        "parameters": WEATHER_SCHEMA,
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 30}},
            "required": ["zone"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What will the weather be in Paris this week?"}]


def _client(server: DemoServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)


def test_a_tool_call_round_trip(server: DemoServer) -> None:
    client = _client(server)
    first = client.chat.completions.create(
        model="gemma-3-demo",
        messages=QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=80,
        seed=1,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].id.startswith("call_")
    call = calls[0]
    assert call.function.name in ("get_weather", "get_time")  # type: ignore[union-attr]
    json.loads(call.function.arguments)  # type: ignore[union-attr]

    history = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C all week"},
    ]
    final = client.chat.completions.create(
        model="gemma-3-demo",
        messages=history,  # type: ignore[arg-type]
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice="none",
        max_tokens=24,
        seed=1,
    )
    assert final.choices[0].message.content
    assert final.choices[0].message.tool_calls is None
    # The call and its result are in the prompt the model read: more than the question alone.
    alone = client.chat.completions.create(
        model="gemma-3-demo",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=1,
    )
    assert final.usage is not None and alone.usage is not None
    assert final.usage.prompt_tokens > alone.usage.prompt_tokens + 20


def test_a_named_choice_calls_that_function(server: DemoServer) -> None:
    response = _client(server).chat.completions.create(
        model="gemma-3-demo",
        messages=QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
        seed=2,
    )
    calls = response.choices[0].message.tool_calls or []
    assert {c.function.name for c in calls} == {"get_time"}  # type: ignore[union-attr]
    for c in calls:
        jsonschema.validate(json.loads(c.function.arguments), TIME["function"]["parameters"])  # type: ignore[index, union-attr]


def test_streamed_tool_call_deltas_are_reassembled_by_the_client(server: DemoServer) -> None:
    client = _client(server)
    arguments: dict[str, Any] = dict(
        model="gemma-3-demo",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=80,
        seed=3,
        temperature=0.7,
    )
    with client.chat.completions.stream(**arguments) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    deltas = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    assert len(deltas) > 1  # the arguments came in fragments
    call = (final.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)
    # The client put the fragments together into the final call.
    assert "".join(e.arguments_delta for e in deltas) == call.function.arguments  # type: ignore[attr-defined]


def test_arguments_match_the_schema_over_fifty_seeded_runs(server: DemoServer) -> None:
    client = _client(server)

    def call(seed: int) -> tuple[str, dict[str, Any]]:
        response = client.chat.completions.create(
            model="gemma-3-demo",
            messages=QUESTION,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=80,
            seed=seed,
            temperature=1.0,
        )
        choice = response.choices[0]
        tool_call = (choice.message.tool_calls or [])[0]
        return choice.finish_reason, json.loads(tool_call.function.arguments)  # type: ignore[union-attr]

    with ThreadPoolExecutor(4) as pool:  # the demo decodes four requests together
        results = list(pool.map(call, range(50)))
    for finish_reason, arguments in results:
        assert finish_reason == "tool_calls"
        jsonschema.validate(arguments, WEATHER_SCHEMA)
    assert len({json.dumps(a, sort_keys=True) for _, a in results}) > 1  # the seeds mattered


def test_images_and_tools_in_one_request(server: DemoServer) -> None:
    response = _client(server).chat.completions.create(
        model="gemma-3-demo",
        messages=_reference_messages("Which city is in these pictures? Look up its weather."),  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=200,  # the city may take 40 characters, one token each
        seed=4,
    )
    assert response.usage is not None and response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.image_tokens == 32
    call = (response.choices[0].message.tool_calls or [])[0]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)  # type: ignore[union-attr]


def test_langchain_bind_tools_round_trip(server: DemoServer) -> None:
    model = ChatOpenAI(
        model="gemma-3-demo",
        api_key=server.api_key,  # type: ignore[arg-type]
        base_url=server.base_url,
        max_tokens=80,  # type: ignore[call-arg]
        temperature=0.5,
        seed=5,
    )
    with_tools = model.bind_tools([WEATHER], tool_choice="get_weather")
    question = HumanMessage("What will the weather be in Paris this week?")
    asked = with_tools.invoke([question])
    assert asked.tool_calls and asked.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]
    jsonschema.validate(asked.tool_calls[0]["args"], WEATHER_SCHEMA)  # type: ignore[attr-defined]
    result = ToolMessage("Sunny, 21 C", tool_call_id=asked.tool_calls[0]["id"])  # type: ignore[attr-defined]
    answer = model.bind_tools([WEATHER], tool_choice="none").invoke([question, asked, result])
    assert isinstance(answer.content, str) and answer.content


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        (
            {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "not in tools",
        ),
        ({"tools": None, "tool_choice": "required"}, "tool_choice", "has no tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools", "pattern"),
        ({"tools": [WEATHER, WEATHER]}, "tools", "given twice"),
        ({"response_format": {"type": "json_object"}}, "response_format", "cannot be combined"),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ]
            },
            "tools[0].function.parameters",
            "type 'object'",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"n": {"type": "integer", "maximum": 10**9}},
                            },
                        },
                    }
                ]
            },
            "tools",
            "integer bounds",
        ),
        (
            {"messages": [{"role": "tool", "content": "21 C"}]},
            "messages[0].tool_call_id",
            "tool_call_id",
        ),
    ],
)
def test_tool_requests_a_client_got_wrong_are_clear_400s(
    server: DemoServer, change: dict[str, Any], param: str, words: str
) -> None:
    body = {
        "model": "gemma-3-demo",
        "messages": QUESTION,
        "tools": [WEATHER],
        "max_tokens": 8,
        **change,
    }
    body = {key: value for key, value in body.items() if value is not None}
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {server.api_key}"},
        json=body,
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error["message"]
    assert param in (error["param"] or "")
