"""``IamService``: authenticates API keys, authorizes actions and manages IAM resources.

Folders and service accounts can be named by id or by name. Database errors are translated
here into ``fovea.errors``; callers see only the dataclasses of ``fovea.iam.types``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from fovea.errors import (
    AuthenticationError,
    FoveaError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from fovea.iam import records
from fovea.iam.apikeys import (
    DEFAULT_SCOPES,
    Scope,
    parse_api_key,
    secret_matches,
    validate_scopes,
)
from fovea.iam.ids import is_resource_id
from fovea.iam.roles import Permission, Role, parse_role, permissions_of, roles_allowing
from fovea.iam.types import (
    ApiKeyInfo,
    CreatedKey,
    Folder,
    KeyCredentials,
    Principal,
    RoleBinding,
    ServiceAccount,
)
from fovea.store.database import Database
from fovea.store.tables import ApiKeyRecord, FolderRecord, RoleBindingRecord, ServiceAccountRecord

logger = logging.getLogger(__name__)

MISSING_KEY_MESSAGE = (
    "Missing API key: send 'Authorization: Bearer <key>' or 'Authorization: Api-Key <key>'"
)
UNKNOWN_KEY_MESSAGE = "Unknown api key"
EXPIRED_KEY_MESSAGE = "The apikey has expired"

LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_DESCRIPTION_LENGTH = 256
_NAME_PATTERN = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class IamService:
    """Identity and access for one database. Methods are synchronous and thread-safe."""

    def __init__(self, database: Database, *, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    # -- authentication and authorization ------------------------------------------------

    def authenticate(
        self, api_key: str | None, *, scope_needed: frozenset[str] | None = None
    ) -> Principal:
        """The principal of ``api_key``; needs one of ``scope_needed`` when given.

        Raises ``AuthenticationError``: missing key, or unknown/revoked/out-of-scope key
        ("Unknown api key"), or expired key ("The apikey has expired").
        """
        key_id, secret = split_api_key(api_key)
        credentials = self.credentials(key_id)
        if credentials is None:
            raise AuthenticationError(UNKNOWN_KEY_MESSAGE)
        principal = check_credentials(credentials, secret, self._clock(), scope_needed)
        self.record_use(credentials)
        return principal

    def credentials(self, key_id: str) -> KeyCredentials | None:
        """A key's stored credentials, or None when there is no such key."""
        with self._transaction() as session:
            row = session.execute(
                records.keys_with_folder().where(ApiKeyRecord.id == key_id)
            ).one_or_none()
        if row is None:
            return None
        key, folder_id = row
        return KeyCredentials(
            secret_hash=key.secret_hash,
            revoked=key.revoked_at is not None,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
            principal=Principal(
                key_id=key.id,
                service_account_id=key.service_account_id,
                folder_id=folder_id,
                scopes=frozenset(key.scopes),
            ),
        )

    def record_use(self, credentials: KeyCredentials) -> None:
        """Note that a key was just used; written once a minute per key at most."""
        now = self._clock()
        last = credentials.last_used_at
        if last is None or now - last >= LAST_USED_RESOLUTION:
            self._touch_key(credentials.principal.key_id, now)

    def authorize(self, principal: Principal, folder_id: str, permission: Permission) -> None:
        """Raise ``PermissionDeniedError`` unless a role on ``folder_id`` grants ``permission``."""
        check_permission(
            self.roles(principal.service_account_id, folder_id), principal, folder_id, permission
        )

    def roles(self, service_account_id: str, folder_id: str) -> frozenset[str]:
        """The roles bound to ``service_account_id`` on ``folder_id``."""
        with self._transaction() as session:
            found = session.scalars(
                select(RoleBindingRecord.role).where(
                    RoleBindingRecord.folder_id == folder_id,
                    RoleBindingRecord.service_account_id == service_account_id,
                )
            ).all()
        return frozenset(found)

    # -- folders and service accounts ----------------------------------------------------

    def create_folder(self, name: str, description: str = "") -> Folder:
        _check_name("folder", name)
        _check_description(description)
        with self._transaction() as session:
            record = records.insert_folder(session, name, description, self._clock())
        return records.to_folder(record)

    def list_folders(self) -> list[Folder]:
        with self._transaction() as session:
            found = session.scalars(select(FolderRecord).order_by(FolderRecord.name)).all()
        return [records.to_folder(record) for record in found]

    def get_folder(self, id_or_name: str) -> Folder:
        with self._transaction() as session:
            return records.to_folder(records.require_folder(session, id_or_name))

    def create_service_account(
        self, folder: str, name: str, description: str = ""
    ) -> ServiceAccount:
        _check_name("service account", name)
        _check_description(description)
        with self._transaction() as session:
            folder_id = records.require_folder(session, folder).id
            record = records.insert_service_account(
                session, folder_id, name, description, self._clock()
            )
        return records.to_service_account(record)

    def list_service_accounts(self, folder: str | None = None) -> list[ServiceAccount]:
        query = select(ServiceAccountRecord).order_by(
            ServiceAccountRecord.folder_id, ServiceAccountRecord.name
        )
        with self._transaction() as session:
            if folder is not None:
                folder_id = records.require_folder(session, folder).id
                query = query.where(ServiceAccountRecord.folder_id == folder_id)
            found = session.scalars(query).all()
        return [records.to_service_account(record) for record in found]

    def get_service_account(self, id_or_name: str, folder: str | None = None) -> ServiceAccount:
        with self._transaction() as session:
            folder_id = records.folder_id_or_none(session, folder)
            account = records.require_service_account(session, id_or_name, folder_id)
        return records.to_service_account(account)

    # -- roles ---------------------------------------------------------------------------

    def grant_role(self, folder: str, service_account: str, role: str) -> RoleBinding:
        """Bind ``role`` on ``folder``; granting a role already held changes nothing."""
        checked = parse_role(role)
        with self._transaction() as session:
            folder_id = records.require_folder(session, folder).id
            account = records.require_service_account(session, service_account, folder_id)
            record = records.ensure_binding(session, folder_id, account.id, checked, self._clock())
        return records.to_binding(record)

    def revoke_role(self, folder: str, service_account: str, role: str) -> None:
        checked = parse_role(role)
        with self._transaction() as session:
            folder_id = records.require_folder(session, folder).id
            account = records.require_service_account(session, service_account, folder_id)
            record = session.get(RoleBindingRecord, (folder_id, account.id, checked.value))
            if record is None:
                raise NotFoundError(
                    f"Service account {account.id} has no role {checked.value} "
                    f"on folder {folder_id}"
                )
            session.delete(record)

    def list_roles(
        self, folder: str | None = None, service_account: str | None = None
    ) -> list[RoleBinding]:
        query = select(RoleBindingRecord).order_by(
            RoleBindingRecord.folder_id,
            RoleBindingRecord.service_account_id,
            RoleBindingRecord.role,
        )
        with self._transaction() as session:
            folder_id = records.folder_id_or_none(session, folder)
            if folder_id is not None:
                query = query.where(RoleBindingRecord.folder_id == folder_id)
            if service_account is not None:
                account = records.require_service_account(session, service_account, folder_id)
                query = query.where(RoleBindingRecord.service_account_id == account.id)
            found = session.scalars(query).all()
        return [records.to_binding(record) for record in found]

    # -- API keys ------------------------------------------------------------------------

    def create_key(
        self,
        service_account: str,
        *,
        folder: str | None = None,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> CreatedKey:
        """A new key; its secret is in the result and nowhere else. Naive times are UTC."""
        checked_scopes = validate_scopes(scopes)
        _check_description(description)
        now = self._clock()
        if expires_at is not None:
            expires_at = _as_utc(expires_at)
            if expires_at <= now:
                raise InvalidRequestError(
                    "The expiry time must be in the future", param="expires_at"
                )
        with self._transaction() as session:
            account = records.require_service_account(
                session, service_account, records.folder_id_or_none(session, folder)
            )
            return records.insert_key(
                session, account, checked_scopes, expires_at, description, now
            )

    def list_keys(
        self, service_account: str | None = None, folder: str | None = None
    ) -> list[ApiKeyInfo]:
        query = records.keys_with_folder().order_by(ApiKeyRecord.created_at, ApiKeyRecord.id)
        with self._transaction() as session:
            folder_id = records.folder_id_or_none(session, folder)
            if folder_id is not None:
                query = query.where(ServiceAccountRecord.folder_id == folder_id)
            if service_account is not None:
                account = records.require_service_account(session, service_account, folder_id)
                query = query.where(ApiKeyRecord.service_account_id == account.id)
            rows = session.execute(query).all()
        return [records.to_key_info(key, key_folder_id) for key, key_folder_id in rows]

    def revoke_key(self, key_id: str) -> ApiKeyInfo:
        """Revoke a key for good; revoking it again changes nothing."""
        with self._transaction() as session:
            row = session.execute(
                records.keys_with_folder().where(ApiKeyRecord.id == key_id)
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"API key {key_id!r} not found")
            key, folder_id = row
            if key.revoked_at is None:
                key.revoked_at = self._clock()
        return records.to_key_info(key, folder_id)

    def bootstrap(
        self, folder_name: str = "default", service_account_name: str = "default"
    ) -> tuple[Folder, ServiceAccount, CreatedKey]:
        """Reuse or create the folder and service account, then issue a new key.

        The account gets ``ai.languageModels.user`` on the folder and the key the scope
        ``yc.ai.foundationModels.execute``: enough for chat, nothing more.
        """
        _check_name("folder", folder_name)
        _check_name("service account", service_account_name)
        now = self._clock()
        with self._transaction() as session:
            folder = records.find_folder(session, folder_name) or records.insert_folder(
                session, folder_name, "", now
            )
            account = records.find_service_account(
                session, service_account_name, folder.id
            ) or records.insert_service_account(session, folder.id, service_account_name, "", now)
            records.ensure_binding(session, folder.id, account.id, Role.LANGUAGE_MODELS_USER, now)
            created = records.insert_key(
                session, account, (Scope.FOUNDATION_MODELS_EXECUTE.value,), None, "", now
            )
        return records.to_folder(folder), records.to_service_account(account), created

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with self._database.session() as session, session.begin():
                yield session
        except IntegrityError as exc:
            # Pre-checks give the precise messages; this is a concurrent duplicate.
            raise InvalidRequestError("The object conflicts with one that already exists") from exc
        except SQLAlchemyError as exc:
            logger.exception("IAM database operation failed")
            raise FoveaError("Internal database error") from exc

    def _touch_key(self, key_id: str, now: datetime) -> None:
        # Conditional so that concurrent requests write at most once per resolution.
        statement = (
            update(ApiKeyRecord)
            .where(ApiKeyRecord.id == key_id)
            .where(
                or_(
                    ApiKeyRecord.last_used_at.is_(None),
                    ApiKeyRecord.last_used_at <= now - LAST_USED_RESOLUTION,
                )
            )
            .values(last_used_at=now)
        )
        try:
            with self._database.session() as session, session.begin():
                session.execute(statement)
        except SQLAlchemyError:
            # Bookkeeping only: a busy database must not fail the request.
            logger.warning("could not record the use of API key %s", key_id, exc_info=True)


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


def check_permission(
    roles: frozenset[str], principal: Principal, folder_id: str, permission: Permission
) -> None:
    """``PermissionDeniedError`` unless one of ``roles`` grants ``permission``."""
    if any(permission in permissions_of(role) for role in roles):
        return
    allowed = ", ".join(role.value for role in roles_allowing(permission))
    raise PermissionDeniedError(
        f"Permission denied: service account {principal.service_account_id} has no role "
        f"on folder {folder_id} that allows {permission.value} (any of: {allowed})"
    )


def _check_name(kind: str, name: str) -> None:
    if _NAME_PATTERN.fullmatch(name) is None or is_resource_id(name):
        raise InvalidRequestError(
            f"Invalid {kind} name {name!r}: use 1-63 lowercase letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen",
            param="name",
        )


def _check_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequestError(
            f"The description is longer than {MAX_DESCRIPTION_LENGTH} characters",
            param="description",
        )


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
