"""``ChangeSet``: the IAM changes of one transaction, each written with its audit record.

Every write to folders, service accounts, role bindings and keys goes through here, so none
can be made without its record; the record says who (``actor``), what and when, and never
holds a secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fovea.errors import NotFoundError
from fovea.iam import records
from fovea.iam.roles import Role
from fovea.iam.types import CreatedKey
from fovea.store.audit import AuditAction, AuditStore
from fovea.store.tables import ApiKeyRecord, FolderRecord, RoleBindingRecord, ServiceAccountRecord


class ChangeSet:
    def __init__(self, session: Session, audit: AuditStore, actor: str, now: datetime) -> None:
        self.session = session
        self.now = now
        self._audit = audit
        self._actor = actor

    def create_folder(self, name: str, description: str) -> FolderRecord:
        record = records.insert_folder(self.session, name, description, self.now)
        details = {"name": name, "description": description}
        self._log(AuditAction.FOLDER_CREATE, record.id, record.id, details)
        return record

    def create_service_account(
        self, folder_id: str, name: str, description: str
    ) -> ServiceAccountRecord:
        record = records.insert_service_account(
            self.session, folder_id, name, description, self.now
        )
        details = {"name": name, "description": description}
        self._log(AuditAction.SERVICE_ACCOUNT_CREATE, folder_id, record.id, details)
        return record

    def bind(self, folder_id: str, account_id: str, role: Role) -> RoleBindingRecord:
        """Bind ``role``; a role already held is left as it is, and no change is recorded."""
        record = self.session.get(RoleBindingRecord, (folder_id, account_id, role.value))
        if record is not None:
            return record
        record = records.ensure_binding(self.session, folder_id, account_id, role, self.now)
        details = {"roleId": role.value, "serviceAccountId": account_id}
        self._log(AuditAction.ROLE_ADD, folder_id, account_id, details)
        return record

    def unbind(self, folder_id: str, account_id: str, role: Role) -> None:
        record = self.session.get(RoleBindingRecord, (folder_id, account_id, role.value))
        if record is None:
            raise NotFoundError(
                f"Service account {account_id} has no role {role.value} on folder {folder_id}"
            )
        self.session.delete(record)
        details = {"roleId": role.value, "serviceAccountId": account_id}
        self._log(AuditAction.ROLE_REMOVE, folder_id, account_id, details)

    def create_key(
        self,
        account: ServiceAccountRecord,
        scopes: tuple[str, ...],
        expires_at: datetime | None,
        description: str,
    ) -> CreatedKey:
        created = records.insert_key(
            self.session, account, scopes, expires_at, description, self.now
        )
        details = {
            "serviceAccountId": account.id,
            "scopes": list(scopes),
            "expiresAt": None if expires_at is None else expires_at.isoformat(),
            "description": description,
        }
        self._log(AuditAction.KEY_CREATE, account.folder_id, created.info.id, details)
        return created

    def revoke_key(self, key: ApiKeyRecord, folder_id: str) -> None:
        """Revoke ``key``; a key already revoked is left as it is, and no change is recorded."""
        if key.revoked_at is not None:
            return
        key.revoked_at = self.now
        details = {"serviceAccountId": key.service_account_id}
        self._log(AuditAction.KEY_REVOKE, folder_id, key.id, details)

    def _log(
        self, action: AuditAction, folder_id: str, target_id: str, details: dict[str, Any]
    ) -> None:
        self._audit.append(
            self.session,
            at=self.now,
            actor=self._actor,
            action=action,
            folder_id=folder_id,
            target_id=target_id,
            details=details,
        )
