"""The request log's retention sweep and writer, on a real database (SQLite and PostgreSQL) and
a clock the test moves."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from anyio import to_thread

from fovea.services.request_log import RequestLog, RequestLogConfig, image_digest
from fovea.store.database import Database
from fovea.store.request_log import RequestLogEntry, RequestLogStore
from tests.conftest import png_data_url

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
WAIT_S = 30


class WatchedStore(RequestLogStore):
    """Tells the test when a sweep has deleted something."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.deleted = threading.Event()

    def delete_older_than(self, moment: datetime) -> int:
        count = super().delete_older_than(moment)
        if count:
            self.deleted.set()
        return count


@pytest.fixture
def database(migrated_database_url: str) -> Iterator[Database]:
    database = Database(migrated_database_url)
    database.migrate()
    yield database
    database.dispose()


def stored(request_id: str, created_at: datetime) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=request_id,
        created_at=created_at,
        folder_id="folder",
        key_id="key",
        model_uri="gpt://folder/gemma-3-demo/latest",
        status="ok",
        request={"messages": [{"role": "user", "content": request_id}]},
        response={"text": "answer"},
    )


async def deleted(store: WatchedStore) -> None:
    assert await to_thread.run_sync(store.deleted.wait, WAIT_S)
    store.deleted.clear()


@pytest.mark.anyio
async def test_the_periodic_sweep_deletes_entries_past_their_retention(
    database: Database,
) -> None:
    store = WatchedStore(database)
    store.add([stored("old", NOW - timedelta(days=8)), stored("recent", NOW - timedelta(days=1))])
    now = [NOW]
    config = RequestLogConfig(retention=timedelta(days=7), sweep_interval_s=0.01)
    request_log = RequestLog(store, config, clock=lambda: now[0])
    request_log.start()
    try:
        await deleted(store)
        assert store.get("old") is None
        assert store.get("recent") is not None

        now[0] = NOW + timedelta(days=7)  # "recent" is eight days old now
        await deleted(store)
        assert store.get("recent") is None
    finally:
        await request_log.aclose()


def test_an_entry_stored_again_replaces_the_first(database: Database) -> None:
    store = RequestLogStore(database)
    store.add([stored("op", NOW)])
    again = stored("op", NOW + timedelta(seconds=5))
    store.add([again])
    assert store.get("op") == again


def test_an_image_is_its_hash_size_and_type() -> None:
    url = png_data_url((1, 2, 3))
    digest = image_digest(url)
    assert set(digest) == {"sha256", "bytes", "media_type"}
    assert digest["media_type"] == "image/png"
    # The same image sent as bare base64 is the same image.
    assert image_digest(url.partition(",")[2]) == digest
    assert image_digest("https://example.com/cat.png") == {"url": "https://example.com/cat.png"}
    unreadable = image_digest("data:image/png;base64,%%%")
    assert unreadable["bytes"] is None and "%%%" not in str(unreadable)
