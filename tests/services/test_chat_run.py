"""A started chat run always ends: its folder slot comes back and its observers hear of it,
however its consumer stops, and a stalled generation times out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fovea.errors import GenerationTimeoutError, RateLimitError
from fovea.iam.types import Principal
from fovea.protocol.chat import ChatCompletionRequest
from fovea.services.chat_events import CompletionStatus, FinishedCompletion
from fovea.services.container import Services, build_services
from fovea.settings import Settings, load_catalog
from tests.conftest import make_keys
from tests.fakes import ScriptedEngine

pytestmark = pytest.mark.anyio


class Heard:
    def __init__(self) -> None:
        self.completions: list[FinishedCompletion] = []

    def completion_finished(self, completion: FinishedCompletion) -> None:
        self.completions.append(completion)


@pytest.fixture
async def one_slot(fake_settings: Settings) -> AsyncIterator[tuple[Services, Principal, Heard]]:
    settings = fake_settings.model_copy(
        update={"max_concurrent_generations_per_folder": 1, "generation_timeout_s": 0.5}
    )
    ScriptedEngine.instances.clear()
    services = build_services(settings, load_catalog(settings), ScriptedEngine)
    heard = Heard()
    services.chat._observers.append(heard)  # type: ignore[attr-defined]
    keys = make_keys(settings)
    principal = await services.access.authenticate(keys.api_key)
    try:
        yield services, principal, heard
    finally:
        await services.aclose()
        keys.database.dispose()


def _body(stream: bool = True) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "model": "gemma-3-demo",
            "stream": stream,
            "messages": [{"role": "user", "content": "one two three four"}],
        }
    )


async def test_a_stream_closed_after_its_first_event_frees_the_folder_slot(
    one_slot: tuple[Services, Principal, Heard],
) -> None:
    services, principal, heard = one_slot
    run = await services.chat.start(principal, _body(), None)
    with pytest.raises(RateLimitError):  # the folder's one slot is taken
        await services.chat.start(principal, _body(), None)
    events = run.chunks(include_usage=False)
    first = await anext(events)
    assert first.choices[0].delta.role == "assistant"
    await events.aclose()  # the client left right after the first event

    second = await services.chat.start(principal, _body(stream=False), None)
    completion = await second.collect()
    assert completion.choices[0].message.content == "echo: one two three four"
    assert [c.status for c in heard.completions] == [
        CompletionStatus.CANCELLED,
        CompletionStatus.OK,
    ]
    assert heard.completions[1].usage is not None
    assert heard.completions[1].text == "echo: one two three four"


async def test_a_run_never_consumed_is_ended_by_its_owner(
    one_slot: tuple[Services, Principal, Heard],
) -> None:
    services, principal, _ = one_slot
    run = await services.chat.start(principal, _body(), None)
    await run.aclose()  # what the HTTP response does when it never starts its body
    again = await services.chat.start(principal, _body(), None)
    await again.aclose()


async def test_the_generation_timeout_holds_while_no_chunk_comes(
    one_slot: tuple[Services, Principal, Heard],
) -> None:
    services, principal, heard = one_slot
    run = await services.chat.start(principal, _body(stream=False), None)
    (engine,) = ScriptedEngine.instances
    engine.delay_s = 3600  # the next word never comes
    with pytest.raises(GenerationTimeoutError):
        # The outer bound only turns a regression into a failure instead of a hang.
        await asyncio.wait_for(run.collect(), timeout=60)
    assert heard.completions[-1].status == CompletionStatus.TIMEOUT
    assert heard.completions[-1].text == "echo:"
    # The slot came back.
    engine.delay_s = 0
    await (await services.chat.start(principal, _body(), None)).aclose()
