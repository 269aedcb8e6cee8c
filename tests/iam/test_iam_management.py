"""Managing folders, service accounts, roles and keys; bootstrap; secrets at rest."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fovea.errors import ConflictError, FoveaError, InvalidRequestError, NotFoundError
from fovea.iam import (
    ApiKeyInfo,
    Folder,
    IamService,
    Permission,
    Role,
    RoleBinding,
    Scope,
    ServiceAccount,
)
from fovea.iam.apikeys import hash_secret, parse_api_key
from fovea.store import Database
from tests.conftest import SQLITE_ONLY

if TYPE_CHECKING:
    from tests.iam.conftest import FakeClock


def test_folders_are_found_by_id_or_name(iam: IamService) -> None:
    folder = iam.create_folder("research", "vision experiments")
    assert isinstance(folder, Folder) and folder.id.startswith("b1g")
    assert iam.get_folder(folder.id) == folder == iam.get_folder("research")
    assert iam.list_folders() == [folder]
    assert folder.created_at.utcoffset() == timedelta(0)


def test_results_are_plain_values_not_database_records(iam: IamService) -> None:
    folder = iam.create_folder("research")
    assert dataclasses.is_dataclass(folder)
    with pytest.raises(dataclasses.FrozenInstanceError):
        folder.name = "renamed"  # type: ignore[misc]


def test_duplicate_and_invalid_names_are_refused(iam: IamService) -> None:
    iam.create_folder("research")
    with pytest.raises(ConflictError, match="already exists"):
        iam.create_folder("research")
    for bad in ["", "Research", "1st", "ends-", "x" * 64, "b1g0123456789abcdefgh"[:20]]:
        with pytest.raises(InvalidRequestError, match="Invalid folder name"):
            iam.create_folder(bad)
    with pytest.raises(InvalidRequestError, match="description"):
        iam.create_folder("long", "d" * 257)


def test_unknown_folder_is_not_found(iam: IamService) -> None:
    with pytest.raises(NotFoundError, match="Folder 'nowhere' not found") as caught:
        iam.get_folder("nowhere")
    assert caught.value.status_code == 404


def test_service_account_names_are_unique_per_folder(iam: IamService) -> None:
    first, second = iam.create_folder("one"), iam.create_folder("two")
    bot_one = iam.create_service_account("one", "bot")
    bot_two = iam.create_service_account(second.id, "bot", "the other bot")
    assert isinstance(bot_one, ServiceAccount) and bot_one.folder_id == first.id
    with pytest.raises(ConflictError, match="already exists"):
        iam.create_service_account("one", "bot")
    assert iam.list_service_accounts("two") == [bot_two]
    assert len(iam.list_service_accounts()) == 2
    with pytest.raises(InvalidRequestError, match="name the folder"):
        iam.get_service_account("bot")
    assert iam.get_service_account("bot", folder="two") == bot_two
    assert iam.get_service_account(bot_one.id) == bot_one


def test_service_account_in_unknown_folder(iam: IamService) -> None:
    with pytest.raises(NotFoundError, match="Folder 'ghost'"):
        iam.create_service_account("ghost", "bot")


def test_roles_are_granted_idempotently_and_revoked(iam: IamService) -> None:
    folder = iam.create_folder("team")
    bot = iam.create_service_account("team", "bot")
    binding = iam.grant_role("team", "bot", "ai.editor")
    assert binding == RoleBinding(folder.id, bot.id, "ai.editor", binding.created_at)
    assert iam.grant_role(folder.id, bot.id, Role.EDITOR) == binding
    assert iam.list_roles("team") == [binding]
    assert iam.list_roles(service_account=bot.id) == [binding]
    iam.revoke_role("team", "bot", "ai.editor")
    assert iam.list_roles() == []
    with pytest.raises(NotFoundError, match=re.escape("has no role ai.editor")):
        iam.revoke_role("team", "bot", "ai.editor")


def test_invalid_role_lists_the_valid_ones(iam: IamService) -> None:
    iam.create_folder("team")
    iam.create_service_account("team", "bot")
    with pytest.raises(InvalidRequestError) as caught:
        iam.grant_role("team", "bot", "ai.owner")
    assert caught.value.message == (
        "Unknown role 'ai.owner'; valid roles: "
        "ai.languageModels.user, ai.viewer, ai.editor, ai.admin, system.admin"
    )


def test_keys_are_listed_without_secrets_and_revoked(iam: IamService, clock: FakeClock) -> None:
    iam.create_folder("team")
    bot = iam.create_service_account("team", "bot")
    created = iam.create_key("bot", folder="team", description="ci")
    (listed,) = iam.list_keys("bot")
    assert isinstance(listed, ApiKeyInfo) and listed == created.info
    assert created.secret not in repr(listed)
    assert listed.status(clock.now) == "active"
    revoked = iam.revoke_key(listed.id)
    assert revoked.revoked_at == clock.now and revoked.status(clock.now) == "revoked"
    assert iam.revoke_key(listed.id) == revoked
    assert iam.list_keys(bot.id, folder="team") == [revoked]
    with pytest.raises(NotFoundError):
        iam.revoke_key("aje00000000000000000")


def test_key_creation_checks_scopes_and_expiry(iam: IamService, clock: FakeClock) -> None:
    iam.create_folder("team")
    iam.create_service_account("team", "bot")
    with pytest.raises(InvalidRequestError, match=re.escape("valid scopes: yc.ai")):
        iam.create_key("bot", scopes=["yc.ai.everything"])
    with pytest.raises(InvalidRequestError, match="future"):
        iam.create_key("bot", expires_at=clock.now - timedelta(seconds=1))
    naive = (clock.now + timedelta(days=1)).replace(tzinfo=None)
    key = iam.create_key("bot", expires_at=naive, scopes=[Scope.LANGUAGE_MODELS_EXECUTE])
    assert key.info.expires_at == clock.now + timedelta(days=1)
    assert key.info.scopes == ("yc.ai.languageModels.execute",)


def test_bootstrap_reuses_folder_and_account_and_issues_a_new_working_key(
    iam: IamService,
) -> None:
    folder, account, first = iam.bootstrap()
    again_folder, again_account, second = iam.bootstrap()
    assert (again_folder, again_account) == (folder, account)
    assert (folder.name, account.name) == ("default", "default")
    assert first.secret != second.secret
    for key in (first, second):
        principal = iam.authenticate(key.secret)
        assert principal.folder_id == folder.id
        assert principal.scopes == frozenset({Scope.FOUNDATION_MODELS_EXECUTE.value})
        iam.authorize(principal, folder.id, Permission.MODELS_USE)
    assert [b.role for b in iam.list_roles(folder.id)] == ["ai.languageModels.user"]


def test_bootstrap_adopts_an_existing_folder_and_account(iam: IamService) -> None:
    folder = iam.create_folder("prod")
    account = iam.create_service_account("prod", "web")
    got_folder, got_account, _ = iam.bootstrap("prod", "web")
    assert (got_folder.id, got_account.id) == (folder.id, account.id)


@SQLITE_ONLY  # reads the database's files
def test_secrets_are_never_stored_in_plaintext(
    iam: IamService, database: Database, db_path: Path
) -> None:
    iam.create_folder("team")
    iam.create_service_account("team", "bot")
    keys = [iam.create_key("bot"), iam.bootstrap()[2]]
    database.dispose()
    stored = b"".join(path.read_bytes() for path in db_path.parent.glob("fovea.db*"))
    for key in keys:
        parsed = parse_api_key(key.secret)
        assert parsed is not None
        assert parsed.secret.encode() not in stored
        assert hash_secret(parsed.secret).encode() in stored


def test_state_survives_reopening_the_database(database_url: str) -> None:
    url = database_url
    first = Database(url)
    first.migrate()
    _, _, key = IamService(first).bootstrap()
    first.dispose()

    second = Database(url)
    try:
        second.migrate()
        principal = IamService(second).authenticate(key.secret)
        assert principal.key_id == key.info.id
    finally:
        second.dispose()


def test_database_errors_are_translated(database_url: str) -> None:
    unmigrated = Database(database_url)
    try:
        with pytest.raises(FoveaError, match=r"^Internal database error$") as caught:
            IamService(unmigrated).list_folders()
    finally:
        unmigrated.dispose()
    assert caught.value.status_code == 500
