"""Plain values that ``IamService`` returns; ORM records never leave ``fovea.iam``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: an authenticated API key of a service account."""

    key_id: str
    service_account_id: str
    folder_id: str
    scopes: frozenset[str]

    @property
    def api_key_id(self) -> str:
        """The API key the request was made with; empty for work no key started directly
        (batch lines and deferred completions act as principals named "batch:<id>" and
        "operation:<id>")."""
        return "" if ":" in self.key_id else self.key_id


@dataclass(frozen=True)
class KeyCredentials:
    """What checking a presented key needs: its hash, state and owner (no secret)."""

    secret_hash: str
    revoked: bool
    expires_at: datetime | None
    last_used_at: datetime | None
    principal: Principal


@dataclass(frozen=True)
class Folder:
    id: str
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class ServiceAccount:
    id: str
    folder_id: str
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class RoleBinding:
    folder_id: str
    service_account_id: str
    role: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as listed: everything but the secret, which is never kept."""

    id: str
    service_account_id: str
    folder_id: str
    scopes: tuple[str, ...]
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class CreatedKey:
    """A key just created: the only time its secret is available.

    ``secret`` is the whole key a client sends (``fva.<key_id>.<random>``).
    """

    info: ApiKeyInfo
    secret: str


@dataclass(frozen=True)
class BindingChange:
    """One change ``IamService.update_bindings`` makes: add or remove ``role`` for an account."""

    add: bool
    service_account: str  # id or name
    role: str
