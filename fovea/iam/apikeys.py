"""API key secrets: their format, hashing and scopes.

A key reads ``fva.<key_id>.<secret>``. The key id makes the lookup one primary-key read; the
secret is 40 url-safe characters (240 random bits), kept only as its SHA-256. A plain hash
suffices because the secret is random and long: there is nothing to brute-force or look up,
which is what slow password hashes defend against.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from fovea.errors import InvalidRequestError

KEY_PREFIX = "fva"
SECRET_LENGTH = 40
_SECRET_BYTES = SECRET_LENGTH * 3 // 4
_API_KEY_PATTERN = re.compile(
    rf"{KEY_PREFIX}\.(?P<key_id>[a-z0-9]{{20}})\.(?P<secret>[A-Za-z0-9_-]{{{SECRET_LENGTH}}})"
)
_AUTHORIZATION_SCHEMES = ("bearer", "api-key")


class Scope(StrEnum):
    """What a key may be used for, independent of the roles of its service account."""

    FOUNDATION_MODELS_EXECUTE = "yc.ai.foundationModels.execute"
    LANGUAGE_MODELS_EXECUTE = "yc.ai.languageModels.execute"
    # Fovea's own: the IAM API (folders, service accounts, roles, keys, the audit log).
    IAM_MANAGE = "yc.iam.manage"


GENERATION_SCOPES: frozenset[str] = frozenset(
    {Scope.FOUNDATION_MODELS_EXECUTE.value, Scope.LANGUAGE_MODELS_EXECUTE.value}
)
IAM_SCOPES: frozenset[str] = frozenset({Scope.IAM_MANAGE.value})
DEFAULT_SCOPES: tuple[str, ...] = (Scope.FOUNDATION_MODELS_EXECUTE.value,)


@dataclass(frozen=True)
class ParsedApiKey:
    key_id: str
    secret: str


def new_secret() -> str:
    return secrets.token_urlsafe(_SECRET_BYTES)


def format_api_key(key_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}.{key_id}.{secret}"


def parse_api_key(value: str) -> ParsedApiKey | None:
    """Split a presented key into id and secret; ``None`` when it is not shaped like one."""
    match = _API_KEY_PATTERN.fullmatch(value.strip())
    if match is None:
        return None
    return ParsedApiKey(key_id=match["key_id"], secret=match["secret"])


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)


def api_key_from_authorization(header: str | None) -> str | None:
    """The key in ``Authorization: Bearer <key>`` or ``Authorization: Api-Key <key>``."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() not in _AUTHORIZATION_SCHEMES:
        return None
    return credentials.strip() or None


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Known scopes, deduplicated in the order given; raises ``InvalidRequestError`` otherwise."""
    valid = [scope.value for scope in Scope]
    chosen = list(dict.fromkeys(scopes))
    unknown = [scope for scope in chosen if scope not in valid]
    if unknown:
        raise InvalidRequestError(
            f"Unknown scope {unknown[0]!r}; valid scopes: {', '.join(valid)}", param="scopes"
        )
    if not chosen:
        raise InvalidRequestError(
            f"An API key needs at least one scope; valid scopes: {', '.join(valid)}",
            param="scopes",
        )
    return tuple(chosen)
