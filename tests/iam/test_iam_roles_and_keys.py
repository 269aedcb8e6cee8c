"""The access model as data: role hierarchy, scopes, key format and header parsing."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fovea.errors import InvalidRequestError
from fovea.iam import Permission, Role, Scope, api_key_from_authorization
from fovea.iam.apikeys import (
    SECRET_LENGTH,
    format_api_key,
    hash_secret,
    new_secret,
    parse_api_key,
    secret_matches,
    validate_scopes,
)
from fovea.iam.ids import (
    is_resource_id,
    new_api_key_id,
    new_folder_id,
    new_service_account_id,
)
from fovea.iam.roles import parse_role, permissions_of, roles_allowing

USER, VIEWER, EDITOR, ADMIN = (
    Role.LANGUAGE_MODELS_USER,
    Role.VIEWER,
    Role.EDITOR,
    Role.ADMIN,
)

EXPECTED_ROLES = {
    Permission.MODELS_USE: [USER, EDITOR, ADMIN],
    Permission.MODELS_READ: [USER, VIEWER, EDITOR, ADMIN],
    Permission.BATCHES_READ: [VIEWER, EDITOR, ADMIN],
    Permission.FILES_READ: [VIEWER, EDITOR, ADMIN],
    Permission.BATCHES_WRITE: [EDITOR, ADMIN],
    Permission.FILES_WRITE: [EDITOR, ADMIN],
    Permission.IAM_ADMIN: [ADMIN],
}


@pytest.mark.parametrize(("permission", "roles"), EXPECTED_ROLES.items())
def test_roles_allowing_each_permission(permission: Permission, roles: list[Role]) -> None:
    assert sorted(roles_allowing(permission)) == sorted(roles)


def test_hierarchy_admin_includes_editor_includes_viewer_and_user() -> None:
    assert permissions_of(ADMIN) > permissions_of(EDITOR)
    assert permissions_of(EDITOR) >= permissions_of(VIEWER) | permissions_of(USER)


def test_unknown_role_names_grant_nothing_and_are_refused_with_the_valid_ones() -> None:
    assert permissions_of("ai.superuser") == frozenset()
    with pytest.raises(InvalidRequestError, match=re.escape("ai.languageModels.user, ai.viewer")):
        parse_role("ai.superuser")


def test_scopes_are_validated_and_deduplicated() -> None:
    both = [Scope.LANGUAGE_MODELS_EXECUTE.value, Scope.FOUNDATION_MODELS_EXECUTE.value]
    assert validate_scopes([*both, both[0]]) == tuple(both)
    with pytest.raises(InvalidRequestError, match=re.escape("yc.ai.foundationModels.execute")):
        validate_scopes(["yc.ai.everything"])
    with pytest.raises(InvalidRequestError, match="at least one scope"):
        validate_scopes([])


@pytest.mark.parametrize(
    ("make", "prefix"),
    [(new_folder_id, "b1g"), (new_service_account_id, "aje"), (new_api_key_id, "aje")],
)
def test_ids_look_like_the_clouds(make: Callable[[], str], prefix: str) -> None:
    ids = {make() for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert value.startswith(prefix) and len(value) == 20 and is_resource_id(value)
        assert value == value.lower() and value.isalnum()


def test_key_round_trip_and_hash() -> None:
    key_id, secret = new_api_key_id(), new_secret()
    assert len(secret) == SECRET_LENGTH
    parsed = parse_api_key(format_api_key(key_id, secret))
    assert parsed is not None and (parsed.key_id, parsed.secret) == (key_id, secret)
    assert secret_matches(secret, hash_secret(secret))
    assert not secret_matches(new_secret(), hash_secret(secret))
    assert len(hash_secret(secret)) == 64


@given(st.text())
def test_parsing_arbitrary_text_never_raises(text: str) -> None:
    parsed = parse_api_key(text)
    if parsed is not None:
        assert format_api_key(parsed.key_id, parsed.secret) == text.strip()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer fva.a.b", "fva.a.b"),
        ("bearer  fva.a.b ", "fva.a.b"),
        ("Api-Key fva.a.b", "fva.a.b"),
        ("API-KEY fva.a.b", "fva.a.b"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_api_key_from_authorization_header(header: str | None, expected: str | None) -> None:
    assert api_key_from_authorization(header) == expected
