"""Quota counters the replicas share in the database (PostgreSQL without Redis): rate-limit
buckets per folder and key, the replicas' leases and the generation slots each holds.
Synchronous: call off the event loop.

An update locks its scopes' counter rows (``SELECT ... FOR UPDATE``, the folder's own row
first: every update of a folder takes it, so they queue there and never wait in a circle),
counts the slots of replicas whose lease is live, lets the caller decide, and writes the
outcome in the same transaction. A replica's slots are rows it adds to and takes from; when
its lease ends they stop counting, and a heartbeat deletes them once it is long gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fovea.store.database import Database
from fovea.store.tables import QuotaCounterRecord, QuotaReplicaRecord, QuotaSlotsRecord
from fovea.store.transaction import transaction

Scope = tuple[str, str]  # (folder_id, key_id): key_id empty for the folder's own counters


@dataclass
class ScopeCounters:
    """One scope's counters as read under its row lock. ``decide`` may change the levels and
    ``refilled_at``; they are written back."""

    folder_id: str
    key_id: str
    requests_level: float | None  # None: a full bucket
    tokens_level: float | None
    refilled_at: float
    in_flight: int  # slots held by replicas whose lease is live


# Changes the counters in place; True: the replica takes a slot on each scope.
Decide = Callable[[list[ScopeCounters]], bool]


class QuotaCounterStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def update(
        self, scopes: Sequence[Scope], now: float, decide: Decide, *, replica_id: str | None = None
    ) -> list[ScopeCounters]:
        """Lock the counters of ``scopes`` (created full when missing), read them with the slots
        live replicas hold, let ``decide`` change them, and write them back; when it says so,
        ``replica_id`` takes a slot on each scope. The counters come back in ``scopes``' order."""
        ordered = sorted(set(scopes))
        with transaction(self._database) as session:
            locked = _locked(session, ordered, now)
            in_flight = _in_flight(session, ordered, now)
            counters = [
                ScopeCounters(*locked[scope], in_flight=in_flight.get(scope, 0)) for scope in scopes
            ]
            take = decide(counters)
            for found in counters:
                stored = locked[(found.folder_id, found.key_id)]
                levels = (found.requests_level, found.tokens_level, found.refilled_at)
                if levels[:2] == (None, None) == stored[2:4]:
                    continue  # no bucket, before or after: nothing to write
                if levels != stored[2:]:
                    session.execute(
                        update(QuotaCounterRecord)
                        .where(*_scope_is(QuotaCounterRecord, (found.folder_id, found.key_id)))
                        .values(
                            requests_level=found.requests_level,
                            tokens_level=found.tokens_level,
                            refilled_at=found.refilled_at,
                        )
                    )
            if take and replica_id is not None:
                _add_slots(session, ordered, replica_id)
            return counters

    def release(self, scopes: Sequence[Scope], replica_id: str) -> None:
        """Give back one of ``replica_id``'s slots on each scope (never below none)."""
        with transaction(self._database) as session:
            for folder_id, key_id in sorted(set(scopes)):
                session.execute(
                    update(QuotaSlotsRecord)
                    .where(
                        QuotaSlotsRecord.folder_id == folder_id,
                        QuotaSlotsRecord.key_id == key_id,
                        QuotaSlotsRecord.replica_id == replica_id,
                        QuotaSlotsRecord.count > 0,
                    )
                    .values(count=QuotaSlotsRecord.count - 1)
                )

    def in_flight(self, scope: Scope, now: float) -> int:
        with transaction(self._database) as session:
            return _in_flight(session, [scope], now).get(scope, 0)

    def heartbeat(self, replica_id: str, lease_expires_at: float, forget_before: float) -> None:
        """Renew the replica's lease (registering it), and delete the replicas whose lease
        ended before ``forget_before`` with their slots."""
        with transaction(self._database) as session:
            lease = {"id": replica_id, "lease_expires_at": lease_expires_at}
            session.execute(
                _dialect(session)
                .insert(QuotaReplicaRecord)
                .values(lease)
                .on_conflict_do_update(index_elements=["id"], set_=lease)
            )
            session.execute(
                delete(QuotaReplicaRecord).where(
                    QuotaReplicaRecord.lease_expires_at < forget_before
                )
            )
            session.execute(
                delete(QuotaSlotsRecord).where(
                    QuotaSlotsRecord.replica_id.not_in(select(QuotaReplicaRecord.id))
                )
            )

    def leave(self, replica_id: str) -> None:
        """The replica stops: its lease and slots go at once."""
        with transaction(self._database) as session:
            session.execute(
                delete(QuotaSlotsRecord).where(QuotaSlotsRecord.replica_id == replica_id)
            )
            session.execute(delete(QuotaReplicaRecord).where(QuotaReplicaRecord.id == replica_id))


