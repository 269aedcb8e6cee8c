"""The Responses API driven by the official ``openai`` client against a real ``fovea serve`` on
the demo model (Gemma 3 270M + its small trained vision tower: real answers, a closed world)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from fovea.iam.service import IamService
from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from fovea.store.database import Database
from tests.conftest import make_keys
from tests.processes import free_port, start_fovea, stop_process

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
MODEL = "gemma-3-demo"


@dataclass
class Server:
    base_url: str
    api_key: str
    other_folders_key: str  # a key of another folder


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    (home / "models").mkdir()
    (home / "models" / "gemma-3-demo").symlink_to(demo_model.model.parent)
    keys = make_keys(Settings(home=home))
    other_key = _other_folders_key(keys.database)
    keys.database.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_fovea(home, port)
    try:
        yield Server(f"{base}/v1", keys.api_key, other_key)
    finally:
        stop_process(process)


def _other_folders_key(database: Database) -> str:
    iam = IamService(database)
    folder = iam.create_folder("other")
    account = iam.create_service_account(folder.id, "other-sa")
    iam.grant_role(folder.id, account.id, "ai.languageModels.user")
    return iam.create_key(account.id).secret


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)


def _image(name: str) -> str:
    # As the cloud's own program sends them: PNG files labelled image/jpeg.
    encoded = base64.b64encode((IMAGES / name).read_bytes()).decode()
    return f"data:image/jpeg;base64,{encoded}"


def _two_images(question: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": question},
                {"type": "input_image", "image_url": _image("red-circle.png"), "detail": "auto"},
                {"type": "input_image", "image_url": _image("blue-star.png"), "detail": "low"},
            ],
        }
    ]


def test_text_input_gets_a_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Name a colour.", max_output_tokens=8, temperature=0
    )
    assert response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert response.output[0].type == "message"
    usage = response.usage
    assert usage is not None
    assert usage.output_tokens <= 8
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_two_images_are_seen(client: openai.OpenAI) -> None:
    text_only = client.responses.create(
        model=MODEL, input="Compare these two pictures", max_output_tokens=4, temperature=0
    )
    with_images = client.responses.create(
        model=MODEL,
        input=_two_images("Compare these two pictures"),  # type: ignore[arg-type]
        max_output_tokens=4,
        temperature=0,
    )
    assert with_images.output_text
    assert with_images.usage is not None and text_only.usage is not None
    # The demo projector's images take 16 tokens each (with their markers, a few more).
    assert with_images.usage.input_tokens >= text_only.usage.input_tokens + 32


def test_stream_events_are_parsed_by_the_client(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Tell me a story.", max_output_tokens=12, temperature=0
    ) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert deltas
    assert final.output_text == deltas
    done = [e for e in events if e.type == "response.output_text.done"]
    assert [e.text for e in done] == [deltas]


class Verdict(BaseModel):
    sunny: bool


def test_streamed_structured_output_is_the_final_parsed_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Is it sunny?", text_format=Verdict, max_output_tokens=40, temperature=0
    ) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == deltas
    assert isinstance(final.output_parsed, Verdict)


def test_json_schema_output_parses_against_the_schema(client: openai.OpenAI) -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            "count": {"type": "integer"},
        },
        "required": ["color", "count"],
    }
    response = client.responses.create(
        model=MODEL,
        input="Describe the picture as JSON",
        text={"format": {"type": "json_schema", "name": "picture", "schema": schema}},
        max_output_tokens=60,
        temperature=0,
    )
    jsonschema.validate(json.loads(response.output_text), schema)
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


def test_previous_response_id_continues_from_the_cache_without_resending_images(
    client: openai.OpenAI,
) -> None:
    first = client.responses.create(
        model=MODEL,
        instructions="Answer briefly.",
        input=_two_images("What is in these pictures?"),  # type: ignore[arg-type]
        max_output_tokens=8,
        temperature=0,
    )
    raw = client.responses.with_raw_response.create(
        model=MODEL,
        instructions="Answer briefly.",
        input="And which one is brighter?",
        previous_response_id=first.id,
        max_output_tokens=8,
        temperature=0,
    )
    second = raw.parse()
    sent = raw.http_request.content
    assert b"data:image" not in sent
    assert len(sent) < 1000
    assert first.usage is not None and second.usage is not None
    # The history, images included, is in the prompt...
    assert second.usage.input_tokens > first.usage.input_tokens
    # ...and the engine's KV cache served its prefix.
    cached = second.usage.input_tokens_details.cached_tokens
    print(f"cached_tokens={cached} of input_tokens={second.usage.input_tokens}")
    assert cached >= first.usage.input_tokens - 1
    assert second.previous_response_id == first.id


def test_a_stored_response_is_read_and_deleted(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="Hello", max_output_tokens=4)
    read = client.responses.retrieve(created.id)
    assert read.model_dump() == created.model_dump()
    items = client.responses.input_items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            model=MODEL, input="More", previous_response_id=created.id, max_output_tokens=4
        )


def test_another_folders_response_is_not_found(server: Server, client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="Hello", max_output_tokens=4)
    other = openai.OpenAI(api_key=server.other_folders_key, base_url=server.base_url, max_retries=0)
    with pytest.raises(openai.NotFoundError) as retrieved:
        other.responses.retrieve(created.id)
    assert "not found" in str(retrieved.value)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(
            model=MODEL, input="More", previous_response_id=created.id, max_output_tokens=4
        )
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    assert client.responses.retrieve(created.id).id == created.id


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="Hello", max_output_tokens=4, store=False)
    assert created.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
