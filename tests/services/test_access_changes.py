"""Access changes across replicas: with Redis, a key revoked or a role removed on one replica
is refused by another at once, though its cache would keep the old answer for an hour."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fovea.cli.iam import iam_app
from fovea.errors import AuthenticationError, PermissionDeniedError
from fovea.iam.roles import Permission
from fovea.iam.service import IamService
from fovea.services.access import AccessControl
from fovea.services.access_changes import AccessChanges
from fovea.services.redis_client import connect
from fovea.store.database import Database
from tests.processes import free_port

pytestmark = pytest.mark.anyio

HOUR_S = 3600.0  # long enough that only a told change can explain a refusal
DEADLINE_S = 10.0


@dataclass
class Replica:
    access: AccessControl
    changes: AccessChanges


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, anyio_backend: str
) -> AsyncIterator[tuple[IamService, Replica, Replica]]:
    database = Database(f"sqlite:///{tmp_path / 'fovea.db'}")
    database.migrate()
    iam = IamService(database)
    redis = connect(redis_url)
    replicas = []
    for _ in range(2):
        access = AccessControl(iam, cache_ttl_s=HOUR_S)
        changes = AccessChanges(access, redis)
        changes.start()
        await asyncio.wait_for(changes.subscribed.wait(), DEADLINE_S)
        replicas.append(Replica(access, changes))
    yield iam, replicas[0], replicas[1]
    for replica in replicas:
        await replica.changes.aclose()
    await redis.aclose()
    database.dispose()


async def _until_refused(check: Callable[[], Awaitable[object]], error: type[Exception]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            await check()
        except error:
            return
        assert time.monotonic() < deadline, "the other replica never heard of the change"
        await asyncio.sleep(0.01)


async def test_a_key_revoked_on_one_replica_is_refused_by_the_other(
    fleet: tuple[IamService, Replica, Replica],
) -> None:
    iam, here, there = fleet
    _, _, key = iam.bootstrap()
    await here.access.authenticate(key.secret)
    await there.access.authenticate(key.secret)  # cached there for an hour
    iam.revoke_key(key.info.id)
    await here.changes.key_revoked(key.info.id)
    with pytest.raises(AuthenticationError):
        await here.access.authenticate(key.secret)
    await _until_refused(lambda: there.access.authenticate(key.secret), AuthenticationError)


async def test_a_role_removed_on_one_replica_is_refused_by_the_other(
    fleet: tuple[IamService, Replica, Replica],
) -> None:
    iam, here, there = fleet
    folder, account, key = iam.bootstrap()
    principal = await there.access.authenticate(key.secret)
    await there.access.require(principal, folder.id, Permission.MODELS_USE)  # cached
    iam.revoke_role(folder.id, account.id, "ai.languageModels.user")
    await here.changes.roles_changed(account.id, folder.id)
    await _until_refused(
        lambda: there.access.require(principal, folder.id, Permission.MODELS_USE),
        PermissionDeniedError,
    )


async def test_without_redis_only_this_replica_forgets_at_once(
    tmp_path: Path, anyio_backend: str
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'fovea.db'}")
    database.migrate()
    try:
        iam = IamService(database)
        here = AccessControl(iam, cache_ttl_s=HOUR_S)
        there = AccessControl(iam, cache_ttl_s=HOUR_S)
        _, _, key = iam.bootstrap()
        await here.authenticate(key.secret)
        await there.authenticate(key.secret)
        iam.revoke_key(key.info.id)
        await AccessChanges(here).key_revoked(key.info.id)
        with pytest.raises(AuthenticationError):
            await here.authenticate(key.secret)
        await there.authenticate(key.secret)  # until its cache entry expires
    finally:
        database.dispose()


async def test_a_key_revoked_with_the_cli_is_refused_by_running_replicas(
    fleet: tuple[IamService, Replica, Replica],
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iam, here, there = fleet
    _, account, key = iam.bootstrap()
    iam.grant_role(account.folder_id, account.id, "ai.viewer")
    principal = await here.access.authenticate(key.secret)
    await there.access.authenticate(key.secret)  # cached for an hour on both
    await there.access.require(principal, account.folder_id, Permission.FILES_READ)
    monkeypatch.setenv("FOVEA_DATABASE_URL", f"sqlite:///{tmp_path / 'fovea.db'}")
    monkeypatch.setenv("FOVEA_REDIS_URL", redis_url)
    cli = CliRunner()
    role = ["role", "revoke", "ai.viewer", "--folder", account.folder_id, "--sa", account.id]
    assert cli.invoke(iam_app, role).exit_code == 0
    await _until_refused(
        lambda: there.access.require(principal, account.folder_id, Permission.FILES_READ),
        PermissionDeniedError,
    )
    revoked = cli.invoke(iam_app, ["key", "revoke", key.info.id])
    assert revoked.exit_code == 0 and "Warning" not in revoked.output
    await _until_refused(lambda: here.access.authenticate(key.secret), AuthenticationError)
    await _until_refused(lambda: there.access.authenticate(key.secret), AuthenticationError)


def test_the_cli_warns_when_redis_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOVEA_DATABASE_URL", f"sqlite:///{tmp_path / 'fovea.db'}")
    monkeypatch.setenv("FOVEA_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing there
    database = Database(f"sqlite:///{tmp_path / 'fovea.db'}")
    database.migrate()
    _, _, key = IamService(database).bootstrap()
    database.dispose()
    revoked = CliRunner().invoke(iam_app, ["key", "revoke", key.info.id])
    assert revoked.exit_code == 0  # revoked in the database all the same
    assert "running servers were not told" in revoked.output
