"""Quotas set with ``fovea quota`` on a running server, counted in its memory or in Redis:
429s with OpenAI's headers, applied and lifted without a restart; a Redis that is down is a
503 to retry."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fovea.app import create_app
from fovea.cli.main import app as cli
from fovea.settings import Settings
from tests.conftest import Keys, auth, make_keys
from tests.fakes import ScriptedEngine


@pytest.fixture(params=["memory", "redis", "postgresql"])
def fake_settings(request: pytest.FixtureRequest, fake_settings: Settings) -> Settings:
    """Every test here with each home of the counters: the server's memory (SQLite), Redis,
    and PostgreSQL (no Redis)."""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        return fake_settings.model_copy(update={"redis_url": redis_url})
    if request.param == "postgresql":
        database_url = request.getfixturevalue("migrated_postgres_url")
        return fake_settings.model_copy(update={"database_url": database_url})
    return fake_settings


@pytest.fixture
def operator(fake_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FOVEA_HOME", str(fake_settings.home))
    if fake_settings.database_url:
        monkeypatch.setenv("FOVEA_DATABASE_URL", fake_settings.database_url)
    return CliRunner()


def _quota(operator: CliRunner, *args: str) -> Any:
    result = operator.invoke(cli, ["quota", *args])
    assert result.exit_code == 0, result.output
    return result


def _chat(client: TestClient, key: str) -> httpx.Response:
    body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": "a b c d"}]}
    return client.post("/v1/chat/completions", json=body, headers=auth(key))


def _until(client: TestClient, key: str, status: int) -> list[httpx.Response]:
    """Requests until one gets ``status`` (the server re-reads quotas every second)."""
    responses = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        responses.append(_chat(client, key))
        if responses[-1].status_code == status:
            return responses
        time.sleep(0.05)
    raise AssertionError(f"no {status} in {[r.status_code for r in responses]}")


def test_requests_per_minute_over_the_limit_get_429_and_lifting_it_applies(
    client: TestClient, keys: Keys, operator: CliRunner
) -> None:
    assert "x-ratelimit-limit-requests" not in _chat(client, keys.api_key).headers
    _quota(operator, "set", "--folder", keys.folder_id, "--rpm", "2")
    responses = _until(client, keys.api_key, 429)
    refused = responses[-1]
    # The two requests the bucket held, then the refusal.
    allowed = [r for r in responses[:-1] if r.headers.get("x-ratelimit-limit-requests") == "2"]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in allowed] == ["1", "0"]
    assert all(r.status_code == 200 for r in allowed)
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in error["message"]

    _quota(operator, "set", "--folder", keys.folder_id, "--rpm", "none")
    lifted = _until(client, keys.api_key, 200)[-1]
    assert "x-ratelimit-limit-requests" not in lifted.headers


def test_a_malformed_request_gets_its_400_while_the_folder_is_at_its_limit(
    client: TestClient, keys: Keys, operator: CliRunner
) -> None:
    # A folder allowed no generation at all is at its limit for every request.
    _quota(operator, "set", "--folder", keys.folder_id, "--concurrent", "0")
    assert int(_until(client, keys.api_key, 429)[-1].headers["retry-after"]) >= 1
    malformed = {
        "messages[0].content": {"messages": [{"role": "user", "content": None}]},
        "max_tokens": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6},
    }
    for param, body in malformed.items():
        response = client.post(
            "/v1/chat/completions",
            json={"model": "gemma-3-demo", **body},
            headers=auth(keys.api_key),
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_a_limit_too_large_to_store_is_refused(keys: Keys, operator: CliRunner) -> None:
    result = operator.invoke(
        cli, ["quota", "set", "--folder", keys.folder_id, "--rpm", "3" + "0" * 9]
    )
    assert result.exit_code != 0
    assert "2147483647" in result.output


def test_tokens_per_minute_over_the_limit_get_429(
    client: TestClient, keys: Keys, operator: CliRunner
) -> None:
    _quota(operator, "set", "--folder", keys.folder_id, "--tpm", "40")
    responses = _until(client, keys.api_key, 429)
    used = sum(r.json()["usage"]["total_tokens"] for r in responses if r.status_code == 200)
    assert used >= 40  # refused only once the minute's tokens were spent
    refused = responses[-1]
    assert refused.headers["x-ratelimit-limit-tokens"] == "40"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "40 tokens per minute" in refused.json()["error"]["message"]
    listed = _quota(operator, "list", "--json")
    assert '"tokens_per_minute": 40' in listed.output


def test_a_streamed_answer_carries_the_headers(
    client: TestClient, keys: Keys, operator: CliRunner
) -> None:
    _quota(operator, "set", "--folder", keys.folder_id, "--rpm", "1000", "--tpm", "100000")
    body = {
        "model": "gemma-3-demo",
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }
    deadline = time.monotonic() + 20
    while True:
        response = client.post("/v1/chat/completions", json=body, headers=auth(keys.api_key))
        if "x-ratelimit-limit-tokens" in response.headers or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert response.headers["x-ratelimit-limit-requests"] == "1000"
    assert response.headers["x-ratelimit-limit-tokens"] == "100000"
    assert response.text.rstrip().endswith("data: [DONE]")


def test_bad_quota_commands_say_what_to_fix(keys: Keys, operator: CliRunner) -> None:
    not_a_number = operator.invoke(
        cli, ["quota", "set", "--folder", keys.folder_id, "--rpm", "lots"]
    )
    assert not_a_number.exit_code == 2
    assert "whole number" in not_a_number.output
    unknown = operator.invoke(cli, ["quota", "set", "--folder", "no-such-folder", "--rpm", "5"])
    assert unknown.exit_code == 1
    assert "no-such-folder" in unknown.output
    stranger = operator.invoke(
        cli, ["quota", "set", "--folder", keys.folder_id, "--key", "nokey", "--rpm", "5"]
    )
    assert stranger.exit_code == 1
    assert "not a key of folder" in stranger.output
    missing = operator.invoke(cli, ["quota", "remove", "--folder", keys.folder_id])
    assert missing.exit_code == 1


@pytest.mark.parametrize("fake_settings", ["memory"], indirect=True)
def test_a_redis_that_is_down_is_a_503_to_retry(fake_settings: Settings) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = fake_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        keys = make_keys(settings)
        response = _chat(client, keys.api_key)
        ready = client.get("/readyz")
        keys.database.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["error"]["code"] == "rate_limiter_unavailable"
    # A load balancer takes the replica out until Redis answers again.
    assert ready.status_code == 503 and ready.headers["retry-after"]
    assert (ready.json()["redis"], ready.json()["database"]) == ("unreachable", "ok")


def test_readiness_reports_redis_when_the_server_uses_it(
    client: TestClient, fake_settings: Settings
) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["redis"] == ("ok" if fake_settings.redis_url else None)
