"""Authentication: every way a key can be refused, and the exact messages clients see."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from fovea.errors import AuthenticationError
from fovea.iam import GENERATION_SCOPES, IamService, Principal, Scope
from fovea.iam.apikeys import format_api_key, new_secret, parse_api_key
from fovea.iam.ids import new_api_key_id

if TYPE_CHECKING:
    from tests.iam.conftest import FakeClock

# The cloud's words, which clients match on: written out here so that the code cannot drift.
MISSING_KEY_MESSAGE = (
    "Missing API key: send 'Authorization: Bearer <key>' or 'Authorization: Api-Key <key>'"
)
UNKNOWN_KEY_MESSAGE = "Unknown api key"
EXPIRED_KEY_MESSAGE = "The apikey has expired"


@pytest.fixture
def account(iam: IamService) -> str:
    folder = iam.create_folder("team")
    return iam.create_service_account(folder.id, "bot").id


def refused(iam: IamService, api_key: str | None, **kwargs: frozenset[str]) -> str:
    with pytest.raises(AuthenticationError) as caught:
        iam.authenticate(api_key, **kwargs)
    assert caught.value.status_code == 401
    return caught.value.message


@pytest.mark.parametrize("api_key", [None, ""])
def test_missing_key(iam: IamService, api_key: str | None) -> None:
    assert refused(iam, api_key) == MISSING_KEY_MESSAGE


@pytest.mark.parametrize(
    "api_key",
    ["sk-123", "fva.", "fva.short.secret", "fva.aje00000000000000000", "Bearer fva.x.y"],
)
def test_malformed_key(iam: IamService, api_key: str) -> None:
    assert refused(iam, api_key) == UNKNOWN_KEY_MESSAGE


def test_unknown_key_id(iam: IamService, account: str) -> None:
    assert refused(iam, format_api_key(new_api_key_id(), new_secret())) == UNKNOWN_KEY_MESSAGE


def test_wrong_secret(iam: IamService, account: str) -> None:
    key = iam.create_key(account)
    forged = format_api_key(key.info.id, new_secret())
    assert refused(iam, forged) == UNKNOWN_KEY_MESSAGE


def test_revoked_key(iam: IamService, account: str) -> None:
    key = iam.create_key(account)
    iam.revoke_key(key.info.id)
    assert refused(iam, key.secret) == UNKNOWN_KEY_MESSAGE


def test_expired_key(iam: IamService, clock: FakeClock, account: str) -> None:
    key = iam.create_key(account, expires_at=clock.now + timedelta(hours=1))
    iam.authenticate(key.secret)
    clock.advance(timedelta(hours=1))
    assert refused(iam, key.secret) == EXPIRED_KEY_MESSAGE


def test_expired_key_with_wrong_secret_reveals_nothing(
    iam: IamService, clock: FakeClock, account: str
) -> None:
    key = iam.create_key(account, expires_at=clock.now + timedelta(minutes=5))
    clock.advance(timedelta(hours=1))
    assert refused(iam, format_api_key(key.info.id, new_secret())) == UNKNOWN_KEY_MESSAGE


def test_key_without_the_needed_scope(iam: IamService, account: str) -> None:
    key = iam.create_key(account, scopes=[Scope.LANGUAGE_MODELS_EXECUTE])
    needed = frozenset({Scope.FOUNDATION_MODELS_EXECUTE.value})
    assert refused(iam, key.secret, scope_needed=needed) == UNKNOWN_KEY_MESSAGE


@pytest.mark.parametrize("scope", sorted(GENERATION_SCOPES))
def test_either_scope_allows_generation(iam: IamService, account: str, scope: str) -> None:
    key = iam.create_key(account, scopes=[scope])
    principal = iam.authenticate(key.secret, scope_needed=GENERATION_SCOPES)
    assert principal.scopes == frozenset({scope})


def test_the_iam_scope_does_not_allow_generation(iam: IamService, account: str) -> None:
    key = iam.create_key(account, scopes=[Scope.IAM_MANAGE])
    assert refused(iam, key.secret, scope_needed=GENERATION_SCOPES) == UNKNOWN_KEY_MESSAGE


def test_valid_key_gives_its_principal(iam: IamService, account: str) -> None:
    key = iam.create_key(account)
    principal = iam.authenticate(key.secret)
    assert principal == Principal(
        key_id=key.info.id,
        service_account_id=account,
        folder_id=key.info.folder_id,
        scopes=frozenset({Scope.FOUNDATION_MODELS_EXECUTE.value}),
    )
    assert principal.folder_id == iam.get_folder("team").id


def test_surrounding_whitespace_is_tolerated(iam: IamService, account: str) -> None:
    key = iam.create_key(account)
    assert iam.authenticate(f"  {key.secret}\n").key_id == key.info.id


def test_last_used_is_recorded_at_most_once_a_minute(
    iam: IamService, clock: FakeClock, account: str
) -> None:
    key = iam.create_key(account)
    assert iam.list_keys(account)[0].last_used_at is None

    first_use = clock.now
    iam.authenticate(key.secret)
    clock.advance(timedelta(seconds=30))
    iam.authenticate(key.secret)
    assert iam.list_keys(account)[0].last_used_at == first_use

    clock.advance(timedelta(seconds=31))
    iam.authenticate(key.secret)
    assert iam.list_keys(account)[0].last_used_at == clock.now


def test_the_key_string_carries_its_id(iam: IamService, account: str) -> None:
    key = iam.create_key(account)
    parsed = parse_api_key(key.secret)
    assert parsed is not None
    assert parsed.key_id == key.info.id
    assert key.secret.startswith(f"fva.{key.info.id}.")
