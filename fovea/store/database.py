"""The ``Database`` handle: engine, sessions and schema migrations for one SQLAlchemy URL."""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from fovea.errors import DatabaseUnavailableError, FoveaError, InsufficientStorageError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
MIGRATION_WAIT_MS = 120_000  # for another process's migration to finish (SQLite)
MIGRATION_LOCK_KEY = 0x666F766561  # PostgreSQL advisory lock of migrations: b"fovea"
CONNECT_TIMEOUT_S = 3
RETRY_AFTER_S = 2


class Database:
    """One database: builds the engine, hands out sessions and upgrades the schema.

    SQLite files get WAL journaling (readers never block the writer), a busy timeout (writers
    wait for each other instead of failing) and enforced foreign keys.
    """

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self.url = make_url(url)
        if self.url.drivername == "postgresql":
            # psycopg 3, the driver of the "postgres" extra (SQLAlchemy's default is psycopg2).
            self.url = self.url.set(drivername="postgresql+psycopg")
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            _create_parent_dir(self.url)
        # Bound values (request bodies among them) stay out of SQL logs and error messages,
        # which end up in the server's log.
        options: dict[str, Any] = {}
        if not self.is_sqlite:
            # A pooled connection may have died with a database restart: test it before use
            # (the replica recovers by itself); and do not wait long for an unreachable server.
            options = {
                "pool_pre_ping": True,
                "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S},
            }
        try:
            self.engine: Engine = create_engine(
                self.url, echo=echo, hide_parameters=True, **options
            )
        except ModuleNotFoundError as exc:
            raise FoveaError(
                f"No driver for {self._safe_url} ({exc}): for PostgreSQL, "
                "pip install 'fovea[postgres]'"
            ) from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _configure_sqlite_connection)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        """A new session; use it as ``with db.session() as s, s.begin(): ...``."""
        return self._sessions()

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration (a no-op when already there)."""
        deadline = time.monotonic() + MIGRATION_WAIT_MS / 1000
        while True:
            try:
                self._migrate_once()
                return
            except OperationalError as exc:
                # SQLite answers some contention at once, without its busy handler (a WAL
                # being recovered or switched to while another connection opens): the
                # attempt was rolled back whole, so try again until the migration wait is up.
                if not (self.is_sqlite and _sqlite_busy(exc)) or time.monotonic() > deadline:
                    raise FoveaError(
                        f"Could not open or upgrade the database {self._safe_url}: {exc}"
                    ) from exc
                time.sleep(0.05)
            except SQLAlchemyError as exc:
                raise FoveaError(
                    f"Could not open or upgrade the database {self._safe_url}: {exc}"
                ) from exc

    def _migrate_once(self) -> None:
        config = alembic_config(self.url)
        with self.engine.connect() as connection:
            if self.is_sqlite:
                # Take the write lock first so that two processes starting on a fresh file
                # run the migrations one after the other instead of both creating tables;
                # waiting for another's whole migration may take longer than a query.
                connection.exec_driver_sql(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.url.get_backend_name() == "postgresql":
                # The same for replicas starting together: the first migrates, in one
                # transaction holding this lock; the others wait, then find nothing to do.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
                connection.commit()
            finally:
                if self.is_sqlite:  # the pooled connection goes back to the usual wait
                    connection.rollback()
                    connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    def ping(self) -> bool:
        """Whether the database answers now (blocking: call off the event loop)."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self._safe_url!r})"

    @property
    def _safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)


def database_error(error: SQLAlchemyError) -> FoveaError:
    """What a client is told of a database failure: the database unreachable, or too busy to
    answer in time, is a 503 to retry; its disk full a 507 (logged: the operator must act);
    anything else is the server's fault (a logged 500)."""
    if _is_full(error):
        log.error("the database's disk is full: %s", error)
        return InsufficientStorageError(
            "The database's disk is full: nothing was saved. Retry once the operator has freed "
            "space on the database's volume"
        )
    if _is_unavailable(error):
        return DatabaseUnavailableError(
            "The database is unavailable; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return FoveaError("Internal database error")


# PostgreSQL's SQLSTATEs for a connection lost or refused (class 08) and a server shutting
# down or starting (57P01-57P03); SQLite's result codes for a database busy or locked.
_PG_UNAVAILABLE = ("08", "57P01", "57P02", "57P03")
_SQLITE_BUSY_OR_LOCKED = (5, 6)
# SQLITE_FULL (also what PRAGMA max_page_count gives); PostgreSQL's disk_full.
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def _sqlite_busy(error: OperationalError) -> bool:
    code = getattr(error.orig, "sqlite_errorcode", None)
    return code is not None and int(code) & 0xFF in _SQLITE_BUSY_OR_LOCKED


def _is_full(error: SQLAlchemyError) -> bool:
    cause = error.orig if isinstance(error, DBAPIError) else None
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF == _SQLITE_FULL
    return str(getattr(cause, "sqlstate", None)) == _PG_DISK_FULL


def _is_unavailable(error: SQLAlchemyError) -> bool:
    if isinstance(error, DisconnectionError | PoolTimeout):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    cause = error.orig
    if not isinstance(error, OperationalError | InterfaceError) or cause is None:
        return False
    if hasattr(cause, "sqlite_errorcode"):
        return _sqlite_busy(error)  # type: ignore[arg-type]
    if hasattr(cause, "sqlstate"):  # psycopg: None when the connection itself failed
        state = cause.sqlstate
        return state is None or str(state).startswith(_PG_UNAVAILABLE)
    return False


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    if url is not None:
        rendered = make_url(url).render_as_string(hide_password=False)
        # ConfigParser interpolation treats '%' specially.
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def _migrations_dir() -> Path:
    return Path(str(resources.files("fovea.store") / "migrations"))


def _create_parent_dir(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Turning a fresh file to WAL needs it to itself: wait out another process's first
        # migration (sqlite3's default wait is 5 s) rather than fail "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={MIGRATION_WAIT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL still survives a killed process (the WAL is written on commit);
        # only a power loss can drop the last commits. Batch lines commit one by one.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
