"""The Responses API through the real app (IAM, media, SQLite) on a scripted engine: how a
request becomes a chat generation, the events of a stream, stored responses and bad input."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.engine.types import (
    GenerationChunk,
    GenerationRequest,
    ImagePart,
    TextPart,
    ToolCallDelta,
    Usage,
)
from fovea.errors import EngineError
from fovea.settings import BranchConfig, DeploymentConfig, Settings
from tests.batch_files import batch_rows, finished_batch, upload_lines
from tests.conftest import Keys, auth, make_keys, png_data_url
from tests.fakes import IMAGE_TOKENS, ScriptedEngine

RED, BLUE = png_data_url((255, 0, 0)), png_data_url((0, 0, 255))


def _create(client: TestClient, key: str, **body: Any) -> httpx.Response:
    body.setdefault("model", "gemma-3-demo")
    body.setdefault("input", "hello there")
    return client.post("/v1/responses", json=body, headers=auth(key))


def _created(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = _create(client, key, **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _read(client: TestClient, key: str, response_id: str) -> httpx.Response:
    return client.get(f"/v1/responses/{response_id}", headers=auth(key))


def _last_request() -> GenerationRequest:
    return ScriptedEngine.instances[0].requests[-1]


def _conversation(request: GenerationRequest) -> list[tuple[str, list[str]]]:
    """Each message's role and parts, an image as ``image:<digest prefix>``."""
    return [
        (
            message.role,
            [
                part.text if isinstance(part, TextPart) else f"image:{part.image.digest[:8]}"
                for part in message.parts
            ],
        )
        for message in request.messages
    ]


def _events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def _other_folders_key(keys: Keys) -> str:
    folder = keys.iam.create_folder("other")
    account = keys.iam.create_service_account(folder.id, "other-sa")
    keys.iam.grant_role(folder.id, account.id, "ai.languageModels.user")
    return keys.iam.create_key(account.id).secret


# -- creating a response --------------------------------------------------------------------


def test_text_input_gets_a_response_in_openais_shape(client: TestClient, keys: Keys) -> None:
    body = _created(client, keys.api_key, instructions="be brief", metadata={"team": "qa"})
    assert body["id"].startswith("resp_")
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["model"] == f"gpt://{keys.folder_id}/gemma-3-demo/latest"
    [message] = body["output"]
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": "echo: hello there", "annotations": []}
    ]
    usage = body["usage"]
    assert usage["input_tokens"] == 10
    assert usage["output_tokens"] == 3
    assert usage["total_tokens"] == 13
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert body["incomplete_details"] is None
    assert body["instructions"] == "be brief"
    assert body["metadata"] == {"team": "qa"}
    assert body["text"] == {"format": {"type": "text"}}
    assert body["store"] is True
    assert _conversation(_last_request()) == [("system", ["be brief"]), ("user", ["hello there"])]


def test_input_items_become_chat_messages_with_images_and_detail(
    client: TestClient, keys: Keys
) -> None:
    body = _created(
        client,
        keys.api_key,
        input=[
            {"role": "developer", "content": "answer in French"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "compare"},
                    {"type": "input_image", "image_url": RED, "detail": "low"},
                    {"type": "input_image", "image_url": BLUE},
                ],
            },
        ],
    )
    request = _last_request()
    images = [part.image for part in request.messages[1].parts if isinstance(part, ImagePart)]
    assert [image.detail for image in images] == ["low", "auto"]
    assert _conversation(request)[0] == ("system", ["answer in French"])
    assert body["output"][0]["content"][0]["text"].startswith("echo: compare images: ")
    assert body["usage"]["input_tokens"] == 10 + 2 * IMAGE_TOKENS


def test_sampling_and_length_reach_the_engine(client: TestClient, keys: Keys) -> None:
    _created(client, keys.api_key, temperature=0.2, top_p=0.5, max_output_tokens=7)
    sampling = _last_request().sampling
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens) == (0.2, 0.5, 7)


def test_without_temperature_the_deployments_default_is_sampled_and_echoed(
    client: TestClient, keys: Keys
) -> None:
    body = _created(client, keys.api_key)
    assert _last_request().sampling.temperature == 0.3  # default_temperature in the catalog
    assert body["temperature"] == 0.3


def test_json_schema_format_reaches_the_engine(client: TestClient, keys: Keys) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    text = {"format": {"type": "json_schema", "name": "count", "schema": schema, "strict": True}}
    body = _created(client, keys.api_key, text=text)
    assert _last_request().response_format.kind == "json_schema"
    assert _last_request().response_format.schema == schema
    assert body["text"] == text


