"""The request log through the real app (IAM, media, SQLite) on a scripted engine: what a client
marks ``x-data-logging-enabled: false`` is found nowhere Fovea writes; the rest is stored and
``fovea logs show`` prints it."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from fovea.app import create_app
from fovea.cli.logs import logs_app
from fovea.settings import Settings
from fovea.store.database import Database
from fovea.store.request_log import RequestLogStore
from tests.conftest import Keys, auth, make_keys, png_data_url
from tests.fakes import ScriptedEngine

NOT_LOGGED = {"x-data-logging-enabled": "false"}


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, at every level (the app's modules are imported by now)."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def keys(fake_settings: Settings) -> Iterator[Keys]:
    made = make_keys(fake_settings)
    yield made
    made.database.dispose()


def logged_on(settings: Settings) -> Settings:
    return settings.model_copy(update={"request_log": True})


def serve(settings: Settings) -> TestClient:
    ScriptedEngine.instances.clear()
    return TestClient(create_app(settings, engine_factory=ScriptedEngine))


def chat(
    client: TestClient,
    key: str,
    content: object,
    headers: dict[str, str] | None = None,
    **body: object,
) -> httpx.Response:
    body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": content}], **body}
    response = client.post(
        "/v1/chat/completions", json=body, headers={**auth(key), **(headers or {})}
    )
    assert response.status_code == 200, response.text
    return response


def streamed(client: TestClient, key: str, text: str, headers: dict[str, str]) -> str:
    body = {
        "model": "gemma-3-demo",
        "messages": [{"role": "user", "content": text}],
        "stream": True,
    }
    with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={**auth(key), **headers}
    ) as response:
        assert response.status_code == 200
        # The client gets its answer all the same (word by word: the marker is one word).
        assert text.split()[0] in response.read().decode()
        return response.headers["x-request-id"]


def with_image(text: str) -> list[dict[str, object]]:
    return [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": png_data_url((10, 200, 30))}},
    ]


def files_holding(home: Path, needle: str) -> list[Path]:
    """Every file under ``home`` (the database and its -wal among them) holding ``needle``."""
    return [p for p in home.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    records = [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records]
    return "\n".join([caplog.text, *records])


def logs_show(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.setenv("FOVEA_HOME", str(home))
    monkeypatch.delenv("FOVEA_DATABASE_URL", raising=False)
    return CliRunner().invoke(logs_app, ["show", *args])


def test_a_marked_request_is_stored_nowhere_and_an_unmarked_one_is_shown(
    fake_settings: Settings,
    keys: Keys,
    everything_logged: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marked = f"MARKED-{uuid.uuid4().hex}"
    unmarked = f"PLAIN-{uuid.uuid4().hex}"
    with serve(logged_on(fake_settings)) as client:
        # An unknown field's name is the client's text too.
        marked_ids = [
            chat(client, keys.api_key, f"{marked} one", NOT_LOGGED, **{marked: 1}),
            chat(client, keys.api_key, with_image(f"{marked} two"), NOT_LOGGED),
        ]
        marked_stream_id = streamed(client, keys.api_key, f"{marked} three", NOT_LOGGED)
        plain = chat(client, keys.api_key, with_image(unmarked))
        assert unmarked in plain.json()["choices"][0]["message"]["content"]
    # The app has stopped: the request log's buffer is written.

    home = fake_settings.home
    assert files_holding(home, marked) == []
    assert marked not in log_text(everything_logged)
    assert marked not in "".join(capfd.readouterr())
    assert files_holding(home, unmarked), "the unmarked request is in the database"

    shown = logs_show(home, monkeypatch, plain.headers["x-request-id"])
    assert shown.exit_code == 0, shown.output
    assert unmarked in shown.stdout
    for request_id in [r.headers["x-request-id"] for r in marked_ids] + [marked_stream_id]:
        missing = logs_show(home, monkeypatch, request_id)
        assert missing.exit_code == 1
        assert "not in the request log" in missing.stderr


def test_images_are_stored_as_hashes_and_sizes(
    fake_settings: Settings, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = png_data_url((10, 200, 30))
    payload = image.partition(",")[2]
    with serve(logged_on(fake_settings)) as client:
        response = chat(client, keys.api_key, with_image("what is it?"), max_tokens=30)

    shown = logs_show(fake_settings.home, monkeypatch, response.headers["x-request-id"], "--json")
    assert shown.exit_code == 0, shown.output
    entry = json.loads(shown.stdout)
    assert entry["status"] == "ok"
    assert entry["folder_id"] == keys.folder_id
    assert entry["request"]["max_tokens"] == 30
    text_part, image_part = entry["request"]["messages"][0]["content"]
    assert text_part == {"type": "text", "text": "what is it?"}
    stored = image_part["image_url"]
    assert stored["media_type"] == "image/png"
    assert stored["bytes"] == len(base64.b64decode(payload))
    assert len(stored["sha256"]) == 64
    assert "url" not in stored
    assert entry["response"]["text"] == response.json()["choices"][0]["message"]["content"]
    assert entry["response"]["finish_reason"] == "stop"
    assert entry["response"]["usage"]["total_tokens"] == response.json()["usage"]["total_tokens"]
    assert files_holding(fake_settings.home, payload[:64]) == []


def test_with_the_log_off_nothing_is_stored(fake_settings: Settings, keys: Keys) -> None:
    unmarked = f"PLAIN-{uuid.uuid4().hex}"
    with serve(fake_settings) as client:
        assert client.app.state.services.request_log is None  # type: ignore[attr-defined]
        request_id = chat(client, keys.api_key, unmarked).headers["x-request-id"]

    database = Database(fake_settings.sqlalchemy_url)
    try:
        assert RequestLogStore(database).get(request_id) is None
    finally:
        database.dispose()
    assert files_holding(fake_settings.home, unmarked) == []


@pytest.mark.parametrize("value", ["on", "true", "1", "yes"])
def test_the_setting_takes_on_as_the_issue_spells_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOVEA_REQUEST_LOG", value)
    assert Settings().request_log is True
    monkeypatch.setenv("FOVEA_REQUEST_LOG", "off")
    assert Settings().request_log is False
