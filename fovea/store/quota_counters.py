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
            records = _locked(session, ordered, now)
            in_flight = _in_flight(session, ordered, now)
            counters = [_counters(records[scope], in_flight.get(scope, 0)) for scope in scopes]
            take = decide(counters)
            for scope_counters in counters:
                record = records[(scope_counters.folder_id, scope_counters.key_id)]
                record.requests_level = scope_counters.requests_level
                record.tokens_level = scope_counters.tokens_level
                record.refilled_at = scope_counters.refilled_at
            if take and replica_id is not None:
                for scope in ordered:
                    _add_slot(session, scope, replica_id)
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


def _locked(session: Session, scopes: list[Scope], now: float) -> dict[Scope, QuotaCounterRecord]:
    query = (
        select(QuotaCounterRecord)
        .where(_any_scope(QuotaCounterRecord, scopes))
        .order_by(QuotaCounterRecord.folder_id, QuotaCounterRecord.key_id)
        .with_for_update()
    )
    found = {(r.folder_id, r.key_id): r for r in session.scalars(query)}
    missing = [scope for scope in scopes if scope not in found]
    if not missing:
        return found
    # A scope's first update (another replica may be creating the same row).
    rows = [{"folder_id": f, "key_id": k, "refilled_at": now} for f, k in missing]
    session.execute(
        _dialect(session).insert(QuotaCounterRecord).values(rows).on_conflict_do_nothing()
    )
    return {(r.folder_id, r.key_id): r for r in session.scalars(query)}


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


def _add_slot(session: Session, scope: Scope, replica_id: str) -> None:
    folder_id, key_id = scope
    added = session.execute(
        update(QuotaSlotsRecord)
        .where(
            QuotaSlotsRecord.folder_id == folder_id,
            QuotaSlotsRecord.key_id == key_id,
            QuotaSlotsRecord.replica_id == replica_id,
        )
        .values(count=QuotaSlotsRecord.count + 1)
    )
    if not getattr(added, "rowcount", 0):
        # Only this replica writes its own rows, and its updates of a scope queue on the
        # scope's counter row: nobody else inserts this one meanwhile.
        session.add(
            QuotaSlotsRecord(folder_id=folder_id, key_id=key_id, replica_id=replica_id, count=1)
        )
        session.flush()


def _dialect(session: Session) -> Any:
    """The dialect module whose ``insert`` has ``ON CONFLICT``: PostgreSQL's or SQLite's."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def _any_scope(
    table: type[QuotaCounterRecord] | type[QuotaSlotsRecord], scopes: Sequence[Scope]
) -> ColumnElement[bool]:
    return or_(*(and_(table.folder_id == f, table.key_id == k) for f, k in scopes))


def _counters(record: QuotaCounterRecord, in_flight: int) -> ScopeCounters:
    return ScopeCounters(
        folder_id=record.folder_id,
        key_id=record.key_id,
        requests_level=record.requests_level,
        tokens_level=record.tokens_level,
        refilled_at=record.refilled_at,
        in_flight=in_flight,
    )