# A scope's counters as locked: folder, key, requests level, tokens level, refilled at.
Locked = tuple[str, str, float | None, float | None, float]


def _locked(session: Session, scopes: list[Scope], now: float) -> dict[Scope, Locked]:
    query = (
        select(
            QuotaCounterRecord.folder_id,
            QuotaCounterRecord.key_id,
            QuotaCounterRecord.requests_level,
            QuotaCounterRecord.tokens_level,
            QuotaCounterRecord.refilled_at,
        )
        .where(_any_scope(QuotaCounterRecord, scopes))
        .order_by(QuotaCounterRecord.folder_id, QuotaCounterRecord.key_id)
        .with_for_update()
    )
    found = {(r[0], r[1]): (r[0], r[1], r[2], r[3], r[4]) for r in session.execute(query)}
    missing = [scope for scope in scopes if scope not in found]
    if not missing:
        return found
    # A scope's first update (another replica may be creating the same row).
    rows = [{"folder_id": f, "key_id": k, "refilled_at": now} for f, k in missing]
    session.execute(
        _dialect(session).insert(QuotaCounterRecord).values(rows).on_conflict_do_nothing()
    )
    return {(r[0], r[1]): (r[0], r[1], r[2], r[3], r[4]) for r in session.execute(query)}


def _in_flight(session: Session, scopes: Sequence[Scope], now: float) -> dict[Scope, int]:
    query = (
        select(
            QuotaSlotsRecord.folder_id, QuotaSlotsRecord.key_id, func.sum(QuotaSlotsRecord.count)
        )
        .join(QuotaReplicaRecord, QuotaReplicaRecord.id == QuotaSlotsRecord.replica_id)
        .where(_any_scope(QuotaSlotsRecord, scopes), QuotaReplicaRecord.lease_expires_at > now)
        .group_by(QuotaSlotsRecord.folder_id, QuotaSlotsRecord.key_id)
    )
    return {(folder, key): int(count or 0) for folder, key, count in session.execute(query)}


def _add_slots(session: Session, scopes: Sequence[Scope], replica_id: str) -> None:
    """One more slot of ``replica_id`` on each scope, in one statement."""
    rows = [{"folder_id": f, "key_id": k, "replica_id": replica_id, "count": 1} for f, k in scopes]
    insert = _dialect(session).insert(QuotaSlotsRecord).values(rows)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["folder_id", "key_id", "replica_id"],
            set_={"count": QuotaSlotsRecord.count + 1},
        )
    )


def _dialect(session: Session) -> Any:
    """The dialect module whose ``insert`` has ``ON CONFLICT``: PostgreSQL's or SQLite's."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def _any_scope(
    table: type[QuotaCounterRecord] | type[QuotaSlotsRecord], scopes: Sequence[Scope]
) -> ColumnElement[bool]:
    return or_(*(and_(*_scope_is(table, scope)) for scope in scopes))


def _scope_is(
    table: type[QuotaCounterRecord] | type[QuotaSlotsRecord], scope: Scope
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return table.folder_id == scope[0], table.key_id == scope[1]
