"""The database handle and the migrations: schema, SQLite settings, idempotence; on SQLite and
on PostgreSQL."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from fovea.store import Base, Database
from fovea.store.audit import CLI_ACTOR, AuditAction, AuditFilter, AuditStore
from fovea.store.database import alembic_config
from fovea.store.tables import FolderRecord, ServiceAccountRecord
from tests.conftest import SQLITE_ONLY

IAM_TABLES = {"folders", "service_accounts", "role_bindings", "api_keys"}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def database(database_url: str):
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


def schema_differences(db: Database) -> list[object]:
    with db.engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_migrations_create_exactly_the_declared_schema(database: Database) -> None:
    assert set(inspect(database.engine).get_table_names()) >= IAM_TABLES
    assert schema_differences(database) == []


def test_schema_comparison_would_notice_a_missing_table(database_url: str) -> None:
    empty = Database(database_url)
    try:
        assert schema_differences(empty) != []
    finally:
        empty.dispose()


def test_migrating_twice_changes_nothing(database: Database) -> None:
    revision = current_revision(database)
    database.migrate()
    assert current_revision(database) == revision is not None
    assert schema_differences(database) == []


def test_downgrade_and_upgrade_round_trip(database: Database) -> None:
    config = alembic_config(database.url)
    command.downgrade(config, "base")
    assert not IAM_TABLES & set(inspect(database.engine).get_table_names())
    database.migrate()
    assert schema_differences(database) == []


def test_a_database_at_the_first_revision_upgrades_keeping_its_rows(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "0001")
    older = Database(database_url)
    with older.session() as session, session.begin():
        session.add(
            FolderRecord(id="b1g2", name="kept", description="", created_at=datetime.now(UTC))
        )
    older.dispose()
    upgraded = Database(database_url)
    try:
        upgraded.migrate()
        assert schema_differences(upgraded) == []
        with upgraded.session() as session:
            assert session.get_one(FolderRecord, "b1g2").name == "kept"
    finally:
        upgraded.dispose()


def test_ids_the_database_numbers_count_up(database: Database) -> None:
    audit = AuditStore(database)
    with database.session() as session, session.begin():
        for action in (AuditAction.FOLDER_CREATE, AuditAction.KEY_CREATE):
            audit.append(
                session,
                at=datetime.now(UTC),
                actor=CLI_ACTOR,
                action=action,
                folder_id=None,
                target_id=None,
                details={},
            )
    first, second = audit.list(AuditFilter())
    assert second.id > first.id > 0


@SQLITE_ONLY
def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(database: Database) -> None:
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_foreign_keys_are_enforced(database: Database) -> None:
    orphan = ServiceAccountRecord(
        id="aje00000000000000000",
        folder_id="b1gmissing0000000000",
        name="orphan",
        description="",
        created_at=datetime.now(UTC),
    )
    with pytest.raises(IntegrityError), database.session() as session, session.begin():
        session.add(orphan)


def test_parent_directory_of_the_sqlite_file_is_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "fovea.db"
    db = Database(sqlite_url(path))
    try:
        db.migrate()
    finally:
        db.dispose()
    assert path.is_file()


def test_timestamps_come_back_timezone_aware_in_utc(database: Database) -> None:
    moscow = timezone(timedelta(hours=3))
    created = datetime(2030, 5, 1, 15, 30, tzinfo=moscow)
    with database.session() as session, session.begin():
        session.add(FolderRecord(id="b1g0", name="f", description="", created_at=created))
    with database.session() as session:
        stored = session.get_one(FolderRecord, "b1g0").created_at
    assert stored == created
    assert stored.utcoffset() == timedelta(0)


def test_concurrent_first_migrations_do_not_collide(database_url: str) -> None:
    url = database_url
    handles = [Database(url) for _ in range(4)]
    failures: list[BaseException] = []

    def migrate(db: Database) -> None:
        try:
            db.migrate()
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert schema_differences(handles[0]) == []
    finally:
        for db in handles:
            db.dispose()


def test_a_plain_postgresql_url_works(postgres_url: str) -> None:
    database = Database(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        database.migrate()
        assert schema_differences(database) == []
    finally:
        database.dispose()


def test_migrations_render_as_postgresql() -> None:
    output = io.StringIO()
    config = alembic_config("postgresql://fovea@localhost/fovea")
    config.output_buffer = output
    command.upgrade(config, "head", sql=True)
    sql = output.getvalue()
    for table in IAM_TABLES:
        assert f"CREATE TABLE {table}" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql
    assert "JSON" in sql
