"""The clients users already have, streaming included, against a real ``fovea serve``: the
cloud's own SDK (``yandex-ai-studio-sdk``), the ``openai`` client and LangChain's ChatOpenAI."""

from __future__ import annotations

from itertools import pairwise

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from yandex_ai_studio_sdk import AIStudio

from tests.contract.demo_server import DemoServer
from tests.contract.test_reference_client import _image, _reference_messages, server

__all__ = ["server"]  # the module-scoped fixture, shared with the reference client's tests

pytestmark = pytest.mark.slow

MAX_TOKENS = 12


def _sdk(server: DemoServer) -> AIStudio:
    # As the cloud's guide has it, but for the endpoints: no gRPC discovery, HTTP base URL given.
    return AIStudio(
        folder_id=server.folder_id,
        auth=server.api_key,
        endpoint=None,
        service_map={"http_completions": f"{server.base_url}/"},
    )


def test_stream_chunks_carry_no_null_keys(server: DemoServer) -> None:
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {server.api_key}"},
        json={
            "model": "gemma-3-demo",
            "messages": [{"role": "user", "content": "Hello"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 4,
        },
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) > 3
    assert not [event for event in events if "null" in event]


def test_the_clouds_sdk_runs_and_streams_two_images(server: DemoServer) -> None:
    model = (
        _sdk(server)
        .chat.completions("gemma-3-demo")
        .configure(temperature=0, max_tokens=MAX_TOKENS)
    )
    whole = model.run(_reference_messages())
    assert whole.text
    partials = list(model.run_stream(_reference_messages()))
    assert len(partials) > 1
    # The SDK hands out growing prefixes; the last one is the whole greedy answer.
    texts = [p.text for p in partials if p.text]
    assert all(b.startswith(a) for a, b in pairwise(texts))
    assert texts[-1] == whole.text
    listed = [m.uri for m in _sdk(server).chat.completions.list()]
    assert f"gpt://{server.folder_id}/gemma-3-demo/latest" in listed


def test_openai_and_langchain_streams_still_parse(server: DemoServer) -> None:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)
    chunks = list(
        client.chat.completions.create(
            model="gemma-3-demo",
            messages=_reference_messages(),  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=MAX_TOKENS,
            temperature=0,
        )
    )
    from_openai = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None
    chat = ChatOpenAI(
        model="gemma-3-demo",
        api_key=server.api_key,  # type: ignore[arg-type]
        base_url=server.base_url,
        temperature=0,
        max_tokens=MAX_TOKENS,  # type: ignore[call-arg]
    )
    message = HumanMessage(
        content=[
            {"type": "text", "text": "Compare these two pictures"},
            {
                "type": "image_url",
                "image_url": {"url": f"data:image/jpeg;base64,{_image('red-circle.png')}"},
            },
            {
                "type": "image_url",
                "image_url": {"url": f"data:image/jpeg;base64,{_image('blue-star.png')}"},
            },
        ]
    )
    streamed = "".join(str(piece.content) for piece in chat.stream([message]))
    assert streamed == chat.invoke([message]).content == from_openai
