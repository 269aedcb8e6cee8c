"""Quotas in the database, on SQLite and PostgreSQL: set, replaced, listed, removed."""

from __future__ import annotations

from datetime import UTC, datetime

from fovea.store.database import Database
from fovea.store.quotas import FOLDER_WIDE, Quota, QuotaStore

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_a_quota_is_set_replaced_and_removed(migrated_database_url: str) -> None:
    database = Database(migrated_database_url)
    try:
        store = QuotaStore(database, clock=lambda: NOW)
        store.set(Quota("folder", requests_per_minute=10))
        store.set(Quota("folder", "key", tokens_per_minute=2**31 - 1))
        store.set(Quota("folder", concurrent=3))  # replaces the folder's whole quota
        assert sorted(store.all(), key=lambda q: q.key_id) == [
            Quota("folder", FOLDER_WIDE, concurrent=3, updated_at=NOW),
            Quota("folder", "key", tokens_per_minute=2**31 - 1, updated_at=NOW),
        ]
        assert store.remove("folder", "key")
        assert not store.remove("folder", "key")
        assert [q.key_id for q in store.all()] == [FOLDER_WIDE]
    finally:
        database.dispose()