def test_cut_at_max_output_tokens_is_incomplete(client: TestClient, keys: Keys) -> None:
    body = _created(client, keys.api_key, max_output_tokens=2)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert body["output"][0]["content"][0]["text"] == "echo: hello"
    assert body["max_output_tokens"] == 2


# -- streaming ------------------------------------------------------------------------------


def test_stream_sends_the_responses_event_sequence(client: TestClient, keys: Keys) -> None:
    response = _create(client, keys.api_key, stream=True, input="one two")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [data["type"] for _, data in events] == kinds
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    deltas = "".join(data["delta"] for kind, data in events if kind.endswith("text.delta"))
    assert deltas == "echo: one two"
    item_id = events[2][1]["item"]["id"]
    assert {data["item_id"] for _, data in events[3:-2]} == {item_id}
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["id"] == item_id
    assert final["output"][0]["content"][0]["text"] == deltas
    assert final["usage"]["output_tokens"] == 3
    assert events[0][1]["response"]["status"] == "in_progress"
    assert events[0][1]["response"]["id"] == final["id"]
    assert "[DONE]" not in response.text


def test_stream_cut_at_max_output_tokens_ends_incomplete(client: TestClient, keys: Keys) -> None:
    events = _events(_create(client, keys.api_key, stream=True, max_output_tokens=1).text)
    kind, data = events[-1]
    assert kind == "response.incomplete"
    assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2][1]["item"]["status"] == "incomplete"


def test_an_engine_failure_mid_stream_is_an_error_event(client: TestClient, keys: Keys) -> None:
    _created(client, keys.api_key)  # starts the engine

    async def failing(request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        yield GenerationChunk("partial")
        raise EngineError("the model crashed")

    ScriptedEngine.instances[0].generate = failing  # type: ignore[method-assign]
    events = _events(_create(client, keys.api_key, stream=True).text)
    kind, data = events[-1]
    assert kind == "error"
    assert data["type"] == "error"
    assert data["message"] == "the model crashed"
    assert data["code"] == "engine_error"
    assert data["sequence_number"] == events[-2][1]["sequence_number"] + 1


# -- stored responses and conversations ----------------------------------------------------


def test_previous_response_id_replays_the_conversation_without_resending_images(
    client: TestClient, keys: Keys
) -> None:
    first = _created(
        client,
        keys.api_key,
        instructions="be brief",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": RED},
                ],
            }
        ],
    )
    answer = first["output"][0]["content"][0]["text"]
    second = _created(
        client,
        keys.api_key,
        instructions="be brief",
        input="and now?",
        previous_response_id=first["id"],
    )
    assert second["previous_response_id"] == first["id"]
    conversation = _conversation(_last_request())
    assert conversation[0] == ("system", ["be brief"])
    assert conversation[1][0] == "user"
    assert conversation[1][1][0] == "look"
    assert conversation[1][1][1].startswith("image:")
    assert conversation[2:] == [("assistant", [answer]), ("user", ["and now?"])]
    third = _created(client, keys.api_key, input="last", previous_response_id=second["id"])
    roles = [role for role, _ in _conversation(_last_request())]
    # A response's instructions are not carried over to the next.
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert third["instructions"] is None


def test_an_uploaded_image_is_sent_by_file_id(client: TestClient, keys: Keys) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")

    def upload(purpose: str, data: bytes) -> str:
        files = {"file": ("picture.png", data)}
        response = client.post(
            "/v1/files", files=files, data={"purpose": purpose}, headers=auth(keys.api_key)
        )
        assert response.status_code == 200, response.text
        file_id: str = response.json()["id"]
        return file_id

    def look(image: dict[str, Any]) -> httpx.Response:
        content = [{"type": "input_text", "text": "look"}, {"type": "input_image", **image}]
        return _create(client, keys.api_key, input=[{"role": "user", "content": content}])

    red_file = upload("vision", base64.b64decode(RED.split(",", 1)[1]))
    assert look({"image_url": RED}).status_code == 200
    sent_as_url = _conversation(_last_request())
    first = look({"file_id": red_file})
    assert first.status_code == 200, first.text
    assert _conversation(_last_request()) == sent_as_url  # the same image, the same digest
    # The conversation keeps the image: the file may go.
    assert client.delete(f"/v1/files/{red_file}", headers=auth(keys.api_key)).status_code == 200
    _created(client, keys.api_key, input="and now?", previous_response_id=first.json()["id"])
    assert _conversation(_last_request())[0] == sent_as_url[0]

    lines = upload(
        "batch",
        b'{"custom_id": "a", "method": "POST", "url": "/v1/responses", '
        b'"body": {"model": "gemma-3-demo", "input": "hi"}}\n',
    )
    refusals = {
        "no such file": ({"file_id": "file-nothing"}, "no file 'file-nothing' in this folder"),
        "a deleted file": ({"file_id": red_file}, "upload the image with POST /v1/files"),
        "not an image's purpose": ({"file_id": lines}, "purpose 'batch'"),
        "both": ({"file_id": lines, "image_url": RED}, "an image_url or a file_id, not both"),
    }
    for case, (image, words) in refusals.items():
        refused = look(image)
        assert refused.status_code == 400, case
        error = refused.json()["error"]
        assert words in error["message"], (case, error)
        assert error["param"].startswith("input[0].content[1]"), case


