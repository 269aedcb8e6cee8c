"""The access cache: repeated requests skip the database, yet expiry is exact and revocations
and role changes take effect once the cache's time is up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fovea.errors import AuthenticationError, PermissionDeniedError
from fovea.iam.roles import Permission
from fovea.iam.service import IamService
from fovea.services.access import AccessControl
from fovea.store.database import Database

pytestmark = pytest.mark.anyio

TTL = 2.0


class Clocks:
    """A monotonic timer for the cache and a wall clock for the keys, moved by hand."""

    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.wall = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[IamService, AccessControl, Clocks]:
    clocks = Clocks()
    database = Database(f"sqlite:///{tmp_path / 'fovea.db'}")
    database.migrate()
    iam = IamService(database, clock=lambda: clocks.wall)
    access = AccessControl(iam, cache_ttl_s=TTL, timer=lambda: clocks.monotonic)
    return iam, access, clocks


async def test_a_revoked_key_is_refused_once_the_cache_time_is_up(
    setup: tuple[IamService, AccessControl, Clocks],
) -> None:
    iam, access, clocks = setup
    _, _, key = iam.bootstrap()
    principal = await access.authenticate(key.secret)
    iam.revoke_key(key.info.id)
    # Within the cache's time the key is not read again: proof the hot path skips the database.
    assert await access.authenticate(key.secret) == principal
    clocks.advance(TTL)
    with pytest.raises(AuthenticationError, match="Unknown api key"):
        await access.authenticate(key.secret)


async def test_a_cached_key_still_needs_its_secret_and_expires_on_time(
    setup: tuple[IamService, AccessControl, Clocks],
) -> None:
    iam, access, clocks = setup
    _, account, _ = iam.bootstrap()
    key = iam.create_key(account.id, expires_at=clocks.wall + timedelta(seconds=1))
    await access.authenticate(key.secret)
    forged = key.secret[:-4] + ("AAAA" if not key.secret.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError, match="Unknown api key"):
        await access.authenticate(forged)
    clocks.wall += timedelta(seconds=1)  # the cache entry is still fresh
    with pytest.raises(AuthenticationError, match="The apikey has expired"):
        await access.authenticate(key.secret)


async def test_role_changes_take_effect_once_the_cache_time_is_up(
    setup: tuple[IamService, AccessControl, Clocks],
) -> None:
    iam, access, clocks = setup
    folder, account, key = iam.bootstrap()
    principal = await access.authenticate(key.secret)
    await access.require(principal, folder.id, Permission.MODELS_USE)
    iam.revoke_role(folder.id, account.id, "ai.languageModels.user")
    await access.require(principal, folder.id, Permission.MODELS_USE)
    clocks.advance(TTL)
    with pytest.raises(PermissionDeniedError):
        await access.require(principal, folder.id, Permission.MODELS_USE)
    iam.grant_role(folder.id, account.id, "ai.editor")
    clocks.advance(TTL)
    await access.require(principal, folder.id, Permission.BATCHES_WRITE)
