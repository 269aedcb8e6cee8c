"""Batch leases in the database, on SQLite and PostgreSQL: replicas' runners claim disjoint
lines, a dead replica's lines come back when its lease expires, every line is answered and
counted once, and work on a whole batch is one replica's at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fovea.iam.service import IamService
from fovea.store.batches import BatchInfo, BatchStore, LineEntry, LineResult
from fovea.store.database import Database

LEASE_S = 30.0


class Clock:
    """A clock the test moves by hand (leases expire without waiting)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def database(migrated_database_url: str) -> Iterator[Database]:
    database = Database(migrated_database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> BatchStore:
    return BatchStore(database, clock)


def new_batch(database: Database, store: BatchStore) -> BatchInfo:
    """A batch still validating."""
    return store.create(
        folder_id=IamService(database).create_folder("team").id,
        service_account_id="aje00000000000000000",
        endpoint="/v1/chat/completions",
        input_file_id="file-1",
        input_format="openai",
        model=None,
        options=None,
        source_dataset_id=None,
        completion_window="24h",
        batch_metadata=None,
    )


def started_batch(database: Database, store: BatchStore, lines: int) -> BatchInfo:
    batch = new_batch(database, store)
    assert store.claim(batch.id, "validating", "validator", LEASE_S)
    entries = [LineEntry(n, f"line-{n}", n * 10, 10) for n in range(1, lines + 1)]
    assert store.save_lines(batch.id, entries, "validator")
    store.release(batch.id, "validator")
    return store.reload(batch.id)


def answer(number: int) -> LineResult:
    return LineResult(number, f"line-{number}", "completed", {"status_code": 200}, None)


def test_replicas_claim_disjoint_lines_first_lines_first(
    database: Database, store: BatchStore
) -> None:
    batch = started_batch(database, store, 10)
    first = store.claim_lines(batch.id, "a", limit=4, lease_s=LEASE_S)
    second = store.claim_lines(batch.id, "b", limit=4, lease_s=LEASE_S)
    rest = store.claim_lines(batch.id, "a", limit=4, lease_s=LEASE_S)
    assert [ref.line_number for ref in first] == [1, 2, 3, 4]
    assert [ref.line_number for ref in second] == [5, 6, 7, 8]
    assert [ref.line_number for ref in rest] == [9, 10]
    assert store.claim_lines(batch.id, "b", limit=4, lease_s=LEASE_S) == []
    assert first[0].custom_id == "line-1" and first[0].offset == 10


def test_a_dead_replicas_lines_come_back_when_its_lease_expires(
    database: Database, store: BatchStore, clock: Clock
) -> None:
    batch = started_batch(database, store, 3)
    store.claim_lines(batch.id, "dead", limit=3, lease_s=LEASE_S)
    store.claim_lines(batch.id, "alive", limit=3, lease_s=LEASE_S)  # nothing free yet
    clock.advance(LEASE_S - 1)
    assert store.claim_lines(batch.id, "alive", limit=3, lease_s=LEASE_S) == []
    clock.advance(2)
    taken = store.claim_lines(batch.id, "alive", limit=3, lease_s=LEASE_S)
    assert [ref.line_number for ref in taken] == [1, 2, 3]


def test_renewed_leases_hold_and_released_ones_are_free_at_once(
    database: Database, store: BatchStore, clock: Clock
) -> None:
    batch = started_batch(database, store, 3)
    store.claim_lines(batch.id, "a", limit=3, lease_s=LEASE_S)
    clock.advance(LEASE_S - 1)
    store.renew_lines(batch.id, "a", [1, 2], LEASE_S)
    store.renew_lines(batch.id, "b", [3], LEASE_S)  # not b's: no effect
    clock.advance(2)
    assert [r.line_number for r in store.claim_lines(batch.id, "b", limit=3, lease_s=1)] == [3]
    store.release_lines(batch.id, "a", [2])
    assert [r.line_number for r in store.claim_lines(batch.id, "b", limit=3, lease_s=1)] == [2]


def test_a_line_is_answered_and_counted_once(database: Database, store: BatchStore) -> None:
    batch = started_batch(database, store, 2)
    assert store.record(batch.id, answer(1))
    late = LineResult(1, "line-1", "failed", {"status_code": 500}, None)
    assert not store.record(batch.id, late)  # a replica whose lease had expired, finishing late
    current = store.reload(batch.id)
    assert (current.completed, current.failed) == (1, 0)
    results = list(store.results(batch.id))
    assert [(r.line_number, r.status) for r in results] == [(1, "completed"), (2, "pending")]
    assert results[0].response == {"status_code": 200}
    assert store.count_pending(batch.id) == 1


def test_answered_lines_are_never_claimed_again(
    database: Database, store: BatchStore, clock: Clock
) -> None:
    batch = started_batch(database, store, 2)
    store.claim_lines(batch.id, "a", limit=2, lease_s=LEASE_S)
    store.record(batch.id, answer(1))
    clock.advance(LEASE_S + 1)
    assert [r.line_number for r in store.claim_lines(batch.id, "b", limit=2, lease_s=1)] == [2]


def test_work_on_a_whole_batch_is_one_replicas_at_a_time(
    database: Database, store: BatchStore, clock: Clock
) -> None:
    batch = started_batch(database, store, 1)
    store.record(batch.id, answer(1))
    assert store.transition(batch.id, "finalizing", expected="in_progress")
    assert not store.transition(batch.id, "finalizing", expected="in_progress")  # once
    assert store.claim(batch.id, "finalizing", "a", LEASE_S)
    assert store.claim(batch.id, "finalizing", "a", LEASE_S)  # renewing one's own
    assert not store.claim(batch.id, "finalizing", "b", LEASE_S)
    assert not store.transition(batch.id, "completed", expected="finalizing", owner="b")
    clock.advance(LEASE_S + 1)  # a died
    assert store.claim(batch.id, "finalizing", "b", LEASE_S)
    assert not store.transition(batch.id, "completed", expected="finalizing", owner="a")
    assert store.transition(batch.id, "completed", expected="finalizing", owner="b")
    done = store.reload(batch.id)
    assert done.status == "completed" and done.completed_at == clock.now
    assert not store.claim(batch.id, "finalizing", "b", LEASE_S)  # the status moved on


def test_lines_are_saved_only_by_the_validator_holding_the_lease(
    database: Database, store: BatchStore, clock: Clock
) -> None:
    batch = new_batch(database, store)
    assert store.claim(batch.id, "validating", "slow", LEASE_S)
    clock.advance(LEASE_S + 1)  # "slow" stopped renewing; "fast" validates and starts lines
    assert store.claim(batch.id, "validating", "fast", LEASE_S)
    assert store.save_lines(batch.id, [LineEntry(1, "x", 0, 10)], "fast")
    store.record(batch.id, answer(1))
    assert not store.save_lines(batch.id, [LineEntry(1, "x", 0, 10)], "slow")
    assert [r.status for r in store.results(batch.id)] == ["completed"]  # not wiped


def test_concurrent_claims_never_share_a_line(database: Database, store: BatchStore) -> None:
    batch = started_batch(database, store, 120)
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def runner(owner: str) -> None:
        mine = claimed.setdefault(owner, [])
        start.wait()
        while refs := store.claim_lines(batch.id, owner, limit=3, lease_s=LEASE_S):
            mine.extend(ref.line_number for ref in refs)

    threads = [threading.Thread(target=runner, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(n for lines in claimed.values() for n in lines)
    assert every == list(range(1, 121))
