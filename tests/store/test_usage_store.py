"""Usage sums by time bucket and group, on SQLite and PostgreSQL: each computes the buckets in
its own SQL, and both must put a record in the same one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fovea.store.database import Database
from fovea.store.usage import UsageFilter, UsageGroup, UsageRow, UsageStore, UsageTotals

START = datetime(2025, 3, 1, tzinfo=UTC)
DAY_S = 86_400
MOSCOW = timezone(timedelta(hours=3))


def row(
    at: datetime, folder: str, prompt: int, *, status: str = "ok", batch: str | None = None
) -> UsageRow:
    return UsageRow(
        created_at=at,
        request_id=f"req-{folder}-{at.timestamp()}",
        folder_id=folder,
        service_account_id=f"sa-{folder}",
        key_id="" if batch else f"key-{folder}",
        model_uri=f"gpt://{folder}/gemma-3-demo/latest",
        model="gemma-3-demo",
        branch="latest",
        prompt_tokens=prompt,
        completion_tokens=1,
        image_tokens=0,
        cached_tokens=0,
        images=0,
        ttft_ms=12.5,
        duration_ms=40.0,
        status=status,
        batch_id=batch,
    )


ROWS = [
    row(START - timedelta(microseconds=1), "a", 1000),  # before the range
    row(START + timedelta(hours=10), "a", 10),
    row(START + timedelta(days=1) - timedelta(microseconds=500), "a", 20),  # the day's last µs
    row(START + timedelta(days=1), "b", 300, status="error"),  # the next day's first
    row(datetime(2025, 3, 2, 2, 30, tzinfo=MOSCOW), "b", 400),  # 1 March, 23:30 UTC
    row(START + timedelta(days=2, hours=12), "a", 5000, batch="batch_1"),
    row(START + timedelta(days=3), "a", 1000),  # at the range's end: excluded
]
IN_RANGE = UsageFilter(start=START, end=START + timedelta(days=3))


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[UsageStore]:
    database = Database(migrated_database_url)
    store = UsageStore(database)
    store.add(ROWS)
    yield store
    database.dispose()


def sums(totals: list[UsageTotals]) -> list[tuple[object, ...]]:
    return [
        (t.bucket, *t.group.values(), t.requests, t.prompt_tokens, t.completion_tokens, t.errors)
        for t in totals
    ]


def test_totals_by_day(store: UsageStore) -> None:
    assert sums(store.totals(IN_RANGE, bucket_s=DAY_S)) == [
        (0, 3, 430, 3, 0),
        (1, 1, 300, 1, 1),
        (2, 1, 5000, 1, 0),
    ]


def test_totals_by_folder_and_by_folder_and_day(store: UsageStore) -> None:
    assert sums(store.totals(IN_RANGE, [UsageGroup.FOLDER])) == [
        (None, "a", 3, 5030, 3, 0),
        (None, "b", 2, 700, 2, 1),
    ]
    assert sums(store.totals(IN_RANGE, [UsageGroup.FOLDER], bucket_s=DAY_S)) == [
        (0, "a", 2, 30, 2, 0),
        (0, "b", 1, 400, 1, 0),
        (1, "b", 1, 300, 1, 1),
        (2, "a", 1, 5000, 1, 0),
    ]


def test_buckets_count_from_the_start_not_from_midnight(store: UsageStore) -> None:
    six_hours = UsageFilter(start=START + timedelta(hours=6), end=START + timedelta(days=2))
    assert sums(store.totals(six_hours, bucket_s=6 * 3600)) == [
        (0, 1, 10, 1, 0),  # 10:00 is in [06:00, 12:00)
        (2, 2, 420, 2, 0),  # 23:30 and 23:59:59.9995 are in [18:00, 24:00)
        (3, 1, 300, 1, 1),
    ]


def test_totals_by_batch_and_filtered_by_folder(store: UsageStore) -> None:
    assert sums(store.totals(IN_RANGE, [UsageGroup.BATCH])) == [
        (None, False, 4, 730, 4, 1),
        (None, True, 1, 5000, 1, 0),
    ]
    only_b = UsageFilter(start=IN_RANGE.start, end=IN_RANGE.end, folder_ids=["b"])
    assert sums(store.totals(only_b)) == [(None, 2, 700, 2, 1)]


def test_many_rows_are_written_in_one_call(migrated_database_url: str) -> None:
    database = Database(migrated_database_url)
    try:
        store = UsageStore(database)
        rows = [row(START + timedelta(seconds=i), "a", 1) for i in range(1_234)]
        store.add(rows)
        assert sums(store.totals(IN_RANGE)) == [(None, 1_234, 1_234, 1_234, 0)]
    finally:
        database.dispose()
