"""The one transaction helper: a session in a transaction, committed on success."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fovea.store.database import Database, database_error


@contextmanager
def transaction(database: Database) -> Iterator[Session]:
    """Commit when the block ends normally, roll back otherwise; SQLAlchemy's failures become
    ``database_error``'s: a 503 to retry when the database is unreachable or busy, else a
    logged 500, with the cause chained."""
    session = database.session()
    try:
        with session.begin():
            yield session
    except SQLAlchemyError as error:
        raise database_error(error) from error
    finally:
        session.close()
