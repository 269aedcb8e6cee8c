"""Pure checks: a presented key against its stored credentials, roles against a permission,
and the names, descriptions and times a client may give. No database here."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fovea.errors import AuthenticationError, InvalidRequestError, PermissionDeniedError
from fovea.iam.apikeys import parse_api_key, secret_matches
from fovea.iam.ids import is_resource_id
from fovea.iam.roles import Permission, permissions_of, roles_allowing
from fovea.iam.types import KeyCredentials, Principal

MISSING_KEY_MESSAGE = (
    "Missing API key: send 'Authorization: Bearer <key>' or 'Authorization: Api-Key <key>'"
)
UNKNOWN_KEY_MESSAGE = "Unknown api key"
EXPIRED_KEY_MESSAGE = "The apikey has expired"

MAX_DESCRIPTION_LENGTH = 256
_NAME_PATTERN = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def split_api_key(api_key: str | None) -> tuple[str, str]:
    """``(key id, secret)`` of a presented key; ``AuthenticationError`` if missing or malformed."""
    if not api_key:
        raise AuthenticationError(MISSING_KEY_MESSAGE)
    parsed = parse_api_key(api_key)
    if parsed is None:
        raise AuthenticationError(UNKNOWN_KEY_MESSAGE)
    return parsed.key_id, parsed.secret


def check_credentials(
    credentials: KeyCredentials,
    secret: str,
    now: datetime,
    scope_needed: frozenset[str] | None = None,
) -> Principal:
    """The key's principal if ``secret`` is its secret and the key is live.

    Raises ``AuthenticationError`` otherwise.
    """
    # The secret is checked first so that only its holder learns that a key has expired.
    if not secret_matches(secret, credentials.secret_hash) or credentials.revoked:
        raise AuthenticationError(UNKNOWN_KEY_MESSAGE)
    if credentials.expires_at is not None and credentials.expires_at <= now:
        raise AuthenticationError(EXPIRED_KEY_MESSAGE)
    principal = credentials.principal
    if scope_needed is not None and not principal.scopes & scope_needed:
        raise AuthenticationError(UNKNOWN_KEY_MESSAGE)
    return principal


def grants(roles: frozenset[str], permission: Permission) -> bool:
    return any(permission in permissions_of(role) for role in roles)


def check_permission(
    roles: frozenset[str], principal: Principal, folder_id: str, permission: Permission
) -> None:
    """``PermissionDeniedError`` unless one of ``roles`` grants ``permission``."""
    if grants(roles, permission):
        return
    allowed = ", ".join(role.value for role in roles_allowing(permission))
    raise PermissionDeniedError(
        f"Permission denied: service account {principal.service_account_id} has no role "
        f"on folder {folder_id} that allows {permission.value} (any of: {allowed})"
    )


def check_name(kind: str, name: str) -> None:
    if _NAME_PATTERN.fullmatch(name) is None or is_resource_id(name):
        raise InvalidRequestError(
            f"Invalid {kind} name {name!r}: use 1-63 lowercase letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen",
            param="name",
        )


def check_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequestError(
            f"The description is longer than {MAX_DESCRIPTION_LENGTH} characters",
            param="description",
        )


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