def test_a_stored_response_is_read_back_and_deleted(client: TestClient, keys: Keys) -> None:
    created = _created(client, keys.api_key)
    url = f"/v1/responses/{created['id']}"
    read = client.get(url, headers=auth(keys.api_key))
    assert read.status_code == 200
    assert read.json() == created
    deleted = client.delete(url, headers=auth(keys.api_key))
    assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
    for response in (
        client.get(url, headers=auth(keys.api_key)),
        client.delete(url, headers=auth(keys.api_key)),
        _create(client, keys.api_key, previous_response_id=created["id"]),
    ):
        assert response.status_code == 404
        assert created["id"] in response.json()["error"]["message"]


def test_a_streamed_response_is_stored(client: TestClient, keys: Keys) -> None:
    events = _events(_create(client, keys.api_key, stream=True).text)
    final = events[-1][1]["response"]
    read = client.get(f"/v1/responses/{final['id']}", headers=auth(keys.api_key))
    assert read.json() == final


def test_a_continuation_of_a_deleted_turn_says_so(client: TestClient, keys: Keys) -> None:
    first = _created(client, keys.api_key)
    second = _created(client, keys.api_key, previous_response_id=first["id"])
    client.delete(f"/v1/responses/{first['id']}", headers=auth(keys.api_key))
    response = _create(client, keys.api_key, previous_response_id=second["id"])
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["param"] == "previous_response_id"
    assert first["id"] in error["message"]
    assert "deleted" in error["message"]


def test_store_false_keeps_nothing(client: TestClient, keys: Keys) -> None:
    created = _created(client, keys.api_key, store=False)
    assert created["store"] is False
    assert _read(client, keys.api_key, created["id"]).status_code == 404
    response = _create(client, keys.api_key, previous_response_id=created["id"])
    assert response.status_code == 404


def test_data_logging_off_keeps_nothing(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/responses",
        json={"model": "gemma-3-demo", "input": "secret"},
        headers={**auth(keys.api_key), "x-data-logging-enabled": "false"},
    )
    created = response.json()
    assert created["store"] is False
    assert _read(client, keys.api_key, created["id"]).status_code == 404


def test_another_folders_response_is_not_found(client: TestClient, keys: Keys) -> None:
    created = _created(client, keys.api_key)
    other = _other_folders_key(keys)
    unknown = client.get("/v1/responses/resp_unknown", headers=auth(other))
    for response in (
        client.get(f"/v1/responses/{created['id']}", headers=auth(other)),
        client.delete(f"/v1/responses/{created['id']}", headers=auth(other)),
        client.get(f"/v1/responses/{created['id']}/input_items", headers=auth(other)),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "resp_unknown", created["id"]
        )
    continued = _create(client, other, previous_response_id=created["id"])
    assert continued.status_code == 404
    assert continued.json()["error"]["message"] == (
        f"Previous response with id '{created['id']}' not found."
    )
    assert _read(client, keys.api_key, created["id"]).status_code == 200


def test_input_items_list_the_responses_own_input(client: TestClient, keys: Keys) -> None:
    first = _created(client, keys.api_key)
    second = _created(
        client,
        keys.api_key,
        previous_response_id=first["id"],
        input=[
            {"role": "user", "content": "first"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "second"},
                    {"type": "input_image", "image_url": RED, "detail": "high"},
                ],
            },
        ],
    )
    url = f"/v1/responses/{second['id']}/input_items"
    listed = client.get(url, headers=auth(keys.api_key)).json()
    assert listed["object"] == "list"
    newest_first = [item["content"] for item in listed["data"]]
    assert newest_first == [
        [
            {"type": "input_text", "text": "second"},
            {"type": "input_image", "image_url": RED, "file_id": None, "detail": "high"},
        ],
        [{"type": "input_text", "text": "first"}],
    ]
    ascending = client.get(url, params={"order": "asc", "limit": 1}, headers=auth(keys.api_key))
    page = ascending.json()
    assert [item["content"][0]["text"] for item in page["data"]] == ["first"]
    assert page["has_more"] is True
    rest = client.get(
        url, params={"order": "asc", "after": page["last_id"]}, headers=auth(keys.api_key)
    )
    assert [item["content"][0]["text"] for item in rest.json()["data"]] == ["second"]


