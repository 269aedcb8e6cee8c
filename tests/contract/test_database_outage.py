"""PostgreSQL stops under traffic and comes back: requests in between get 503 with
Retry-After (never a 500), /readyz says the database is unreachable, and the gateway recovers
by itself, without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.settings import Settings
from tests.conftest import auth, make_keys
from tests.fakes import ScriptedEngine
from tests.postgres import SERVER_OPTIONS, PostgresServer, start_server


class RestartableServer:
    """The test session's private-server recipe, on a cluster of its own that can be stopped
    and started again with its data."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def halt(self) -> None:
        self.server._run("pg_ctl", "-D", self.server._data, "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        server = self.server
        options = f"-k {server._dir} -p {server._port} {SERVER_OPTIONS}"
        server._run(
            "pg_ctl", "-D", server._data, "-l", server._dir / "log", "-w", "-o", options, "start"
        )  # fmt: skip


@pytest.fixture
def own_server() -> Iterator[RestartableServer]:
    server = start_server()
    try:
        yield RestartableServer(server)
    finally:
        server.stop()


def _chat(client: TestClient, key: str) -> httpx.Response:
    body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": "still there?"}]}
    return client.post("/v1/chat/completions", json=body, headers=auth(key))


def test_a_database_outage_is_503s_and_the_gateway_recovers_by_itself(
    fake_settings: Settings, own_server: RestartableServer
) -> None:
    url = own_server.server.url(own_server.server.create_database())
    # No auth cache: every request reads its key from the database.
    settings = fake_settings.model_copy(update={"database_url": url, "auth_cache_ttl_s": 0})
    keys = make_keys(settings)
    keys.database.dispose()
    ScriptedEngine.instances.clear()
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        assert _chat(client, keys.api_key).status_code == 200
        assert client.get("/readyz").json()["database"] == "ok"

        own_server.halt()
        during = [_chat(client, keys.api_key) for _ in range(3)]
        during.append(client.get("/v1/models", headers=auth(keys.api_key)))
        assert [r.status_code for r in during] == [503] * 4
        for response in during:
            assert response.headers["retry-after"]
            assert response.json()["error"]["code"] == "database_unavailable"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "unreachable"

        own_server.resume()
        deadline = time.monotonic() + 30
        while (answer := _chat(client, keys.api_key)).status_code != 200:
            assert answer.status_code == 503, answer.text  # never a 500 on the way back
            assert time.monotonic() < deadline, "the gateway did not recover"
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 200
