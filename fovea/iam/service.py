"""``IamService``: authenticates API keys, authorizes actions and manages IAM resources.

Folders and service accounts can be named by id or by name. Every change is written to the
audit log in the transaction that makes it, with its ``actor``: the key id of the HTTP caller,
or ``cli``. Database errors are translated here into ``fovea.errors``; callers see only the
dataclasses of ``fovea.iam.types`` and ``fovea.store.audit``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from fovea.errors import (
    AuthenticationError,
    ConflictError,
    DatabaseUnavailableError,
    InvalidRequestError,
)
from fovea.iam import records
from fovea.iam.apikeys import DEFAULT_SCOPES, Scope, validate_scopes
from fovea.iam.changes import ChangeSet
from fovea.iam.checks import (
    UNKNOWN_KEY_MESSAGE,
    as_utc,
    check_credentials,
    check_description,
    check_name,
    check_permission,
    split_api_key,
)
from fovea.iam.roles import Permission, Role, parse_role
from fovea.iam.types import (
    ApiKeyInfo,
    BindingChange,
    CreatedKey,
    Folder,
    KeyCredentials,
    Principal,
    RoleBinding,
    ServiceAccount,
)
from fovea.store.audit import CLI_ACTOR, MAX_PAGE, AuditAction, AuditEntry, AuditFilter, AuditStore
from fovea.store.clock import Clock, utcnow
from fovea.store.database import Database, database_error
from fovea.store.tables import (
    ApiKeyRecord,
    FolderRecord,
    RoleBindingRecord,
    ServiceAccountRecord,
)

logger = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(minutes=1)


class IamService:
    """Identity and access for one database. Methods are synchronous and thread-safe."""

    def __init__(self, database: Database, *, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock
        self._audit = AuditStore(database)

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

    def create_folder(self, name: str, description: str = "", *, actor: str = CLI_ACTOR) -> Folder:
        check_name("folder", name)
        check_description(description)
        with self._changes(actor) as changes:
            record = changes.create_folder(name, description)
        return records.to_folder(record)

    def list_folders(self) -> list[Folder]:
        with self._transaction() as session:
            found = session.scalars(select(FolderRecord).order_by(FolderRecord.name)).all()
        return [records.to_folder(record) for record in found]

    def get_folder(self, id_or_name: str) -> Folder:
        with self._transaction() as session:
            return records.to_folder(records.require_folder(session, id_or_name))

    def create_service_account(
        self, folder: str, name: str, description: str = "", *, actor: str = CLI_ACTOR
    ) -> ServiceAccount:
        check_name("service account", name)
        check_description(description)
        with self._changes(actor) as changes:
            folder_id = records.require_folder(changes.session, folder).id
            record = changes.create_service_account(folder_id, name, description)
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

    def grant_role(
        self, folder: str, service_account: str, role: str, *, actor: str = CLI_ACTOR
    ) -> RoleBinding:
        """Bind ``role`` on ``folder``; granting a role already held changes nothing."""
        checked = parse_role(role)
        with self._changes(actor) as changes:
            folder_id = records.require_folder(changes.session, folder).id
            account = records.require_service_account(changes.session, service_account, folder_id)
            record = changes.bind(folder_id, account.id, checked)
        return records.to_binding(record)

    def revoke_role(
        self, folder: str, service_account: str, role: str, *, actor: str = CLI_ACTOR
    ) -> tuple[str, str]:
        """Remove the binding; returns the folder's and the service account's ids."""
        checked = parse_role(role)
        with self._changes(actor) as changes:
            folder_id = records.require_folder(changes.session, folder).id
            account = records.require_service_account(changes.session, service_account, folder_id)
            changes.unbind(folder_id, account.id, checked)
        return folder_id, account.id

    def update_bindings(
        self, folder: str, changes: Sequence[BindingChange], *, actor: str = CLI_ACTOR
    ) -> None:
        """Make every change or none: adding a role held or removing one not held as in
        ``grant_role`` and ``revoke_role``."""
        checked = [(change, parse_role(change.role)) for change in changes]
        with self._changes(actor) as change_set:
            folder_id = records.require_folder(change_set.session, folder).id
            for change, role in checked:
                account = records.require_service_account(
                    change_set.session, change.service_account, folder_id
                )
                if change.add:
                    change_set.bind(folder_id, account.id, role)
                else:
                    change_set.unbind(folder_id, account.id, role)

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
        actor: str = CLI_ACTOR,
    ) -> CreatedKey:
        """A new key; its secret is in the result and nowhere else. Naive times are UTC."""
        checked_scopes = validate_scopes(scopes)
        check_description(description)
        now = self._clock()
        if expires_at is not None:
            expires_at = as_utc(expires_at)
            if expires_at <= now:
                raise InvalidRequestError(
                    "The expiry time must be in the future", param="expires_at"
                )
        with self._changes(actor) as changes:
            session = changes.session
            account = records.require_service_account(
                session, service_account, records.folder_id_or_none(session, folder)
            )
            return changes.create_key(account, checked_scopes, expires_at, description)

    def get_key(self, key_id: str) -> ApiKeyInfo:
        with self._transaction() as session:
            key, folder_id = records.require_key(session, key_id)
            return records.to_key_info(key, folder_id)

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

    def revoke_key(self, key_id: str, *, actor: str = CLI_ACTOR) -> ApiKeyInfo:
        """Revoke a key for good; revoking it again changes nothing."""
        with self._changes(actor) as changes:
            key, folder_id = records.require_key(changes.session, key_id)
            changes.revoke_key(key, folder_id)
        return records.to_key_info(key, folder_id)

    def bootstrap(
        self,
        folder_name: str = "default",
        service_account_name: str = "default",
        *,
        admin: bool = False,
        actor: str = CLI_ACTOR,
    ) -> tuple[Folder, ServiceAccount, CreatedKey]:
        """Reuse or create the folder and service account, then issue a new key.

        The account gets ``ai.languageModels.user`` on the folder and the key the scope
        ``yc.ai.foundationModels.execute``: enough for chat, nothing more. With ``admin``,
        ``system.admin`` and the scope ``yc.iam.manage`` instead: the IAM API, nothing more.
        """
        check_name("folder", folder_name)
        check_name("service account", service_account_name)
        role, scope = (
            (Role.SYSTEM_ADMIN, Scope.IAM_MANAGE)
            if admin
            else (Role.LANGUAGE_MODELS_USER, Scope.FOUNDATION_MODELS_EXECUTE)
        )
        with self._changes(actor) as changes:
            session = changes.session
            folder = records.find_folder(session, folder_name) or changes.create_folder(
                folder_name, ""
            )
            account = records.find_service_account(
                session, service_account_name, folder.id
            ) or changes.create_service_account(folder.id, service_account_name, "")
            changes.bind(folder.id, account.id, role)
            created = changes.create_key(account, (scope.value,), None, "")
        return records.to_folder(folder), records.to_service_account(account), created

    # -- audit log -----------------------------------------------------------------------

    def audit_log(
        self,
        *,
        folder: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        after_id: int | None = None,
        limit: int = MAX_PAGE,
        latest: bool = False,
    ) -> list[AuditEntry]:
        """Changes, oldest first; ``folder`` an id or a name, ``since`` inclusive; with
        ``latest``, the last ``limit`` changes rather than the first."""
        if action is not None and action not in set(AuditAction):
            valid = ", ".join(AuditAction)
            raise InvalidRequestError(
                f"Unknown audit action {action!r}; valid actions: {valid}", param="action"
            )
        with self._transaction() as session:
            folder_id = records.folder_id_or_none(session, folder)
        where = AuditFilter(
            folder_id=folder_id,
            action=action,
            since=None if since is None else as_utc(since),
            after_id=after_id,
            limit=limit,
            latest=latest,
        )
        return self._audit.list(where)

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _changes(self, actor: str) -> Iterator[ChangeSet]:
        """A transaction whose writes are each recorded in the audit log, as ``actor``."""
        with self._transaction() as session:
            yield ChangeSet(session, self._audit, actor, self._clock())

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with self._database.session() as session, session.begin():
                yield session
        except IntegrityError as exc:
            # Pre-checks give the precise messages; this is a concurrent duplicate.
            raise ConflictError("The object conflicts with one that already exists") from exc
        except SQLAlchemyError as exc:
            error = database_error(exc)
            if not isinstance(error, DatabaseUnavailableError):
                logger.exception("IAM database operation failed")
            raise error from exc

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
