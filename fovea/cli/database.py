"""The database the offline commands work on, and how they report its errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from fovea.errors import FoveaError
from fovea.settings import Settings
from fovea.store import Database


@contextmanager
def open_database() -> Iterator[Database]:
    """The database ``Settings`` names (``FOVEA_HOME``, ``FOVEA_DATABASE_URL``), upgraded; a
    ``FoveaError`` inside becomes one line on stderr and exit status 1."""
    database = Database(Settings().sqlalchemy_url)
    try:
        database.migrate()
        yield database
    except FoveaError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()