# -- bad input ------------------------------------------------------------------------------

IMAGE = {"type": "input_image", "image_url": RED}


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"input": []}, 400, "input", "input is empty"),
        (
            {"input": [{"type": "reasoning", "summary": []}]},
            400,
            "input[0]",
            "'message', 'function_call', 'function_call_output'",
        ),
        (
            {"input": [{"role": "assistant", "content": [IMAGE]}]},
            400,
            "input[0].content[0]",
            "images are accepted in user messages only",
        ),
        (
            {"input": [{"role": "system", "content": [IMAGE]}]},
            400,
            "input[0].content[0]",
            "images are accepted in user messages only",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
            400,
            "input[0].content[0]",
            "use input_text",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            400,
            "input[0].content[0].image_url",
            "needs an image_url",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "b"},
                            {"type": "input_image", "image_url": "data:image/png;base64,aGVsbG8="},
                        ],
                    },
                ]
            },
            400,
            "input[1].content[1]",
            "input[1].content[1]",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "x"}}},
            400,
            "text.format.schema",
            "needs a 'schema'",
        ),
        ({"text": {"format": {"type": "yaml"}}}, 400, "text.format.type", "json_schema"),
        ({"tools": [{"type": "web_search"}]}, 400, "tools[0].type", "'function'"),
        (
            {
                "tools": [{"type": "function", "name": "get_weather"}],
                "tool_choice": {"type": "function", "name": "get_time"},
            },
            400,
            "tool_choice.name",
            "'get_time', which is not among the tools",
        ),
        (
            {"metadata": {f"k{i}": "v" for i in range(17)}},
            400,
            "metadata",
            "at most 16",
        ),
        ({"max_output_tokens": 1000}, 400, "max_output_tokens", "max_output_tokens is too large"),
        (
            {"previous_response_id": "resp_nope"},
            404,
            "previous_response_id",
            "Previous response with id 'resp_nope' not found.",
        ),
        ({"model": "no-such-model"}, 404, "model", "no-such-model"),
    ],
)
def test_bad_requests_say_what_to_fix(
    client: TestClient,
    keys: Keys,
    body: dict[str, Any],
    status: int,
    param: str | None,
    says: str,
) -> None:
    response = _create(client, keys.api_key, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert says in error["message"]


def test_tools_on_a_model_without_them_are_refused_clearly(client: TestClient, keys: Keys) -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    response = _create(client, keys.api_key, tools=tools)
    assert response.status_code == 400
    assert "tools" in response.json()["error"]["message"]


def test_reading_needs_a_key(client: TestClient, keys: Keys) -> None:
    response = client.get("/v1/responses/resp_x")
    assert response.status_code == 401


# -- function tools (chat's tool calling underneath) ----------------------------------------

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


class ToolCallingEngine(ScriptedEngine):
    """Calls the first function offered with ``{"city": "Paris"}``, its arguments in two
    fragments; answers as the scripted engine does when offered none, or given a tool's result."""

    def __init__(self, deployment: DeploymentConfig, files: BranchConfig) -> None:
        super().__init__(deployment, files)
        self.capabilities = dataclasses.replace(self.capabilities, tools=True)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if request.tools is None or request.messages[-1].role == "tool":
            async for chunk in super().generate(request):
                yield chunk
            return
        self.requests.append(request)
        name = request.tools.functions[0].name
        yield GenerationChunk("", tool_calls=(ToolCallDelta(0, id="call_1", name=name),))
        yield GenerationChunk("", tool_calls=(ToolCallDelta(0, arguments='{"city": '),))
        yield GenerationChunk("", tool_calls=(ToolCallDelta(0, arguments='"Paris"}'),))
        yield GenerationChunk("", finish_reason="tool_calls", usage=Usage(12, 5))


@pytest.fixture
def tool_client(fake_settings: Settings) -> Iterator[TestClient]:
    ScriptedEngine.instances.clear()
    app = create_app(fake_settings, engine_factory=ToolCallingEngine)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def tool_keys(tool_client: TestClient, fake_settings: Settings) -> Iterator[Keys]:
    made = make_keys(fake_settings)
    yield made
    made.database.dispose()


def test_function_tools_reach_chat_and_calls_come_back_as_items(
    tool_client: TestClient, tool_keys: Keys
) -> None:
    body = _created(
        tool_client,
        tool_keys.api_key,
        input="Weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    tools = _last_request().tools
    assert tools is not None
    assert [f.name for f in tools.functions] == ["get_weather"]
    assert tools.functions[0].parameters == WEATHER["parameters"]
    assert (tools.choice, tools.parallel) == ("get_weather", False)
    assert body["status"] == "completed"
    [call] = body["output"]
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_")
    assert (call["call_id"], call["name"]) == ("call_1", "get_weather")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert body["tools"] == [{**WEATHER, "strict": None}]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}


def test_a_streamed_call_sends_argument_deltas(tool_client: TestClient, tool_keys: Keys) -> None:
    response = _create(tool_client, tool_keys.api_key, stream=True, tools=[WEATHER])
    events = _events(response.text)
    assert [kind for kind, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2][1]["item"]
    assert (added["type"], added["name"], added["arguments"]) == (
        "function_call",
        "get_weather",
        "",
    )
    deltas = "".join(data["delta"] for kind, data in events if kind.endswith("arguments.delta"))
    assert events[5][1]["arguments"] == deltas == '{"city": "Paris"}'
    assert events[6][1]["item"] == {**added, "status": "completed", "arguments": deltas}
    assert events[-1][1]["response"]["output"] == [events[6][1]["item"]]


def test_a_tool_result_continues_the_conversation(tool_client: TestClient, tool_keys: Keys) -> None:
    first = _created(tool_client, tool_keys.api_key, input="Weather in Paris?", tools=[WEATHER])
    result = {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'}
    answered = _created(
        tool_client,
        tool_keys.api_key,
        previous_response_id=first["id"],
        input=[result],
        tools=[WEATHER],
    )
    replayed = _last_request().messages
    assert [m.role for m in replayed] == ["user", "assistant", "tool"]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in replayed[1].tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]
    assert replayed[2].tool_call_id == "call_1"
    assert replayed[2].parts == (TextPart('{"temp": 21}'),)
    assert answered["output"][0]["content"][0]["text"] == "echo: Weather in Paris?"
    # The same conversation sent whole, as a client without stored responses does.
    call = first["output"][0]
    _created(
        tool_client,
        tool_keys.api_key,
        store=False,
        input=[{"role": "user", "content": "Weather in Paris?"}, call, result],
        tools=[WEATHER],
    )
    assert _last_request().messages == replayed


# -- batch lines ----------------------------------------------------------------------------


def test_batch_lines_may_target_the_responses_api(client: TestClient, keys: Keys) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    line = {"method": "POST", "url": "/v1/responses"}
    image = {"type": "input_image", "image_url": RED}
    lines = [
        {**line, "custom_id": "text", "body": {"model": "gemma-3-demo", "input": "hi there"}},
        {
            **line,
            "custom_id": "image",
            "body": {
                "model": "gemma-3-demo",
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "x"}, image]}
                ],
            },
        },
        {
            **line,
            "custom_id": "bad",
            "body": {"model": "gemma-3-demo", "input": [{"role": "assistant", "content": [image]}]},
        },
    ]
    created = client.post(
        "/v1/batches",
        json={
            "input_file_id": upload_lines(client, keys.api_key, lines),
            "endpoint": "/v1/responses",
            "completion_window": "24h",
        },
        headers=auth(keys.api_key),
    )
    assert created.status_code == 200, created.text
    batch = finished_batch(client, keys.api_key, created.json()["id"])
    assert batch["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    output = batch_rows(client, keys.api_key, batch["output_file_id"])
    text = output["text"]["response"]["body"]
    assert text["object"] == "response"
    assert text["output"][0]["content"][0]["text"] == "echo: hi there"
    image_answer = output["image"]["response"]["body"]["output"][0]["content"][0]["text"]
    assert image_answer.startswith("echo: x images: ")
    error = batch_rows(client, keys.api_key, batch["error_file_id"])["bad"]["response"]
    assert error["status_code"] == 400
    assert "images are accepted in user messages only" in error["body"]["error"]["message"]


def test_dataset_rows_are_chat_only(client: TestClient, keys: Keys) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    row = {"request": [{"role": "user", "text": "hello"}]}
    response = client.post(
        "/v1/batches",
        json={
            "input_file_id": upload_lines(client, keys.api_key, [row]),
            "endpoint": "/v1/responses",
            "completion_window": "24h",
            "model": "gemma-3-demo",
        },
        headers=auth(keys.api_key),
    )
    assert response.status_code == 400
    assert "dataset rows, which are chat requests" in response.json()["error"]["message"]
