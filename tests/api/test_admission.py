"""Admission control: request bytes in flight are bounded server-wide; a burst waits, then 429."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from fovea.api.admission import ByteBudget
from fovea.app import create_app
from fovea.errors import RateLimitError
from fovea.settings import Settings
from tests.conftest import auth, make_keys
from tests.fakes import ScriptedEngine


def test_budget_admits_in_turn_and_refuses_after_waiting() -> None:
    async def scenario() -> None:
        budget = ByteBudget(capacity=100, wait_s=0.2)
        async with budget.reserve(60):
            with pytest.raises(RateLimitError) as refused:
                async with budget.reserve(60):
                    pass
            assert refused.value.headers["Retry-After"]
            assert budget.in_use == 60

        async def hold() -> None:
            async with budget.reserve(60):
                await asyncio.sleep(0.05)

        async def follow() -> None:
            await asyncio.sleep(0.01)
            async with budget.reserve(60):  # waits for hold() to finish, then fits
                assert budget.in_use == 60

        await asyncio.gather(hold(), follow())
        assert budget.in_use == 0
        assert budget.peak == 60
        async with budget.reserve(10_000):  # larger than the budget: admitted alone
            assert budget.in_use == 100

    asyncio.run(scenario())


def test_a_burst_over_the_budget_gets_429_and_the_server_recovers(fake_settings: Settings) -> None:
    settings = fake_settings.model_copy(
        update={"max_inflight_request_bytes": 600, "admission_wait_s": 0.3}
    )
    ScriptedEngine.instances.clear()
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        keys = make_keys(settings)
        for engine in ScriptedEngine.instances:
            engine.delay_s = 0.2
        body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": "x" * 200}]}

        def send(_: int) -> int:
            return client.post(
                "/v1/chat/completions", json=body, headers=auth(keys.api_key)
            ).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(send, range(6)))
        assert statuses.count(200) >= 2
        assert 429 in statuses
        assert client.app.state.request_budget.peak <= 600  # type: ignore[attr-defined]
        assert send(0) == 200
        keys.database.dispose()
