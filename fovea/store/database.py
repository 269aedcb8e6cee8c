"""The ``Database`` handle: engine, sessions and schema migrations for one SQLAlchemy URL."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fovea.errors import FoveaError

SQLITE_BUSY_TIMEOUT_MS = 5000


class Database:
    """One database: builds the engine, hands out sessions and upgrades the schema.

    SQLite files get WAL journaling (readers never block the writer), a busy timeout (writers
    wait for each other instead of failing) and enforced foreign keys.
    """

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            _create_parent_dir(self.url)
        # Bound values (request bodies among them) stay out of SQL logs and error messages,
        # which end up in the server's log.
        self.engine: Engine = create_engine(self.url, echo=echo, hide_parameters=True)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _configure_sqlite_connection)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        """A new session; use it as ``with db.session() as s, s.begin(): ...``."""
        return self._sessions()

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration (a no-op when already there)."""
        config = alembic_config(self.url)
        try:
            with self.engine.connect() as connection:
                if self.is_sqlite:
                    # Take the write lock first so that two processes starting on a fresh file
                    # run the migrations one after the other instead of both creating tables.
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
        except SQLAlchemyError as exc:
            raise FoveaError(
                f"Could not open or upgrade the database {self._safe_url}: {exc}"
            ) from exc

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self._safe_url!r})"

    @property
    def _safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)


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
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL still survives a killed process (the WAL is written on commit);
        # only a power loss can drop the last commits. Batch lines commit one by one.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
