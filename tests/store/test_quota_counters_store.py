"""Quota counters in the database, on SQLite and PostgreSQL: created full, written back as
decided, slots counted while their replica's lease runs, replicas long gone forgotten."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fovea.store.database import Database
from fovea.store.quota_counters import QuotaCounterStore, ScopeCounters

NOW = 1_700_000_000.0
FOLDER = ("folder", "")
KEY = ("folder", "key")


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[QuotaCounterStore]:
    database = Database(migrated_database_url)
    yield QuotaCounterStore(database)
    database.dispose()


def _take(counters: list[ScopeCounters]) -> bool:
    return True


def _look(counters: list[ScopeCounters]) -> bool:
    return False


def test_counters_start_full_and_keep_what_was_decided(store: QuotaCounterStore) -> None:
    seen: list[tuple[str, str, float | None, float]] = []

    def spend(counters: list[ScopeCounters]) -> bool:
        seen.extend((c.folder_id, c.key_id, c.requests_level, c.refilled_at) for c in counters)
        for found in counters:
            found.requests_level, found.tokens_level, found.refilled_at = 4.5, -20.0, NOW + 1
        return False

    store.update([KEY, FOLDER], NOW, spend)
    assert seen == [("folder", "key", None, NOW), ("folder", "", None, NOW)]  # scopes' order
    again = store.update([FOLDER], NOW + 2, _look)
    assert (again[0].requests_level, again[0].tokens_level, again[0].refilled_at) == (
        4.5,
        -20.0,
        NOW + 1,
    )


def test_slots_count_while_their_replicas_lease_runs(store: QuotaCounterStore) -> None:
    store.heartbeat("a", lease_expires_at=NOW + 10, forget_before=NOW - 600)
    store.heartbeat("b", lease_expires_at=NOW + 20, forget_before=NOW - 600)
    store.update([FOLDER, KEY], NOW, _take, replica_id="a")
    store.update([FOLDER, KEY], NOW, _take, replica_id="a")
    store.update([FOLDER], NOW, _take, replica_id="b")
    assert store.update([FOLDER, KEY], NOW, _look)[0].in_flight == 3
    assert store.in_flight(KEY, NOW) == 2
    assert store.in_flight(FOLDER, NOW + 15) == 1  # a's lease is over; b's runs

    store.release([FOLDER, KEY], "a")
    store.release([FOLDER], "b")
    store.release([FOLDER], "b")  # never below none
    assert store.in_flight(FOLDER, NOW) == 1
    store.update([FOLDER], NOW, _take, replica_id="b")
    assert store.in_flight(FOLDER, NOW) == 2


def test_replicas_long_gone_are_forgotten_and_a_leaving_one_at_once(
    store: QuotaCounterStore,
) -> None:
    store.heartbeat("a", lease_expires_at=NOW + 10, forget_before=NOW - 600)
    store.heartbeat("b", lease_expires_at=NOW + 10, forget_before=NOW - 600)
    store.update([FOLDER], NOW, _take, replica_id="a")
    store.update([FOLDER], NOW, _take, replica_id="b")
    # a paused replica renewing in time finds its slots again
    store.heartbeat("a", lease_expires_at=NOW + 100, forget_before=NOW - 600)
    assert store.in_flight(FOLDER, NOW + 50) == 1
    store.heartbeat("b", lease_expires_at=NOW + 1000, forget_before=NOW + 200)  # a forgotten
    store.heartbeat("a", lease_expires_at=NOW + 1000, forget_before=NOW - 600)
    assert store.in_flight(FOLDER, NOW) == 1
    store.leave("b")
    assert store.in_flight(FOLDER, NOW) == 0
