"""The IAM audit log: one row per change to folders, service accounts, roles or keys.

Rows are appended in the caller's session, so a change and its record commit or roll back
together; reading opens its own transaction. Synchronous: call off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fovea.store.database import Database
from fovea.store.tables import AuditRecord
from fovea.store.transaction import transaction

CLI_ACTOR = "cli"
MAX_PAGE = 1000


class AuditAction(StrEnum):
    FOLDER_CREATE = "folder.create"
    SERVICE_ACCOUNT_CREATE = "serviceAccount.create"
    ROLE_ADD = "accessBinding.add"
    ROLE_REMOVE = "accessBinding.remove"
    KEY_CREATE = "apiKey.create"
    KEY_REVOKE = "apiKey.revoke"


@dataclass(frozen=True)
class AuditEntry:
    """One change: who made it (a key id, or ``cli``), what, on which folder and object, when.
    ``details`` never holds a secret."""

    id: int
    created_at: datetime
    actor: str
    action: str
    folder_id: str | None
    target_id: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditFilter:
    folder_id: str | None = None  # None: every folder
    action: str | None = None
    since: datetime | None = None  # inclusive
    after_id: int | None = None  # the last id of the previous page
    limit: int = MAX_PAGE
    latest: bool = False  # the last ``limit`` entries rather than the first


class AuditStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def append(
        self,
        session: Session,
        *,
        at: datetime,
        actor: str,
        action: AuditAction,
        folder_id: str | None,
        target_id: str | None,
        details: dict[str, Any],
    ) -> None:
        """Record a change in ``session``, the transaction that makes it."""
        session.add(
            AuditRecord(
                created_at=at,
                actor=actor,
                action=action.value,
                folder_id=folder_id,
                target_id=target_id,
                details=details,
            )
        )

    def list(self, where: AuditFilter) -> list[AuditEntry]:
        """Matching entries, oldest first (by id, the order they were written in)."""
        order = AuditRecord.id.desc() if where.latest else AuditRecord.id
        query = select(AuditRecord).order_by(order).limit(where.limit)
        if where.folder_id is not None:
            query = query.where(AuditRecord.folder_id == where.folder_id)
        if where.action is not None:
            query = query.where(AuditRecord.action == where.action)
        if where.since is not None:
            query = query.where(AuditRecord.created_at >= where.since)
        if where.after_id is not None:
            query = query.where(AuditRecord.id > where.after_id)
        with transaction(self._database) as session:
            entries = [_entry(record) for record in session.scalars(query)]
        return entries[::-1] if where.latest else entries


def _entry(record: AuditRecord) -> AuditEntry:
    return AuditEntry(
        id=record.id,
        created_at=record.created_at,
        actor=record.actor,
        action=record.action,
        folder_id=record.folder_id,
        target_id=record.target_id,
        details=dict(record.details),
    )
