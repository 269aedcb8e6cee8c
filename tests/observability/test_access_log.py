"""The access log: one JSON object per request, written once its response has finished (in
batches, and all of them when the app stops), naming the request id the client was given, the
caller's folder and key, and never a body."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.observability.access import configure_access_log, log
from fovea.settings import Settings
from tests.conftest import auth, make_keys
from tests.fakes import ScriptedEngine

PROMPT = "a secret prompt about kittens"


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "fovea.access"]


def test_a_chat_request_is_one_json_line(
    fake_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fovea.access")
    keys = make_keys(fake_settings)
    (key,) = keys.iam.list_keys(service_account=keys.service_account_id)
    with TestClient(create_app(fake_settings, engine_factory=ScriptedEngine)) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "gemma-3-demo", "messages": [{"role": "user", "content": PROMPT}]},
            headers={**auth(keys.api_key), "x-client-request-id": "client-7"},
        )
        unauthenticated = client.get("/v1/models")
    keys.database.dispose()
    assert response.status_code == 200
    assert unauthenticated.status_code == 401

    # The app has stopped: every line is out.
    lines = {line["request_id"]: line for line in _lines(caplog)}
    line = lines[response.headers["x-request-id"]]
    assert line["method"] == "POST"
    assert line["path"] == "/v1/chat/completions"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["folder"] == keys.folder_id
    assert line["key_id"] == key.id
    assert line["model"] == "gemma-3-demo"
    assert line["client_request_id"] == "client-7"
    assert "kittens" not in caplog.text  # neither the prompt...
    assert "echo" not in caplog.text  # ...nor the answer

    anonymous = lines[unauthenticated.headers["x-request-id"]]
    assert (anonymous["path"], anonymous["status"]) == ("/v1/models", 401)
    assert anonymous["folder"] is anonymous["key_id"] is anonymous["model"] is None
    assert anonymous["client_request_id"] is None


def test_served_lines_are_bare_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setattr(log, "propagate", True)
    monkeypatch.setattr(log, "level", logging.INFO)
    stream = io.StringIO()
    configure_access_log(stream)
    log.info(json.dumps({"status": 200}))
    assert json.loads(stream.getvalue()) == {"status": 200}
    assert log.propagate is False  # not repeated behind the root logger's prefix
