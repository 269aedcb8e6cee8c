"""Batch and line state in the database: every transition and every line's result is committed
as it happens, so a killed server resumes where it stopped. Synchronous: call off the loop."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, or_, select, update

from fovea.errors import ConflictError, InvalidRequestError, NotFoundError
from fovea.store.clock import Clock, utcnow
from fovea.store.database import Database
from fovea.store.tables import BATCH_ACTIVE_STATUSES, BatchLineRecord, BatchRecord
from fovea.store.transaction import transaction

ACTIVE = BATCH_ACTIVE_STATUSES
TERMINAL = ("failed", "completed", "expired", "cancelled")
COMPLETION_WINDOWS = {"24h": timedelta(hours=24)}


@dataclass(frozen=True)
class BatchInfo:
    """A batch as stored (a copy of its row)."""

    id: str
    folder_id: str
    service_account_id: str
    endpoint: str
    input_file_id: str
    input_format: str
    model: str | None
    options: dict[str, Any] | None
    source_dataset_id: str | None
    completion_window: str
    status: str
    batch_metadata: dict[str, str] | None
    errors: list[dict[str, Any]] | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    created_at: datetime
    expires_at: datetime
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    expired_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None


@dataclass(frozen=True)
class LineEntry:
    """A validated (or refused) input line, as found by the validator."""

    line_number: int
    custom_id: str | None
    offset: int
    length: int
    error: dict[str, Any] | None = None  # set: the line failed validation


@dataclass(frozen=True)
class LineRef:
    line_number: int
    custom_id: str | None
    offset: int
    length: int
    tries: int = 0  # transient failures so far


@dataclass(frozen=True)
class LineResult:
    line_number: int
    custom_id: str | None
    status: str
    response: dict[str, Any] | None
    error: dict[str, Any] | None


_INFO_FIELDS = [f.name for f in fields(BatchInfo)]


def _info(record: BatchRecord) -> BatchInfo:
    return BatchInfo(**{name: getattr(record, name) for name in _INFO_FIELDS})


class BatchStore:
    """Batches and their lines: each call is one transaction (``results`` one per page)."""

    def __init__(self, database: Database, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock

    # -- the API's side ----------------------------------------------------------------------

    def create(self, **values: Any) -> BatchInfo:
        now = self._clock()
        window = COMPLETION_WINDOWS[values["completion_window"]]
        record = BatchRecord(
            id=f"batch_{secrets.token_hex(12)}",
            status="validating",
            total=0,
            completed=0,
            failed=0,
            created_at=now,
            expires_at=now + window,
            **values,
        )
        with transaction(self._database) as session:
            session.add(record)
        return _info(record)

    def get(self, batch_id: str, folder_id: str) -> BatchInfo:
        with transaction(self._database) as session:
            record = session.get(BatchRecord, batch_id)
            if record is None or record.folder_id != folder_id:
                raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
            return _info(record)

    def list_batches(
        self, folder_id: str, *, after: str | None, limit: int
    ) -> tuple[list[BatchInfo], bool]:
        with transaction(self._database) as session:
            query = select(BatchRecord).where(BatchRecord.folder_id == folder_id)
            if after is not None:
                anchor = session.get(BatchRecord, after)
                if anchor is not None:
                    query = query.where(
                        (BatchRecord.created_at < anchor.created_at)
                        | ((BatchRecord.created_at == anchor.created_at) & (BatchRecord.id < after))
                    )
            query = query.order_by(BatchRecord.created_at.desc(), BatchRecord.id.desc())
            records = session.scalars(query.limit(limit + 1)).all()
            return [_info(r) for r in records[:limit]], len(records) > limit

    def request_cancel(self, batch_id: str, folder_id: str) -> BatchInfo:
        with transaction(self._database) as session:
            record = session.get(BatchRecord, batch_id)
            if record is None or record.folder_id != folder_id:
                raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
            if record.status in ("validating", "in_progress"):
                record.status = "cancelling"
                record.cancelling_at = self._clock()
            elif record.status not in ("cancelling", "cancelled"):
                raise InvalidRequestError(
                    f"Cannot cancel a batch with status '{record.status}'", param="batch_id"
                )
            return _info(record)

    def delete(self, batch_id: str, folder_id: str) -> None:
        """Forget a finished batch and its lines (its files stay in the Files API)."""
        with transaction(self._database) as session:
            record = session.get(BatchRecord, batch_id)
            if record is None or record.folder_id != folder_id:
                raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
            if record.status not in TERMINAL:
                raise ConflictError(
                    f"Batch {batch_id} is {record.status}: cancel it and wait until it is "
                    "cancelled before deleting it",
                    param="batch_id",
                )
            session.execute(delete(BatchLineRecord).where(BatchLineRecord.batch_id == batch_id))
            session.delete(record)

    # -- the runner's side -------------------------------------------------------------------

    def active(self) -> list[BatchInfo]:
        with transaction(self._database) as session:
            query = select(BatchRecord).where(BatchRecord.status.in_(ACTIVE))
            return [_info(r) for r in session.scalars(query.order_by(BatchRecord.created_at))]

    def reload(self, batch_id: str) -> BatchInfo:
        with transaction(self._database) as session:
            record = session.get(BatchRecord, batch_id)
            if record is None:
                raise NotFoundError(f"No such Batch object: {batch_id}")
            return _info(record)

    def claim(self, batch_id: str, status: str, owner: str, lease_s: float) -> bool:
        """Take (or renew) the batch's lease for work only one replica may do at a time
        (validating, closing, finalizing) while it is still ``status``; False if another
        replica's lease is live or the status has moved on."""
        now = self._clock()
        with transaction(self._database) as session:
            changed = session.execute(
                update(BatchRecord)
                .where(
                    BatchRecord.id == batch_id,
                    BatchRecord.status == status,
                    _free_or_mine(BatchRecord, owner, now),
                )
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s))
            )
            return bool(cast(CursorResult[Any], changed).rowcount)

    def release(self, batch_id: str, owner: str) -> None:
        """Give the batch's lease back (work done, or this replica stopping)."""
        with transaction(self._database) as session:
            session.execute(
                update(BatchRecord)
                .where(BatchRecord.id == batch_id, BatchRecord.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def save_lines(self, batch_id: str, lines: Sequence[LineEntry], owner: str) -> bool:
        """Record the validated lines and start the batch (unless it was cancelled meanwhile),
        if ``owner`` still holds the batch's lease; False (nothing written) otherwise."""
        now = self._clock()
        failed = sum(1 for line in lines if line.error is not None)
        with transaction(self._database) as session:
            record = session.get(BatchRecord, batch_id, with_for_update=True)
            assert record is not None
            if record.lease_owner != owner or record.status not in ("validating", "cancelling"):
                return False
            session.execute(delete(BatchLineRecord).where(BatchLineRecord.batch_id == batch_id))
            session.add_all(_line_record(batch_id, line, now) for line in lines)
            record.total, record.completed, record.failed = len(lines), 0, failed
            if record.status == "validating":
                record.status, record.in_progress_at = "in_progress", now
            return True

    def fail(self, batch_id: str, errors: list[dict[str, Any]]) -> None:
        with transaction(self._database) as session:
            record = session.get(BatchRecord, batch_id)
            assert record is not None
            record.status, record.failed_at, record.errors = "failed", self._clock(), errors

    def claim_lines(
        self, batch_id: str, owner: str, *, limit: int, lease_s: float
    ) -> list[LineRef]:
        """Lease up to ``limit`` pending lines no live lease holds, first lines first. On
        PostgreSQL replicas claim side by side (``FOR UPDATE SKIP LOCKED``); SQLite serialises
        writers, so the same statement is atomic there too."""
        now = self._clock()
        free = (
            select(BatchLineRecord.line_number)
            .where(
                BatchLineRecord.batch_id == batch_id,
                BatchLineRecord.status == "pending",
                _free(BatchLineRecord, now),
            )
            .order_by(BatchLineRecord.line_number)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # A CTE, evaluated once: as an IN (subquery) PostgreSQL may re-run it for each row,
        # and SKIP LOCKED then skips the rows this very statement just updated.
        chosen = free.cte("chosen")
        claim = (
            update(BatchLineRecord)
            .where(
                BatchLineRecord.batch_id == batch_id,
                BatchLineRecord.line_number == chosen.c.line_number,
            )
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(
                BatchLineRecord.line_number,
                BatchLineRecord.custom_id,
                BatchLineRecord.offset,
                BatchLineRecord.length,
                BatchLineRecord.tries,
            )
            .execution_options(synchronize_session=False)
        )
        with transaction(self._database) as session:
            rows = session.execute(claim).all()
        return sorted((LineRef(*row) for row in rows), key=lambda ref: ref.line_number)

    def renew_lines(
        self, batch_id: str, owner: str, line_numbers: Sequence[int], lease_s: float
    ) -> None:
        """Extend the leases ``owner`` holds on lines it is still answering."""
        until = self._clock() + timedelta(seconds=lease_s)
        self._set_leases(batch_id, owner, line_numbers, owner, until)

    def release_lines(self, batch_id: str, owner: str, line_numbers: Sequence[int]) -> None:
        """Give leases back: the lines are free for any replica at once."""
        self._set_leases(batch_id, owner, line_numbers, None, None)

    def retry_line(self, batch_id: str, owner: str, line_number: int, delay_s: float) -> None:
        """Give a line back after a transient failure, counted in its ``tries``: free for any
        replica once ``delay_s`` has passed (a lease nobody holds, until then)."""
        until = self._clock() + timedelta(seconds=delay_s)
        with transaction(self._database) as session:
            session.execute(
                update(BatchLineRecord)
                .where(
                    BatchLineRecord.batch_id == batch_id,
                    BatchLineRecord.line_number == line_number,
                    BatchLineRecord.lease_owner == owner,
                    BatchLineRecord.status == "pending",
                )
                .values(lease_owner=None, lease_expires_at=until, tries=BatchLineRecord.tries + 1)
            )

    def _set_leases(
        self,
        batch_id: str,
        owner: str,
        line_numbers: Sequence[int],
        new_owner: str | None,
        until: datetime | None,
    ) -> None:
        if not line_numbers:
            return
        with transaction(self._database) as session:
            session.execute(
                update(BatchLineRecord)
                .where(
                    BatchLineRecord.batch_id == batch_id,
                    BatchLineRecord.line_number.in_(line_numbers),
                    BatchLineRecord.lease_owner == owner,
                    BatchLineRecord.status == "pending",
                )
                .values(lease_owner=new_owner, lease_expires_at=until)
            )

    def record(self, batch_id: str, result: LineResult) -> bool:
        """One line's outcome and the batch's counters, in one transaction. Only a pending line
        changes: a line another replica (or a run before a crash) answered first keeps that
        answer, so every line is answered once in the output and counted once. False then."""
        counter = BatchRecord.completed if result.status == "completed" else BatchRecord.failed
        with transaction(self._database) as session:
            changed = session.execute(
                update(BatchLineRecord)
                .where(
                    BatchLineRecord.batch_id == batch_id,
                    BatchLineRecord.line_number == result.line_number,
                    BatchLineRecord.status == "pending",
                )
                .values(
                    status=result.status,
                    response=result.response,
                    error=result.error,
                    completed_at=self._clock(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            if not cast(CursorResult[Any], changed).rowcount:
                return False
            session.execute(
                update(BatchRecord).where(BatchRecord.id == batch_id).values({counter: counter + 1})
            )
            return True

    def failed_lines(self, batch_id: str, limit: int) -> list[LineResult]:
        """The first ``limit`` failed lines, in input order."""
        with transaction(self._database) as session:
            rows = session.scalars(
                select(BatchLineRecord)
                .where(BatchLineRecord.batch_id == batch_id, BatchLineRecord.status == "failed")
                .order_by(BatchLineRecord.line_number)
                .limit(limit)
            ).all()
            return [
                LineResult(r.line_number, r.custom_id, r.status, r.response, r.error) for r in rows
            ]

    def close_pending(self, batch_id: str, status: str) -> None:
        """Every line still pending becomes ``status`` (cancelled or expired)."""
        with transaction(self._database) as session:
            session.execute(
                update(BatchLineRecord)
                .where(BatchLineRecord.batch_id == batch_id, BatchLineRecord.status == "pending")
                .values(status=status, completed_at=self._clock())
            )

    def count_pending(self, batch_id: str) -> int:
        with transaction(self._database) as session:
            query = select(func.count()).where(
                BatchLineRecord.batch_id == batch_id, BatchLineRecord.status == "pending"
            )
            return int(session.scalar(query) or 0)

    def unfinished_lines(self) -> dict[str, int]:
        """Lines of the batches not yet finished, by state (what /metrics shows): one GROUP BY
        over the (batch_id, status) index, never the history of finished batches."""
        with transaction(self._database) as session:
            rows = session.execute(
                select(BatchLineRecord.status, func.count())
                .join(BatchRecord, BatchRecord.id == BatchLineRecord.batch_id)
                .where(BatchRecord.status.in_(ACTIVE))
                .group_by(BatchLineRecord.status)
            ).all()
        return {status: int(count) for status, count in rows}

    def transition(
        self,
        batch_id: str,
        status: str,
        *,
        expected: str | None = None,
        owner: str | None = None,
        **values: Any,
    ) -> bool:
        """Move the batch to ``status`` (stamping ``<status>_at``); with ``expected``, only from
        that status, and with ``owner``, only while that replica holds the lease (which is
        then released). False when the condition did not hold: nothing changed."""
        stamp = f"{status}_at"
        if stamp in _INFO_FIELDS:
            values[stamp] = self._clock()
        query = update(BatchRecord).where(BatchRecord.id == batch_id)
        if expected is not None:
            query = query.where(BatchRecord.status == expected)
        if owner is not None:
            query = query.where(BatchRecord.lease_owner == owner)
            values.update(lease_owner=None, lease_expires_at=None)
        with transaction(self._database) as session:
            changed = session.execute(query.values(status=status, **values))
            return bool(cast(CursorResult[Any], changed).rowcount)

    def results(self, batch_id: str) -> Iterator[LineResult]:
        """Every line and its outcome so far, in input order (read in pages, never all at once)."""
        last = 0
        while True:
            with transaction(self._database) as session:
                rows = session.scalars(
                    select(BatchLineRecord)
                    .where(
                        BatchLineRecord.batch_id == batch_id,
                        BatchLineRecord.line_number > last,
                    )
                    .order_by(BatchLineRecord.line_number)
                    .limit(500)
                ).all()
                page = [
                    LineResult(r.line_number, r.custom_id, r.status, r.response, r.error)
                    for r in rows
                ]
            if not page:
                return
            yield from page
            last = page[-1].line_number


def _free(table: type[BatchRecord] | type[BatchLineRecord], now: datetime) -> ColumnElement[bool]:
    """No live lease: never taken, given back, or expired (its holder stopped renewing)."""
    return or_(table.lease_expires_at.is_(None), table.lease_expires_at < now)


def _free_or_mine(
    table: type[BatchRecord] | type[BatchLineRecord], owner: str, now: datetime
) -> ColumnElement[bool]:
    return or_(_free(table, now), table.lease_owner == owner)


def _line_record(batch_id: str, line: LineEntry, now: datetime) -> BatchLineRecord:
    return BatchLineRecord(
        batch_id=batch_id,
        line_number=line.line_number,
        custom_id=line.custom_id,
        offset=line.offset,
        length=line.length,
        status="failed" if line.error is not None else "pending",
        error=line.error,
        response=None,
        completed_at=now if line.error is not None else None,
    )
