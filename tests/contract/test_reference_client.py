"""The reference client from product.md against a real ``fovea serve`` process.

The server runs the real demo model (Gemma 3 270M + its trained vision tower) under two catalog
names, with the closed-world sample pictures the example sends (examples/images):
``gemma-3-demo`` and ``gemma-3-27b-it`` (small files: a real model name is only configuration).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fovea.modelgen.demo import DemoModelFiles
from fovea.modelgen.vision.evaluation import named
from tests.contract.demo_server import DemoServer, demo_server
from tests.processes import vision_deployment

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[DemoServer]:
    # The shipped catalog (gemma-3-demo) plus a deployment under a real model's name.
    real_name = vision_deployment("gemma-3-27b-it", demo_model.model, demo_model.mmproj)
    with demo_server(tmp_path_factory.mktemp("home"), demo_model, real_name) as server:
        yield server


def _image(name: str) -> str:
    return base64.b64encode((IMAGES / name).read_bytes()).decode()


def _reference_messages(question: str = "Compare these two pictures") -> list[dict[str, object]]:
    # As the cloud's own program: PNG files labelled image/jpeg.
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": question},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/jpeg;base64,{_image('red-circle.png')}"},
                },
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/jpeg;base64,{_image('blue-star.png')}"},
                },
            ],
        }
    ]


@pytest.mark.parametrize("model_name", ["gemma-3-27b-it", "gemma-3-demo"])
def test_reference_client_gets_an_answer(server: DemoServer, model_name: str) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)
    response = client.chat.completions.create(
        model=f"gpt://{server.folder_id}/{model_name}",
        messages=_reference_messages(),  # type: ignore[arg-type]
        temperature=0,  # the example samples at 1.0: docs/benchmarks.md counts how it fares
    )
    answer = response.choices[0].message.content or ""
    assert named(answer) == [("red", "circle"), ("blue", "star")], answer  # in their order
    assert response.choices[0].finish_reason == "stop"
    assert response.model == f"gpt://{server.folder_id}/{model_name}/latest"
    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.image_tokens == 32  # two images, 16 tokens each
    assert usage.prompt_tokens > 32
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_reference_client_streams(server: DemoServer) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)
    stream = client.chat.completions.create(
        model="gemma-3-demo",
        messages=_reference_messages(),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=12,
        temperature=0,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish in (["stop"], ["length"])
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 12
    plain = client.chat.completions.create(
        model="gemma-3-demo",
        messages=_reference_messages(),
        max_tokens=12,
        temperature=0,  # type: ignore[arg-type]
    )
    assert text == plain.choices[0].message.content  # greedy: streaming and not give the same text


def test_json_schema_output_parses(server: DemoServer) -> None:
    import json

    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)
    schema = {
        "type": "object",
        "properties": {
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            "count": {"type": "integer"},
        },
        "required": ["color", "count"],
    }
    response = client.chat.completions.create(
        model="gemma-3-demo",
        messages=[{"role": "user", "content": "Describe the picture as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "pic", "schema": schema}},
        max_tokens=60,
        temperature=0,
    )
    value = json.loads(response.choices[0].message.content or "")
    assert value["color"] in ("red", "green", "blue")
    assert isinstance(value["count"], int)


def test_openai_client_sees_typed_errors(server: DemoServer) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="gemma-3-demo",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,aGVsbG8="},
                        }
                    ],
                }
            ],
        )
    assert "messages[0].content[0]" in str(bad.value)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            api_key="fva.nope.nope", base_url=server.base_url, max_retries=0
        ).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])


def test_models_endpoint_says_what_the_demo_can_see(server: DemoServer) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)
    models = {m.id: m for m in client.models.list()}
    demo = models[f"gpt://{server.folder_id}/gemma-3-demo/latest"]
    description = (demo.model_extra or {}).get("description", "")
    assert "closed world" in description and "cannot see" in description


def test_context_overflow_is_a_400(server: DemoServer) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url, max_retries=0)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="gemma-3-demo", messages=[{"role": "user", "content": "word " * 5000}]
        )
    assert "maximum context length is 4096" in str(exc.value)


def _cancelled(server: DemoServer) -> int:
    health = httpx.get(server.base_url.removesuffix("/v1") + "/healthz").json()
    return sum(e["cancelled"] for e in health["engines"] if e["model"] == "gemma-3-demo")


def _wait_for_cancelled(server: DemoServer, count: int) -> None:
    deadline = time.monotonic() + 30
    while _cancelled(server) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _cancelled(server) == count


def test_a_client_that_leaves_frees_the_model(server: DemoServer) -> None:
    body = {
        "model": "gemma-3-demo",
        "messages": [{"role": "user", "content": "Count: 1, 2, 3,"}],
        "max_tokens": 1000,
        "ignore_eos": True,
    }
    headers = {"Authorization": f"Bearer {server.api_key}"}
    url = f"{server.base_url}/chat/completions"
    before = _cancelled(server)
    with httpx.stream("POST", url, json={**body, "stream": True}, headers=headers) as response:
        assert next(response.iter_lines()).startswith("data: ")
    _wait_for_cancelled(server, before + 1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, headers=headers, timeout=httpx.Timeout(10, read=1.0))
    _wait_for_cancelled(server, before + 2)
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)
    answer = client.chat.completions.create(
        model="gemma-3-demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.choices[0].message.content is not None


def test_the_image_reaches_the_model(server: DemoServer) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)

    def answer(image: str) -> str | None:
        url = f"data:image/png;base64,{_image(image)}"
        response = client.chat.completions.create(
            model="gemma-3-demo",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
            max_tokens=16,
            temperature=0,
        )
        return response.choices[0].message.content

    circle = answer("red-circle.png")
    assert circle == answer("red-circle.png")  # greedy: the same image, the same answer
    assert named(circle or "") == [("red", "circle")]
    assert named(answer("blue-star.png") or "") == [("blue", "star")]


def test_concurrent_streams_all_get_their_answers(server: DemoServer) -> None:
    # llama_cpp.server ends 3 of 4 concurrent streams with HTTP 200 and no tokens by default.
    from concurrent.futures import ThreadPoolExecutor

    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)

    def stream(index: int) -> tuple[str, str | None]:
        chunks = list(
            client.chat.completions.create(
                model="gemma-3-demo",
                messages=[{"role": "user", "content": f"Story number {index}:"}],
                max_tokens=20,
                stream=True,
                extra_body={"ignore_eos": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, chunks[-1].choices[0].finish_reason

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(stream, range(4)))
    for text, finish in results:
        assert text
        assert finish == "length"


def test_turn_two_reports_cached_tokens(server: DemoServer) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)
    turn1: list[dict[str, object]] = [
        {"role": "system", "content": "You are a careful observer."},
        *_reference_messages("Which one is brighter?"),
    ]
    first = client.chat.completions.create(
        model="gemma-3-demo",
        messages=turn1,
        max_tokens=8,
        temperature=0,  # type: ignore[arg-type]
    )
    turn2 = [
        *turn1,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Why?"},
    ]
    second = client.chat.completions.create(
        model="gemma-3-demo",
        messages=turn2,
        max_tokens=8,
        temperature=0,  # type: ignore[arg-type]
    )
    details = second.usage.prompt_tokens_details  # type: ignore[union-attr]
    assert details is not None and details.cached_tokens is not None
    assert details.cached_tokens > 32  # the system prompt, the question and both images
    health = httpx.get(server.base_url.removesuffix("/v1") + "/healthz").json()
    demo = next(e for e in health["engines"] if e["model"] == "gemma-3-demo")
    assert demo["cached_prompt_tokens"] >= details.cached_tokens
    assert demo["image_cache_entries"] >= 2
