"""``fovea iam`` commands, driven through Typer's test runner against a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fovea.cli.iam import iam_app
from fovea.iam import IamService, Permission, Principal
from fovea.store import Database


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("FOVEA_HOME", str(home))
    monkeypatch.delenv("FOVEA_DATABASE_URL", raising=False)
    return home


def fovea_iam(*args: str) -> Result:
    return CliRunner().invoke(iam_app, list(args))


def ok(*args: str) -> Result:
    result = fovea_iam(*args)
    assert result.exit_code == 0, result.output
    return result


def ok_json(*args: str) -> object:
    return json.loads(ok(*args, "--json").stdout)


def authenticate(home: Path, api_key: str) -> Principal:
    database = Database(f"sqlite:///{home / 'fovea.db'}")
    try:
        return IamService(database).authenticate(api_key)
    finally:
        database.dispose()


def test_bootstrap_json_gives_a_working_key(home: Path) -> None:
    first = ok_json("bootstrap")
    second = ok_json("bootstrap")
    assert isinstance(first, dict) and isinstance(second, dict)
    assert set(first) == {"folder_id", "service_account_id", "api_key"}
    assert first["folder_id"] == second["folder_id"]
    assert first["service_account_id"] == second["service_account_id"]
    assert first["api_key"] != second["api_key"]
    principal = authenticate(home, first["api_key"])
    assert principal.folder_id == first["folder_id"]
    assert (home / "fovea.db").is_file()


def test_bootstrap_text_warns_that_the_key_is_shown_once(home: Path) -> None:
    result = ok("bootstrap", "--folder", "lab", "--sa", "robot")
    assert "fva." in result.stdout and "lab" in result.stdout
    assert "shown only once" in result.stderr


def test_folder_and_service_account_lifecycle(home: Path) -> None:
    created = ok_json("folder", "create", "research", "--description", "vision")
    assert isinstance(created, dict)
    assert ok_json("folder", "list") == [created]
    assert "research" in ok("folder", "list").stdout

    account = ok_json("sa", "create", "bot", "--folder", "research")
    assert isinstance(account, dict) and account["folder_id"] == created["id"]
    assert ok_json("sa", "list", "--folder", created["id"]) == [account]
    assert "bot" in ok("sa", "list").stdout


def test_roles_grant_list_revoke(home: Path) -> None:
    ok("folder", "create", "team")
    ok("sa", "create", "bot", "--folder", "team")
    ok("role", "grant", "ai.editor", "--folder", "team", "--sa", "bot")
    listed = ok_json("role", "list", "--folder", "team")
    assert isinstance(listed, list) and [b["role"] for b in listed] == ["ai.editor"]
    assert "ai.editor" in ok("role", "list").stdout
    ok("role", "revoke", "ai.editor", "--folder", "team", "--sa", "bot")
    assert ok_json("role", "list") == []


def test_key_create_list_revoke(home: Path) -> None:
    ok("folder", "create", "team")
    ok("sa", "create", "bot", "--folder", "team")
    ok("role", "grant", "ai.languageModels.user", "--folder", "team", "--sa", "bot")
    created = ok_json(
        "key",
        "create",
        "--sa",
        "bot",
        "--folder",
        "team",
        "--scope",
        "yc.ai.languageModels.execute",
        "--expires-in",
        "12h",
    )
    assert isinstance(created, dict)
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(hours=12))) < timedelta(minutes=1)
    assert created["scopes"] == ["yc.ai.languageModels.execute"]

    principal = authenticate(home, created["api_key"])
    database = Database(f"sqlite:///{home / 'fovea.db'}")
    IamService(database).authorize(principal, principal.folder_id, Permission.MODELS_USE)
    database.dispose()

    listing = ok("key", "list", "--sa", "bot", "--json").stdout
    assert created["id"] in listing and created["api_key"] not in listing
    ok("key", "revoke", created["id"])
    (revoked,) = json.loads(ok("key", "list", "--json").stdout)
    assert revoked["revoked_at"] is not None


def test_key_create_text_prints_the_secret_once_with_a_warning(home: Path) -> None:
    ok("bootstrap")
    result = ok("key", "create", "--sa", "default", "--expires-at", "2999-01-01T00:00:00")
    assert result.stdout.count("fva.") == 1
    assert "2999-01-01" in result.stdout
    assert "shown only once" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sa", "create", "bot", "--folder", "nowhere"], "Error: Folder 'nowhere' not found"),
        (["key", "revoke", "aje00000000000000000"], "Error: API key 'aje00000000000000000'"),
        (
            ["role", "grant", "ai.owner", "--folder", "default", "--sa", "default"],
            "Error: Unknown role 'ai.owner'; valid roles: ai.languageModels.user",
        ),
        (["folder", "create", "Bad Name"], "Error: Invalid folder name 'Bad Name'"),
    ],
)
def test_errors_are_one_clean_line_and_exit_1(home: Path, args: list[str], message: str) -> None:
    ok("bootstrap")
    result = fovea_iam(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--expires-in", "3x"],
        ["--expires-at", "tomorrow"],
        ["--expires-in", "1d", "--expires-at", "2999-01-01"],
    ],
)
def test_bad_expiry_options_are_usage_errors(home: Path, args: list[str]) -> None:
    ok("bootstrap")
    result = fovea_iam("key", "create", "--sa", "default", *args)
    assert result.exit_code == 2
    assert "expires" in result.stderr


def test_bootstrap_admin_prints_an_iam_key_once(home: Path) -> None:
    result = ok("bootstrap", "--admin")
    assert "admin" in result.stdout and "system.admin" in result.stdout
    assert result.stdout.count("fva.") == 1
    assert "shown only once" in result.stderr
    created = ok_json("bootstrap", "--admin")
    assert isinstance(created, dict)
    principal = authenticate(home, created["api_key"])
    assert principal.scopes == frozenset({"yc.iam.manage"})
    database = Database(f"sqlite:///{home / 'fovea.db'}")
    try:
        iam = IamService(database)
        assert iam.get_service_account(principal.service_account_id).name == "admin"
        roles = iam.roles(principal.service_account_id, principal.folder_id)
    finally:
        database.dispose()
    assert roles == frozenset({"system.admin"})


def test_audit_shows_every_change_made_here(home: Path) -> None:
    ok("folder", "create", "team")
    ok("sa", "create", "bot", "--folder", "team")
    ok("role", "grant", "ai.viewer", "--folder", "team", "--sa", "bot")
    created = ok_json("key", "create", "--sa", "bot", "--folder", "team")
    assert isinstance(created, dict)
    ok("key", "revoke", created["id"])
    ok("role", "revoke", "ai.viewer", "--folder", "team", "--sa", "bot")

    entries = ok_json("audit", "--folder", "team")
    assert isinstance(entries, list)
    assert [entry["action"] for entry in entries] == [
        "folder.create",
        "serviceAccount.create",
        "accessBinding.add",
        "apiKey.create",
        "apiKey.revoke",
        "accessBinding.remove",
    ]
    assert {entry["actor"] for entry in entries} == {"cli"}
    assert created["api_key"].split(".")[2] not in json.dumps(entries)
    table = ok("audit").stdout
    assert "apiKey.revoke" in table and created["id"] in table

    (revoked,) = ok_json("audit", "--action", "apiKey.revoke")  # type: ignore[misc]
    assert revoked["target_id"] == created["id"]
    assert len(ok_json("audit", "--since", "1h")) == 6  # type: ignore[arg-type]
    assert ok_json("audit", "--since", "2999-01-01T00:00:00") == []


def test_audit_refuses_a_bad_filter(home: Path) -> None:
    ok("bootstrap")
    bad_time = fovea_iam("audit", "--since", "yesterday")
    assert bad_time.exit_code == 2 and "--since" in bad_time.stderr
    bad_action = fovea_iam("audit", "--action", "apiKey.steal")
    assert bad_action.exit_code == 1
    assert bad_action.stderr.startswith("Error: Unknown audit action 'apiKey.steal'")
