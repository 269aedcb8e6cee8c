"""Usage records in the database: written in batches, read back as sums per group and time
bucket. Synchronous: call off the event loop."""

from __future__ import annotations

import functools
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Integer, Table, and_, case, cast, func, insert, select

from fovea.store.database import Database
from fovea.store.tables import UsageRecord
from fovea.store.transaction import transaction


class UsageKind(StrEnum):
    """What a usage record counts."""

    COMPLETION = "completion"  # a chat completion, a response, a batch line of either
    EMBEDDING = "embedding"


class UsageRow(NamedTuple):
    """One finished request's usage, as written. A tuple of plain values, which the garbage
    collector stops tracking: a second's worth of them waiting to be written does not make
    every full collection longer (measured: kept as objects, they cost more CPU than writing)."""

    created_at: datetime
    request_id: str
    folder_id: str
    service_account_id: str
    key_id: str  # empty for work no key started directly (batch lines, deferred completions)
    model_uri: str
    model: str
    branch: str
    prompt_tokens: int
    completion_tokens: int
    image_tokens: int
    cached_tokens: int
    images: int
    ttft_ms: float | None
    duration_ms: float
    status: str
    batch_id: str | None
    kind: str = UsageKind.COMPLETION.value


_TABLE = typing.cast(Table, UsageRecord.__table__)
_SQLITE_CHUNK = 500  # rows per INSERT: 500 x 18 parameters, under SQLite's 32766


@functools.cache
def _sqlite_insert(n_rows: int) -> str:
    one = f"({', '.join('?' for _ in UsageRow._fields)})"
    columns = ", ".join(UsageRow._fields)
    return f"INSERT INTO {UsageRecord.__tablename__} ({columns}) VALUES {', '.join([one] * n_rows)}"


def _sqlite_values(row: UsageRow) -> tuple[Any, ...]:
    """The row as SQLAlchemy writes it to SQLite: the time as naive UTC text."""
    created = row.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (created, *row[1:])


class UsageGroup(StrEnum):
    """What usage can be summed by (besides time buckets)."""

    FOLDER = "folder_id"
    SERVICE_ACCOUNT = "service_account_id"
    KEY = "key_id"
    MODEL = "model"
    BATCH = "batch"
    KIND = "kind"


@dataclass(frozen=True)
class UsageFilter:
    start: datetime
    end: datetime
    folder_ids: Sequence[str] | None = None  # None: every folder (the operator's view)
    service_account_ids: Sequence[str] | None = None
    key_ids: Sequence[str] | None = None
    models: Sequence[str] | None = None
    batch: bool | None = None
    kind: UsageKind | None = None  # None: every kind


@dataclass(frozen=True)
class UsageTotals:
    """Sums over one group (and time bucket, when asked)."""

    bucket: int | None  # index of the time bucket from the filter's start
    group: dict[str, Any]  # the grouped columns' values
    requests: int
    prompt_tokens: int
    completion_tokens: int
    image_tokens: int
    cached_tokens: int
    images: int
    errors: int


class UsageStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        with transaction(self._database) as session:
            connection = session.connection()
            if self._database.is_sqlite:
                # Multi-row INSERTs on plain tuples, not SQLAlchemy's per-row parameter
                # processing (~25 µs a row; its ORM path ~90), nor sqlite3's executemany: that
                # releases and takes back the GIL on every row, and beside a busy event loop
                # each hand-over stalls both threads (measured: +120 µs of CPU a request).
                for start in range(0, len(rows), _SQLITE_CHUNK):
                    chunk = rows[start : start + _SQLITE_CHUNK]
                    values = [value for row in chunk for value in _sqlite_values(row)]
                    connection.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(values))
            else:
                connection.execute(insert(_TABLE), [row._asdict() for row in rows])

    def totals(
        self,
        where: UsageFilter,
        group_by: Sequence[UsageGroup] = (),
        bucket_s: int | None = None,
    ) -> list[UsageTotals]:
        """Sums in ``[start, end)``, per group and, with ``bucket_s``, per time bucket."""
        record = UsageRecord
        keys: list[ColumnElement[Any]] = []
        if bucket_s is not None:
            keys.append(self._bucket(where.start, bucket_s).label("bucket"))
        for group in group_by:
            if group == UsageGroup.BATCH:
                keys.append((record.batch_id.is_not(None)).label("batch"))
            else:
                keys.append(getattr(record, group.value).label(group.value))
        sums = (
            func.count().label("requests"),
            func.sum(record.prompt_tokens).label("prompt_tokens"),
            func.sum(record.completion_tokens).label("completion_tokens"),
            func.sum(record.image_tokens).label("image_tokens"),
            func.sum(record.cached_tokens).label("cached_tokens"),
            func.sum(record.images).label("images"),
            func.sum(case((record.status == "ok", 0), else_=1)).label("errors"),
        )
        query = select(*keys, *sums).where(_conditions(where))
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        with transaction(self._database) as session:
            rows = session.execute(query).all()
        result = []
        for row in rows:
            values = row._mapping
            result.append(
                UsageTotals(
                    bucket=int(values["bucket"]) if bucket_s is not None else None,
                    group={
                        g.value: (
                            bool(values[g.value]) if g == UsageGroup.BATCH else values[g.value]
                        )
                        for g in group_by
                    },
                    **{name: int(values[name] or 0) for name in _SUMS},
                )
            )
        return result

    def _bucket(self, start: datetime, bucket_s: int) -> ColumnElement[Any]:
        """The index of a record's time bucket counted from ``start`` (records are >= start)."""
        created = UsageRecord.created_at
        if self._database.is_sqlite:
            # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" in UTC. strftime('%s') would round the
            # fraction to milliseconds first (23:59:59.9996 is the next day): cut it off, and
            # the integers divide as integers.
            whole_seconds = func.substr(created, 1, len("YYYY-MM-DD HH:MM:SS"))
            seconds = cast(func.strftime("%s", whole_seconds), Integer) - int(start.timestamp())
            return seconds // bucket_s
        seconds = func.extract("epoch", created - start)
        return cast(func.floor(seconds / bucket_s), Integer)


_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "image_tokens",
    "cached_tokens",
    "images",
    "errors",
)


def _conditions(where: UsageFilter) -> ColumnElement[bool]:
    record = UsageRecord
    conditions: list[ColumnElement[bool]] = [
        record.created_at >= where.start,
        record.created_at < where.end,
    ]
    if where.folder_ids is not None:
        conditions.append(record.folder_id.in_(where.folder_ids))
    if where.service_account_ids is not None:
        conditions.append(record.service_account_id.in_(where.service_account_ids))
    if where.key_ids is not None:
        conditions.append(record.key_id.in_(where.key_ids))
    if where.models is not None:
        conditions.append(record.model.in_(where.models))
    if where.batch is not None:
        conditions.append(
            record.batch_id.is_not(None) if where.batch else record.batch_id.is_(None)
        )
    if where.kind is not None:
        conditions.append(record.kind == where.kind.value)
    return and_(*conditions)
