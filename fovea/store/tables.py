"""ORM tables, declared with typed ``Mapped[...]`` columns.

Types are portable (SQLite and PostgreSQL): strings, text, JSON and timezone-aware timestamps.
Every change here needs a new, append-only migration in ``fovea/store/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
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
