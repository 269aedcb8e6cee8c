"""A private PostgreSQL server for the test session, and a fresh database per test.

The server is Debian's ``postgresql`` package (``make test`` installs it), started from its own
data directory (in memory when there is room, else under /tmp) on a free port with durability
off, and stopped when the session ends. It runs as the ``postgres`` user when the tests run as
root (``initdb`` refuses root). When it cannot start, the tests that need it fail with the
reason: they are never skipped.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from fovea.store.database import Database
from tests.private_servers import start_owned, stop_abandoned
from tests.processes import free_port

INSTALL_HINT = "install it with `make test` (Debian's postgresql and the '.[postgres]' extra)"
START_TIMEOUT_S = 30
MIGRATED_TEMPLATE = "fovea_migrated"
DIR_PREFIX = "fovea-pg-"
# No durability: the data is thrown away (these settings are for tests only). A small WAL keeps
# a data directory in memory small: each new database writes its ~8 MB copy there.
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_wal_size=128MB"
)
# Creating a database from a template took ~20 ms on tmpfs and ~300 ms on this disk.
MEMORY_DIR = Path("/dev/shm")
MEMORY_NEEDED = 1 << 30
DISK_DIR = Path("/tmp")


class PostgresUnavailable(RuntimeError):
    """The private server could not be started; the message says why and what to do."""


class PostgresServer:
    """A throwaway cluster: ``start()``, then ``create_database()`` per test, then ``stop()``."""

    def __init__(self, directory: Path) -> None:
        self._bin = _server_bin_dir()
        self._dir = directory
        self._data = directory / "data"
        self._port = 0
        self._names = itertools.count(1)
        self._admin: Engine | None = None
        self._has_migrated_template = False

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres")
        self._run(
            "initdb", "-D", self._data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8",
        )  # fmt: skip
        self._port = free_port()
        options = f"-k {self._dir} -p {self._port} {SERVER_OPTIONS}"
        self._run(
            "pg_ctl", "-D", self._data, "-l", self._dir / "log", "-w", "-t", START_TIMEOUT_S,
            "-o", options, "start",
        )  # fmt: skip
        self._admin = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self._port}/{database}"

    def create_database(self, *, migrated: bool = False) -> str:
        """A new database, empty or (``migrated``) at the newest schema; its name."""
        name = f"test_{next(self._names)}"
        template = self._migrated_template() if migrated else "template0"
        with self._engine().connect() as connection:
            # Outside a transaction: the engine autocommits.
            connection.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a test that forgot to dispose of its engine does not keep the database alive.
        with self._engine().connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def _migrated_template(self) -> str:
        if not self._has_migrated_template:
            with self._engine().connect() as connection:
                connection.execute(text(f"CREATE DATABASE {MIGRATED_TEMPLATE}"))
            database = Database(self.url(MIGRATED_TEMPLATE))
            database.migrate()
            database.dispose()  # a template with open connections cannot be copied
            self._has_migrated_template = True
        return MIGRATED_TEMPLATE

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.dispose()
        if (self._data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", self._data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _engine(self) -> Engine:
        assert self._admin is not None, "start() the server first"
        return self._admin

    def _run(self, tool: str, *args: object, check: bool = True) -> None:
        command = [str(self._bin / tool), *map(str, args)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            log = self._dir / "log"
            detail = done.stderr.strip() or done.stdout.strip()
            if log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(f"{tool} failed ({done.returncode}): {detail}")


def start_server() -> PostgresServer:
    """A started private server, or ``PostgresUnavailable`` saying what is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        raise PostgresUnavailable(f"psycopg is not installed: {INSTALL_HINT}") from error
    found = [*MEMORY_DIR.glob(f"{DIR_PREFIX}*"), *DISK_DIR.glob(f"{DIR_PREFIX}*")]
    stop_abandoned(found, PostgresServer)
    return start_owned(PostgresServer, DIR_PREFIX, _scratch_dir())


def _scratch_dir() -> Path:
    usable = MEMORY_DIR.is_dir() and os.access(MEMORY_DIR, os.W_OK)
    if usable and shutil.disk_usage(MEMORY_DIR).free >= MEMORY_NEEDED:
        return MEMORY_DIR
    return DISK_DIR


def _server_bin_dir() -> Path:
    # Debian keeps the server's binaries off PATH, one directory per major version.
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version)
    if not found:
        raise PostgresUnavailable(f"PostgreSQL's server is not installed: {INSTALL_HINT}")
    return found[-1]


def _version(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in bin_dir.parent.name.split(".") if part.isdigit())
