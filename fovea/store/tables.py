"""ORM tables, declared with typed ``Mapped[...]`` columns.

Types are portable (SQLite and PostgreSQL): strings, text, JSON and timezone-aware timestamps.
Every change here needs a new, append-only migration in ``fovea/store/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LENGTH = 32
NAME_LENGTH = 63
ROLE_LENGTH = 64
HASH_LENGTH = 64
RESPONSE_ID_LENGTH = 64  # "resp_" and 32 hex digits, with room

# Explicit constraint names keep migrations identical on SQLite and PostgreSQL and let
# Alembic's batch mode find constraints it has to recreate on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite keeps no offset; what comes back was written as UTC.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the metadata that migrations are compared against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime()}


class FolderRecord(Base):
    """A folder: the unit of isolation."""

    __tablename__ = "folders"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ServiceAccountRecord(Base):
    """A service account living in one folder; names are unique within the folder."""

    __tablename__ = "service_accounts"
    __table_args__ = (UniqueConstraint("folder_id", "name"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class RoleBindingRecord(Base):
    """A role bound on a folder to a service account."""

    __tablename__ = "role_bindings"

    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id"), primary_key=True)
    service_account_id: Mapped[str] = mapped_column(
        ForeignKey("service_accounts.id"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(ROLE_LENGTH), primary_key=True)
    created_at: Mapped[datetime]


class ApiKeyRecord(Base):
    """An API key of a service account; only the SHA-256 of its secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    service_account_id: Mapped[str] = mapped_column(ForeignKey("service_accounts.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class FileRecord(Base):
    """An uploaded (or Fovea-written) file of a folder; the bytes live on disk."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    # Relative to $FOVEA_HOME/files.
    storage_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


# A batch in one of these states still reads its input file.
BATCH_ACTIVE_STATUSES = ("validating", "in_progress", "finalizing", "cancelling")


class BatchRecord(Base):
    """A batch job over an input file, in OpenAI's shape; its lines are ``batch_lines``."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id"), index=True)
    service_account_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    # "openai" (request lines) or "dataset" (the cloud's ImageTextToText / TextToText rows).
    input_format: Mapped[str] = mapped_column(String(16))
    # The model for dataset rows, which carry none.
    model: Mapped[str | None] = mapped_column(String(255))
    # Batch-wide request fields (temperature, max_tokens, response_format, ...): every dataset
    # row gets them; an OpenAI request line keeps those it sets itself.
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source_dataset_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    completion_window: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), index=True)
    batch_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    output_file_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    error_file_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    in_progress_at: Mapped[datetime | None]
    finalizing_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    cancelling_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # The replica validating or finalizing the batch, until when (several replicas' runners).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class BatchLineRecord(Base):
    """One line of a batch's input: where it is in the file, and its outcome once it has one.

    The request itself stays in the input file (``offset``/``length``): images are not copied
    into the database. ``response``/``error`` are committed as each line completes.
    """

    __tablename__ = "batch_lines"
    __table_args__ = (Index("ix_batch_lines_batch_id_status", "batch_id", "status"),)

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    line_number: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based
    custom_id: Mapped[str | None] = mapped_column(String(512))
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    # pending | completed | failed | expired | cancelled
    status: Mapped[str] = mapped_column(String(16))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    completed_at: Mapped[datetime | None]
    # The replica answering the line, until when: an expired lease makes it free again.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    # Answers that were a transient error (429, 503), given back to be tried again: bounded,
    # and kept here so that neither a restart nor another replica starts the count over.
    tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DatasetRecord(Base):
    """A dataset of the cloud's shape: rows in a file of the folder (``file_id``), a lifecycle
    (draft → validating → ready | invalid) and, for a batch's results, the batch it came from."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    dataset_metadata: Mapped[str] = mapped_column("metadata", Text)
    task_type: Mapped[str] = mapped_column(String(64))
    upload_format: Mapped[str] = mapped_column(String(32))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    # draft | validating | ready | invalid
    status: Mapped[str] = mapped_column(String(16))
    file_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # [{"error", "error_description", "row_numbers"}] of the last validation.
    validation_errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # Set on a batch's result dataset: one per batch.
    batch_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), unique=True)
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OperationRecord(Base):
    """A long-running operation of the cloud's ``OperationService``.

    ``kind`` says what it follows: ``completion`` (its request and, once done, its response are
    kept here), ``validation`` (a dataset, ``target_id``) or ``batch`` (a batch, ``target_id``),
    whose state is read from the object it follows.
    """

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    description: Mapped[str] = mapped_column(Text)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    done: Mapped[bool] = mapped_column(default=False, index=True)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    modified_at: Mapped[datetime]


class UsageRecord(Base):
    """One request's usage (a completion or an embedding; an interactive request or a batch
    line), written in batches off the request's path. No foreign keys: a record outlives the
    key it names."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_folder_id_created_at", "folder_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)  # when the completion ended
    request_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    folder_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    service_account_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    model_uri: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    branch: Mapped[str] = mapped_column(String(NAME_LENGTH))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    image_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(Integer)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    duration_ms: Mapped[float] = mapped_column(Float)
    # ok | error | cancelled | timeout
    status: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    # completion | embedding (UsageKind)
    kind: Mapped[str] = mapped_column(String(16), server_default="completion")


