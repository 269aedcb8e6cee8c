"""No key secret is written anywhere by a real ``fovea serve`` at debug level with the request log
on: good keys, forged keys, keys made and revoked through the IAM API, errors of every kind.
Every file under ``$FOVEA_HOME`` (the server's stdout and stderr with its access lines, the
database and its WAL, the request log, stored files) is searched after the server stops, and so
are ``/metrics`` and every response but the one that hands a new key out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import free_port, start_fovea, stop_process

pytestmark = pytest.mark.slow

CATALOG = """
[[deployments]]
name = "gemma-3-demo"
chat_template = "gemma3"
context_length = 1024
parallel = 1
[deployments.branches.latest]
model = "{model}"
mmproj = "{mmproj}"
"""
FOLDERS = "/resource-manager/v1/folders"


def forged(key: str, position: int) -> str:
    """``key`` with one character of its secret changed: all but one character of a secret."""
    prefix, secret = key.rsplit(".", 1)
    chars = list(secret)
    chars[position] = "B" if chars[position] == "A" else "A"
    return f"{prefix}.{''.join(chars)}"


class Session:
    """Requests to the server, every answer kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[httpx.Response] = []

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> int:
        headers = httpx.Headers(kwargs.pop("headers", None))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.url}{path}"
        self.answers.append(httpx.request(method, url, headers=headers, timeout=60, **kwargs))
        return self.answers[-1].status_code

    def chat(self, key: str, model: str = "gemma-3-demo", stream: bool = False) -> int:
        messages = [{"role": "user", "content": "hi"}]
        body = {"model": model, "max_tokens": 4, "messages": messages, "stream": stream}
        return self.call("POST", "/v1/chat/completions", key, json=body)


def make_key_over_iam(session: Session, admin: str, folder_id: str) -> tuple[str, str]:
    """A chat key for a new service account, made by ``admin`` over HTTP: (secret, key id)."""
    session.call(
        "POST", "/iam/v1/serviceAccounts", admin, json={"folderId": folder_id, "name": "bot"}
    )
    account = session.answers[-1].json()["response"]["id"]
    binding = {
        "roleId": "ai.languageModels.user",
        "subject": {"id": account, "type": "serviceAccount"},
    }
    deltas = {"accessBindingDeltas": [{"action": "ADD", "accessBinding": binding}]}
    assert (
        session.call("POST", f"{FOLDERS}/{folder_id}:updateAccessBindings", admin, json=deltas)
        == 200
    )
    assert session.call("POST", "/iam/v1/apiKeys", admin, json={"serviceAccountId": account}) == 200
    made = session.answers.pop().json()  # the one answer that hands a secret out
    return made["secret"], made["apiKey"]["id"]


def holding(home: Path, needle: str) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_no_secret_is_written_anywhere(tmp_path: Path, demo_model: DemoModelFiles) -> None:
    home = tmp_path / "home"
    home.mkdir()
    catalog = CATALOG.format(model=demo_model.model, mmproj=demo_model.mmproj)
    (home / "models.toml").write_text(catalog)
    keys = make_keys(Settings(home=home, catalog=home / "models.toml"))
    _, _, admin_key = keys.iam.bootstrap("default", "admin", admin=True)
    keys.database.dispose()
    user, admin = keys.api_key, admin_key.secret
    port = free_port()
    session = Session(f"http://127.0.0.1:{port}")
    process = start_fovea(
        home,
        port,
        FOVEA_CATALOG=str(home / "models.toml"),
        FOVEA_REQUEST_LOG="on",
        FOVEA_LOG_LEVEL="debug",
    )
    try:
        assert session.chat(user) == 200
        assert session.chat(user, stream=True) == 200
        assert session.chat(user, model="no-such-model") == 404
        assert session.call("POST", "/v1/chat/completions", user, content=b"{not json") == 400
        assert session.call("GET", "/v1/files/file-missing", user) == 403  # a chat-only key
        for bad in (forged(user, 0), forged(user, -1), forged(admin, 0)):
            assert session.chat(bad) == 401
            assert session.call("GET", "/v1/models", bad) == 401
        for header in (f"Token {user}", f"Bearer {user} extra", user):
            assert session.call("GET", "/v1/models", headers={"Authorization": header}) == 401
        two = [("Authorization", f"Bearer {user}"), ("Authorization", f"Bearer {admin}")]
        assert session.call("GET", "/v1/models", headers=two) == 400

        created, created_id = make_key_over_iam(session, admin, keys.folder_id)
        assert session.chat(created) == 200
        assert session.call("DELETE", f"/iam/v1/apiKeys/{created_id}", admin) == 200
        assert session.call("GET", "/v1/models", created) == 401
        assert session.call("GET", "/iam/v1/audit", admin) == 200
        assert session.call("GET", "/metrics") == 200
    finally:
        stop_process(process)  # every buffered line and record is written on the way out

    # The search sees what was written: the access lines name the key by its id (not secret).
    assert home / "server.log" in holding(home, user.split(".")[1])
    secrets = {
        "user key": user,
        "bootstrap admin key": admin,
        "key made over the IAM API": created,
        "forged user key": forged(user, 0),
        "forged admin key": forged(admin, 0),
    }
    for what, key in secrets.items():
        secret = key.rsplit(".", 1)[1]
        assert holding(home, secret) == [], f"the {what}'s secret is written there"
        for answer in session.answers:
            assert secret not in answer.text, f"{answer.request.url} answered the {what}'s secret"
            assert secret not in str(answer.headers.raw)
