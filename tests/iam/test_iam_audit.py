"""Every IAM change leaves one audit record, written in the change's own transaction."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError

from fovea.errors import ConflictError, FoveaError, InvalidRequestError, NotFoundError
from fovea.iam import BindingChange, IamService
from fovea.store.audit import AuditStore
from tests.iam.conftest import FakeClock


def _actions(iam: IamService) -> list[tuple[str, str]]:
    return [(entry.action, entry.actor) for entry in iam.audit_log()]


def test_each_change_is_recorded_with_its_actor(iam: IamService, clock: FakeClock) -> None:
    folder = iam.create_folder("team", "vision")
    bot = iam.create_service_account("team", "bot", actor="ajekey")
    iam.grant_role("team", "bot", "ai.viewer", actor="ajekey")
    iam.grant_role("team", "bot", "ai.viewer")  # held already: no change
    key = iam.create_key("bot", folder="team", description="ci", actor="ajekey")
    iam.revoke_key(key.info.id)
    iam.revoke_key(key.info.id)  # revoked already: no change
    iam.revoke_role("team", "bot", "ai.viewer")
    assert _actions(iam) == [
        ("folder.create", "cli"),
        ("serviceAccount.create", "ajekey"),
        ("accessBinding.add", "ajekey"),
        ("apiKey.create", "ajekey"),
        ("apiKey.revoke", "cli"),
        ("accessBinding.remove", "cli"),
    ]
    entries = iam.audit_log()
    assert {entry.folder_id for entry in entries} == {folder.id}
    assert [entry.target_id for entry in entries] == [
        folder.id,
        bot.id,
        bot.id,
        key.info.id,
        key.info.id,
        bot.id,
    ]
    assert entries[0].created_at == clock.now
    assert entries[3].details == {
        "serviceAccountId": bot.id,
        "scopes": ["yc.ai.foundationModels.execute"],
        "expiresAt": None,
        "description": "ci",
    }
    assert key.secret.split(".")[2] not in json.dumps([entry.details for entry in entries])


def test_bootstrap_records_only_what_it_made(iam: IamService) -> None:
    iam.bootstrap()
    iam.bootstrap()
    iam.bootstrap("default", "admin", admin=True)
    assert [action for action, _ in _actions(iam)] == [
        "folder.create",
        "serviceAccount.create",
        "accessBinding.add",
        "apiKey.create",
        "apiKey.create",
        "serviceAccount.create",
        "accessBinding.add",
        "apiKey.create",
    ]
    (admin_role,) = iam.audit_log(action="accessBinding.add")[1:]
    assert admin_role.details["roleId"] == "system.admin"


def test_a_refused_change_leaves_no_record(iam: IamService) -> None:
    iam.create_folder("team")
    with pytest.raises(ConflictError):
        iam.create_folder("team")
    iam.create_service_account("team", "bot")
    changes = [BindingChange(True, "bot", "ai.viewer"), BindingChange(False, "bot", "ai.editor")]
    with pytest.raises(NotFoundError):
        iam.update_bindings("team", changes)
    assert iam.list_roles("team") == []
    assert [action for action, _ in _actions(iam)] == ["folder.create", "serviceAccount.create"]


def test_the_record_and_the_change_commit_together(
    iam: IamService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT INTO iam_audit", {}, Exception("disk full"))

    monkeypatch.setattr(AuditStore, "append", broken)
    with pytest.raises(FoveaError, match="Internal database error"):
        iam.create_folder("team")
    assert iam.list_folders() == []


def test_the_log_filters_by_folder_action_and_time(iam: IamService, clock: FakeClock) -> None:
    iam.create_folder("one")
    clock.advance(timedelta(hours=1))
    start = clock.now
    two = iam.create_folder("two")
    iam.create_service_account("two", "bot")
    assert [e.target_id for e in iam.audit_log(folder="two", action="folder.create")] == [two.id]
    assert len(iam.audit_log(since=start)) == 2
    assert len(iam.audit_log(since=start.replace(tzinfo=None))) == 2  # naive times are UTC
    first, *rest = iam.audit_log()
    assert iam.audit_log(after_id=first.id, limit=1) == rest[:1]
    with pytest.raises(InvalidRequestError, match=re.escape("valid actions: folder.create")):
        iam.audit_log(action="folder.delete")
    with pytest.raises(NotFoundError):
        iam.audit_log(folder="nowhere")