class QuotaRecord(Base):
    """Limits an operator set for a folder (``key_id`` empty) or for one key of it; a limit
    left NULL is not enforced at that level."""

    __tablename__ = "quotas"

    folder_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    concurrent: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class AuditRecord(Base):
    """One change to IAM: who made it (a key, or ``cli`` on the box), what, when."""

    __tablename__ = "iam_audit"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))  # a key id, or "cli"
    action: Mapped[str] = mapped_column(String(64))  # e.g. "apiKey.create"
    folder_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    target_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class RequestLogRecord(Base):
    """A stored request and its response (the operator's debugging log, off by default).
    Images are kept as hashes and sizes, never pixels."""

    __tablename__ = "request_log"

    request_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    folder_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    model_uri: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# -- Quota counters shared by the replicas (issue 11: the database holds them when it is
# PostgreSQL and there is no Redis). Times are seconds since the epoch on the replicas' clocks
# (floats): they are subtracted and compared at every admission, never shown.

REPLICA_ID_LENGTH = 64


class QuotaCounterRecord(Base):
    """The rate-limit buckets of a folder (``key_id`` empty) or of one key. Its row lock is what
    makes an admission's check-and-take atomic across replicas; a NULL level is a full bucket."""

    __tablename__ = "quota_counters"

    folder_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    requests_level: Mapped[float | None] = mapped_column(Float)
    tokens_level: Mapped[float | None] = mapped_column(Float)
    refilled_at: Mapped[float] = mapped_column(Float)


class QuotaReplicaRecord(Base):
    """A replica holding generation slots: alive while its lease runs (its heartbeat renews it
    every third of a lease); a dead replica's slots stop counting when the lease ends."""

    __tablename__ = "quota_replicas"

    id: Mapped[str] = mapped_column(String(REPLICA_ID_LENGTH), primary_key=True)
    lease_expires_at: Mapped[float] = mapped_column(Float)


class QuotaSlotsRecord(Base):
    """Generations one replica has in flight in a folder (or under one of its keys)."""

    __tablename__ = "quota_slots"

    folder_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    replica_id: Mapped[str] = mapped_column(String(REPLICA_ID_LENGTH), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class StoredResponseRecord(Base):
    """A response of the Responses API kept for ``GET`` and ``previous_response_id``: the
    chat messages its input became (images as sent, data URLs included) and the response
    itself. A conversation is the chain of ``previous_response_id``s, each turn stored once."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(RESPONSE_ID_LENGTH), primary_key=True)
    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id"), index=True)
    previous_response_id: Mapped[str | None] = mapped_column(String(RESPONSE_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(index=True)  # the retention sweep's key
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
