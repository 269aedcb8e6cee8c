"""Quotas an operator set, in the database. Synchronous: call off the event loop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from fovea.store.clock import Clock, utcnow
from fovea.store.database import Database
from fovea.store.tables import QuotaRecord
from fovea.store.transaction import transaction

FOLDER_WIDE = ""  # the key_id of a folder's own quota


@dataclass(frozen=True)
class Quota:
    """Limits of a folder (``key_id`` empty) or of one key; None: not limited at this level."""

    folder_id: str
    key_id: str = FOLDER_WIDE
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent: int | None = None
    updated_at: datetime | None = None


class QuotaStore:
    def __init__(self, database: Database, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock

    def all(self) -> list[Quota]:
        with transaction(self._database) as session:
            records = session.scalars(select(QuotaRecord)).all()
            return [_quota(record) for record in records]

    def set(self, quota: Quota) -> Quota:
        """Create or replace the quota of ``quota.folder_id`` / ``quota.key_id``."""
        with transaction(self._database) as session:
            record = session.get(QuotaRecord, (quota.folder_id, quota.key_id))
            if record is None:
                record = QuotaRecord(folder_id=quota.folder_id, key_id=quota.key_id)
                session.add(record)
            record.requests_per_minute = quota.requests_per_minute
            record.tokens_per_minute = quota.tokens_per_minute
            record.concurrent = quota.concurrent
            record.updated_at = self._clock()
            session.flush()
            return _quota(record)

    def remove(self, folder_id: str, key_id: str = FOLDER_WIDE) -> bool:
        with transaction(self._database) as session:
            result = session.execute(
                delete(QuotaRecord).where(
                    QuotaRecord.folder_id == folder_id, QuotaRecord.key_id == key_id
                )
            )
            return bool(getattr(result, "rowcount", 0))


def _quota(record: QuotaRecord) -> Quota:
    return Quota(
        folder_id=record.folder_id,
        key_id=record.key_id,
        requests_per_minute=record.requests_per_minute,
        tokens_per_minute=record.tokens_per_minute,
        concurrent=record.concurrent,
        updated_at=record.updated_at,
    )
