"""The IAM API over HTTP: an admin builds a folder up to a working key and revokes it; every step
is in the audit log; who gets 403; what gets 400 and 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fovea.app import create_app
from fovea.cli.iam import iam_app
from fovea.settings import Settings
from tests.conftest import Keys, auth, make_keys
from tests.fakes import ScriptedEngine

FOLDERS = "/resource-manager/v1/folders"


@dataclass
class Admin:
    """An in-process app with the auth cache on, a chat user's folder and a system admin."""

    client: TestClient
    keys: Keys
    key: str  # the system admin's API key

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {**auth(key or self.key), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
        response = self.call(method, path, key, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def admin(fake_settings: Settings) -> Iterator[Admin]:
    # A long auth cache: a revocation over HTTP must still be refused on the very next request.
    settings = fake_settings.model_copy(update={"auth_cache_ttl_s": 60.0})
    ScriptedEngine.instances.clear()
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        keys = make_keys(settings)
        _, _, created = keys.iam.bootstrap("default", "admin", admin=True)
        yield Admin(client, keys, created.secret)
        keys.database.dispose()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["message"])


def _bindings(*deltas: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "accessBindingDeltas": [
            {
                "action": action,
                "accessBinding": {"roleId": role, "subject": {"id": sa, "type": "serviceAccount"}},
            }
            for action, role, sa in deltas
        ]
    }


def _chat(admin: Admin, key: str) -> httpx.Response:
    body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": "hi"}]}
    return admin.call("POST", "/v1/chat/completions", key, json=body)


def _folder_admin(admin: Admin, folder_id: str, name: str = "ops") -> tuple[str, str]:
    """A service account with ``ai.admin`` on ``folder_id`` and an IAM key: (its id, the key)."""
    account = admin.ok(
        "POST", "/iam/v1/serviceAccounts", json={"folderId": folder_id, "name": name}
    )
    account_id = account["response"]["id"]
    admin.ok(
        "POST",
        f"{FOLDERS}/{folder_id}:updateAccessBindings",
        json=_bindings(("ADD", "ai.admin", account_id)),
    )
    body = {"serviceAccountId": account_id, "scopes": ["yc.iam.manage"]}
    return account_id, admin.ok("POST", "/iam/v1/apiKeys", json=body)["secret"]


def test_folder_to_key_to_revocation_all_in_the_audit_log(
    admin: Admin, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = admin.ok("POST", FOLDERS, json={"name": "team-a", "description": "vision"})
    assert created["done"] is True
    folder = created["response"]
    assert folder["name"] == "team-a" and created["metadata"] == {"folderId": folder["id"]}
    assert admin.ok("GET", f"{FOLDERS}/{folder['id']}") == folder

    body = {"folderId": folder["id"], "name": "bot"}
    account = admin.ok("POST", "/iam/v1/serviceAccounts", json=body)["response"]
    assert account["folderId"] == folder["id"]
    listed = admin.ok("GET", "/iam/v1/serviceAccounts", params={"folderId": folder["id"]})
    assert listed == {"serviceAccounts": [account], "nextPageToken": ""}

    role = ("ADD", "ai.languageModels.user", account["id"])
    admin.ok("POST", f"{FOLDERS}/{folder['id']}:updateAccessBindings", json=_bindings(role))
    bindings = admin.ok("GET", f"{FOLDERS}/{folder['id']}:listAccessBindings")
    assert bindings["accessBindings"] == [
        {
            "roleId": "ai.languageModels.user",
            "subject": {"id": account["id"], "type": "serviceAccount"},
        }
    ]

    body = {"serviceAccountId": account["id"], "description": "ci"}
    made = admin.ok("POST", "/iam/v1/apiKeys", json=body)
    secret, key = made["secret"], made["apiKey"]
    assert secret.startswith(f"fva.{key['id']}.") and "secret" not in key
    assert key["scopes"] == ["yc.ai.foundationModels.execute"] and key["revokedAt"] is None

    assert admin.call("GET", "/v1/models", secret).status_code == 200
    answer = _chat(admin, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"].startswith(f"gpt://{folder['id']}/")

    revoked = admin.ok("DELETE", f"/iam/v1/apiKeys/{key['id']}")
    assert revoked["done"] is True and revoked["metadata"] == {"apiKeyId": key["id"]}
    assert _error(_chat(admin, secret), 401) == "Unknown api key"  # at once, despite the cache
    assert admin.ok("GET", f"/iam/v1/apiKeys/{key['id']}")["revokedAt"] is not None

    admin_key_id = admin.key.split(".")[1]
    expected = [
        ("folder.create", folder["id"]),
        ("serviceAccount.create", account["id"]),
        ("accessBinding.add", account["id"]),
        ("apiKey.create", key["id"]),
        ("apiKey.revoke", key["id"]),
    ]
    log = admin.ok("GET", "/iam/v1/audit", params={"folderId": folder["id"]})
    events = log["events"]
    assert [(e["action"], e["targetId"]) for e in events] == expected
    assert {e["actor"] for e in events} == {admin_key_id}
    assert {e["folderId"] for e in events} == {folder["id"]}
    assert events[2]["details"] == {
        "roleId": "ai.languageModels.user",
        "serviceAccountId": account["id"],
    }
    assert secret.split(".")[2] not in json.dumps(log)

    monkeypatch.setenv("FOVEA_HOME", str(fake_settings.home))
    monkeypatch.delenv("FOVEA_DATABASE_URL", raising=False)
    result = CliRunner().invoke(iam_app, ["audit", "--folder", "team-a", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert [(e["action"], e["target_id"], e["actor"]) for e in printed] == [
        (action, target, admin_key_id) for action, target in expected
    ]


def test_a_revoked_role_is_refused_at_once(admin: Admin) -> None:
    folder_id, user = admin.keys.folder_id, admin.keys.service_account_id
    assert _chat(admin, admin.keys.api_key).status_code == 200
    remove = ("REMOVE", "ai.languageModels.user", user)
    admin.ok("POST", f"{FOLDERS}/{folder_id}:updateAccessBindings", json=_bindings(remove))
    assert "Permission denied" in _error(_chat(admin, admin.keys.api_key), 403)


def test_a_key_without_the_iam_scope_gets_403(admin: Admin) -> None:
    # The chat key of tests/conftest.py: a chat user, and a key scoped for chat only.
    path = f"/iam/v1/serviceAccounts?folderId={admin.keys.folder_id}"
    message = _error(admin.call("GET", path, admin.keys.api_key), 403)
    assert "lacks the scope yc.iam.manage" in message
    unknown = f"{FOLDERS}/b1g00000000000000000"  # the scope is checked before anything is read
    assert "yc.iam.manage" in _error(admin.call("GET", unknown, admin.keys.api_key), 403)


def test_a_non_admin_key_gets_403(admin: Admin) -> None:
    folder_id = admin.keys.folder_id
    body = {"folderId": folder_id, "name": "editor"}
    editor = admin.ok("POST", "/iam/v1/serviceAccounts", json=body)["response"]["id"]
    add = ("ADD", "ai.editor", editor)
    admin.ok("POST", f"{FOLDERS}/{folder_id}:updateAccessBindings", json=_bindings(add))
    body = {"serviceAccountId": editor, "scopes": ["yc.iam.manage"]}
    key = admin.ok("POST", "/iam/v1/apiKeys", json=body)["secret"]

    body = {"serviceAccountId": admin.keys.service_account_id}
    message = _error(admin.call("POST", "/iam/v1/apiKeys", key, json=body), 403)
    assert "that allows managing keys and roles (any of: ai.admin)" in message
    _error(admin.call("GET", f"{FOLDERS}/{folder_id}:listAccessBindings", key), 403)
    _error(admin.call("GET", "/iam/v1/audit", key, params={"folderId": folder_id}), 403)
    _error(admin.call("POST", FOLDERS, key, json={"name": "mine"}), 403)


def test_a_folder_admin_manages_its_folder_and_nothing_above_it(admin: Admin) -> None:
    folder_id = admin.keys.folder_id
    ops_id, ops = _folder_admin(admin, folder_id)
    other = admin.ok("POST", FOLDERS, json={"name": "other"})["response"]["id"]

    body = {"folderId": folder_id, "name": "worker"}
    worker = admin.ok("POST", "/iam/v1/serviceAccounts", ops, json=body)["response"]["id"]
    key = admin.ok("POST", "/iam/v1/apiKeys", ops, json={"serviceAccountId": worker})
    assert admin.ok("GET", FOLDERS, ops)["folders"] == [admin.ok("GET", f"{FOLDERS}/{folder_id}")]
    log = admin.ok("GET", "/iam/v1/audit", ops, params={"folderId": folder_id})
    assert log["events"][-1]["action"] == "apiKey.create"
    assert log["events"][-1]["targetId"] == key["apiKey"]["id"]
    assert log["events"][-1]["actor"] == ops.split(".")[1]

    assert "creating folders" in _error(admin.call("POST", FOLDERS, ops, json={"name": "x"}), 403)
    _error(admin.call("GET", f"{FOLDERS}/{other}", ops), 403)
    _error(admin.call("GET", "/iam/v1/serviceAccounts", ops, params={"folderId": other}), 403)
    _error(admin.call("GET", "/iam/v1/audit", ops), 403)  # every folder's: system.admin only
    grant = _bindings(("ADD", "system.admin", ops_id))
    _error(admin.call("POST", f"{FOLDERS}/{folder_id}:updateAccessBindings", ops, json=grant), 403)

    # The system admin's account lives in this folder; its folder admin still cannot touch it.
    system = admin.keys.iam.get_service_account("admin", folder_id)
    body = {"serviceAccountId": system.id}
    message = _error(admin.call("POST", "/iam/v1/apiKeys", ops, json=body), 403)
    assert "is a system.admin" in message
    admin_key_id = admin.key.split(".")[1]
    _error(admin.call("DELETE", f"/iam/v1/apiKeys/{admin_key_id}", ops), 403)
    assert admin.call("GET", FOLDERS).status_code == 200


def test_everything_for_the_system_admin(admin: Admin) -> None:
    # Not with a chat key of the same account: IAM needs the key's scope too.
    system = admin.keys.iam.get_service_account("admin", admin.keys.folder_id)
    chat_key = admin.keys.iam.create_key(system.id).secret
    for path in (FOLDERS, "/iam/v1/audit"):
        assert "yc.iam.manage" in _error(admin.call("GET", path, chat_key), 403)
    other = admin.ok("POST", FOLDERS, json={"name": "other"})["response"]["id"]
    names = [folder["name"] for folder in admin.ok("GET", FOLDERS)["folders"]]
    assert names == ["default", "other"]
    log = admin.ok("GET", "/iam/v1/audit")["events"]
    assert {event["folderId"] for event in log} == {admin.keys.folder_id, other}
    # The CLI made the first changes (tests/conftest.py's bootstrap and the admin's).
    assert log[0]["actor"] == "cli" and log[-1]["actor"] == admin.key.split(".")[1]


def test_updates_of_bindings_are_all_or_nothing(admin: Admin) -> None:
    folder_id, user = admin.keys.folder_id, admin.keys.service_account_id
    deltas = _bindings(("ADD", "ai.viewer", user), ("REMOVE", "ai.editor", user))
    path = f"{FOLDERS}/{folder_id}:updateAccessBindings"
    assert "has no role ai.editor" in _error(admin.call("POST", path, json=deltas), 404)
    roles = admin.ok("GET", f"{FOLDERS}/{folder_id}:listAccessBindings")["accessBindings"]
    assert [binding["roleId"] for binding in roles if binding["subject"]["id"] == user] == [
        "ai.languageModels.user"
    ]
    actions = [
        e["action"]
        for e in admin.ok("GET", "/iam/v1/audit", params={"folderId": folder_id})["events"]
    ]
    assert "accessBinding.remove" not in actions and actions.count("accessBinding.add") == 2


def test_the_audit_log_pages(admin: Admin) -> None:
    first = admin.ok("GET", "/iam/v1/audit", params={"pageSize": 2})
    assert len(first["events"]) == 2 and first["nextPageToken"]
    second = admin.ok(
        "GET", "/iam/v1/audit", params={"pageSize": 100, "pageToken": first["nextPageToken"]}
    )
    everything = admin.ok("GET", "/iam/v1/audit")["events"]
    assert first["events"] + second["events"] == everything
    assert second["nextPageToken"] == ""
    keys_only = admin.ok("GET", "/iam/v1/audit", params={"action": "apiKey.create"})["events"]
    assert len(keys_only) == 2 and {e["action"] for e in keys_only} == {"apiKey.create"}
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert admin.ok("GET", "/iam/v1/audit", params={"since": later})["events"] == []


def _delta(**overrides: Any) -> dict[str, Any]:
    delta: dict[str, Any] = {
        "action": "ADD",
        "accessBinding": {"roleId": "ai.viewer", "subject": {"id": "x", "type": "serviceAccount"}},
    }
    delta.update(overrides)
    return {"accessBindingDeltas": [delta]}


BAD_INPUT = [
    ("POST", FOLDERS, {"name": "Bad Name"}, "Invalid folder name 'Bad Name'"),
    ("POST", FOLDERS, {}, "Invalid value for 'name': Field required"),
    ("POST", FOLDERS, {"name": "x", "description": "d" * 300}, "longer than 256 characters"),
    ("POST", "/iam/v1/serviceAccounts", {"name": "bot"}, "'folderId': Field required"),
    (
        "POST",
        "/iam/v1/apiKeys",
        {"serviceAccountId": "{sa}", "scopes": ["yc.all"]},
        "Unknown scope 'yc.all'",
    ),
    ("POST", "/iam/v1/apiKeys", {"serviceAccountId": "{sa}", "scopes": []}, "at least one scope"),
    (
        "POST",
        "/iam/v1/apiKeys",
        {"serviceAccountId": "{sa}", "expiresAt": "2001-01-01T00:00:00Z"},
        "must be in the future",
    ),
    ("POST", "/iam/v1/apiKeys", {"serviceAccountId": "{sa}", "expiresAt": "soon"}, "'expiresAt'"),
    ("POST", "{folder}:updateAccessBindings", {"accessBindingDeltas": []}, "'accessBindingDeltas'"),
    (
        "POST",
        "{folder}:updateAccessBindings",
        _delta(action="GRANT"),
        "'accessBindingDeltas[0].action'",
    ),
    (
        "POST",
        "{folder}:updateAccessBindings",
        _delta(
            accessBinding={
                "roleId": "ai.owner",
                "subject": {"id": "{sa}", "type": "serviceAccount"},
            }
        ),
        "Unknown role 'ai.owner'; valid roles:",
    ),
    (
        "POST",
        "{folder}:updateAccessBindings",
        _delta(accessBinding={"roleId": "ai.viewer", "subject": {"id": "{sa}", "type": "user"}}),
        "subject.type",
    ),
    ("GET", "/iam/v1/serviceAccounts", None, "'folderId': Field required"),
    ("GET", "/iam/v1/apiKeys", None, "'serviceAccountId': Field required"),
    ("GET", "/iam/v1/audit?pageSize=0", None, "'pageSize'"),
    ("GET", "/iam/v1/audit?pageToken=abc", None, "Invalid pageToken 'abc'"),
    ("GET", "/iam/v1/audit?since=yesterday", None, "'since'"),
    ("GET", "/iam/v1/audit?action=apiKey.steal", None, "valid actions: folder.create"),
]


@pytest.mark.parametrize(("method", "path", "body", "fragment"), BAD_INPUT)
def test_bad_input_gets_400_saying_what_to_fix(
    admin: Admin, method: str, path: str, body: Any, fragment: str
) -> None:
    fill = {"{sa}": admin.keys.service_account_id, "{folder}": f"{FOLDERS}/{admin.keys.folder_id}"}
    text = json.dumps(body)
    for placeholder, value in fill.items():
        path, text = path.replace(placeholder, value), text.replace(placeholder, value)
    response = admin.call(method, path, json=None if body is None else json.loads(text))
    assert fragment in _error(response, 400)


def test_a_body_that_is_not_json_gets_400(admin: Admin) -> None:
    response = admin.call(
        "POST", FOLDERS, content=b"{name", headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in _error(response, 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{FOLDERS}/b1g00000000000000000"),
        ("GET", f"{FOLDERS}/b1g00000000000000000:listAccessBindings"),
        ("GET", "/iam/v1/serviceAccounts/aje00000000000000000"),
        ("GET", "/iam/v1/apiKeys?serviceAccountId=aje00000000000000000"),
        ("GET", "/iam/v1/apiKeys/aje00000000000000000"),
        ("DELETE", "/iam/v1/apiKeys/aje00000000000000000"),
        ("GET", "/iam/v1/audit?folderId=b1g00000000000000000"),
    ],
)
def test_unknown_ids_get_404(admin: Admin, method: str, path: str) -> None:
    assert "not found" in _error(admin.call(method, path), 404)


def test_a_subject_from_another_folder_is_not_found_there(admin: Admin) -> None:
    other = admin.ok("POST", FOLDERS, json={"name": "other"})["response"]["id"]
    grant = _bindings(("ADD", "ai.viewer", admin.keys.service_account_id))
    message = _error(admin.call("POST", f"{FOLDERS}/{other}:updateAccessBindings", json=grant), 404)
    assert f"not found in folder {other}" in message


def test_the_openapi_document_lists_the_iam_api(admin: Admin) -> None:
    paths = admin.client.get("/openapi.json").json()["paths"]
    assert f"{FOLDERS}/{{folder_id}}:updateAccessBindings" in paths
    assert "/iam/v1/apiKeys/{key_id}" in paths
