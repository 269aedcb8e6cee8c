"""Reads and writes of IAM records inside a caller's session.

The service owns transactions and validation; these functions own the queries and turn ORM
records into the plain values of ``fovea.iam.types``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from fovea.errors import ConflictError, InvalidRequestError, NotFoundError
from fovea.iam.apikeys import format_api_key, hash_secret, new_secret
from fovea.iam.ids import new_api_key_id, new_folder_id, new_service_account_id
from fovea.iam.roles import Role
from fovea.iam.types import ApiKeyInfo, CreatedKey, Folder, RoleBinding, ServiceAccount
from fovea.store.tables import (
    ApiKeyRecord,
    FolderRecord,
    RoleBindingRecord,
    ServiceAccountRecord,
)


def keys_with_folder() -> Select[ApiKeyRecord, str]:
    return select(ApiKeyRecord, ServiceAccountRecord.folder_id).join(
        ServiceAccountRecord, ServiceAccountRecord.id == ApiKeyRecord.service_account_id
    )


def require_key(session: Session, key_id: str) -> tuple[ApiKeyRecord, str]:
    """A key and its folder's id."""
    row = session.execute(keys_with_folder().where(ApiKeyRecord.id == key_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"API key {key_id!r} not found")
    key, folder_id = row
    return key, folder_id


def find_folder(session: Session, ref: str) -> FolderRecord | None:
    found = session.get(FolderRecord, ref)
    if found is None:
        found = session.scalar(select(FolderRecord).where(FolderRecord.name == ref))
    return found


def require_folder(session: Session, ref: str) -> FolderRecord:
    found = find_folder(session, ref)
    if found is None:
        raise NotFoundError(f"Folder {ref!r} not found")
    return found


def folder_id_or_none(session: Session, ref: str | None) -> str | None:
    return None if ref is None else require_folder(session, ref).id


def find_service_account(
    session: Session, ref: str, folder_id: str | None
) -> ServiceAccountRecord | None:
    found = session.get(ServiceAccountRecord, ref)
    if found is not None:
        return found if folder_id in (None, found.folder_id) else None
    query = select(ServiceAccountRecord).where(ServiceAccountRecord.name == ref)
    if folder_id is not None:
        query = query.where(ServiceAccountRecord.folder_id == folder_id)
    matches = session.scalars(query.limit(2)).all()
    if len(matches) > 1:
        raise InvalidRequestError(
            f"Several folders have a service account named {ref!r}; name the folder too"
        )
    return matches[0] if matches else None


def require_service_account(
    session: Session, ref: str, folder_id: str | None
) -> ServiceAccountRecord:
    found = find_service_account(session, ref, folder_id)
    if found is None:
        where = f" in folder {folder_id}" if folder_id is not None else ""
        raise NotFoundError(f"Service account {ref!r} not found{where}")
    return found


def insert_folder(session: Session, name: str, description: str, now: datetime) -> FolderRecord:
    if session.scalar(select(FolderRecord.id).where(FolderRecord.name == name)) is not None:
        raise ConflictError(f"Folder {name!r} already exists", param="name")
    record = FolderRecord(id=new_folder_id(), name=name, description=description, created_at=now)
    session.add(record)
    return record


def insert_service_account(
    session: Session, folder_id: str, name: str, description: str, now: datetime
) -> ServiceAccountRecord:
    if find_service_account(session, name, folder_id) is not None:
        raise ConflictError(
            f"Service account {name!r} already exists in folder {folder_id}", param="name"
        )
    record = ServiceAccountRecord(
        id=new_service_account_id(),
        folder_id=folder_id,
        name=name,
        description=description,
        created_at=now,
    )
    session.add(record)
    return record


def ensure_binding(
    session: Session, folder_id: str, service_account_id: str, role: Role, now: datetime
) -> RoleBindingRecord:
    record = session.get(RoleBindingRecord, (folder_id, service_account_id, role.value))
    if record is None:
        record = RoleBindingRecord(
            folder_id=folder_id,
            service_account_id=service_account_id,
            role=role.value,
            created_at=now,
        )
        session.add(record)
    return record


def insert_key(
    session: Session,
    account: ServiceAccountRecord,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    description: str,
    now: datetime,
) -> CreatedKey:
    key_id, secret = new_api_key_id(), new_secret()
    record = ApiKeyRecord(
        id=key_id,
        service_account_id=account.id,
        secret_hash=hash_secret(secret),
        scopes=list(scopes),
        description=description,
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
        last_used_at=None,
    )
    session.add(record)
    return CreatedKey(
        info=to_key_info(record, account.folder_id), secret=format_api_key(key_id, secret)
    )


def to_folder(record: FolderRecord) -> Folder:
    return Folder(
        id=record.id,
        name=record.name,
        description=record.description,
        created_at=record.created_at,
    )


def to_service_account(record: ServiceAccountRecord) -> ServiceAccount:
    return ServiceAccount(
        id=record.id,
        folder_id=record.folder_id,
        name=record.name,
        description=record.description,
        created_at=record.created_at,
    )


def to_binding(record: RoleBindingRecord) -> RoleBinding:
    return RoleBinding(
        folder_id=record.folder_id,
        service_account_id=record.service_account_id,
        role=record.role,
        created_at=record.created_at,
    )


def to_key_info(record: ApiKeyRecord, folder_id: str) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=record.id,
        service_account_id=record.service_account_id,
        folder_id=folder_id,
        scopes=tuple(record.scopes),
        description=record.description,
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        last_used_at=record.last_used_at,
    )
