"""Persistence: SQLAlchemy tables and Alembic migrations behind one ``Database`` handle.

Only ``fovea.iam`` (and later services) import the ORM records; nothing above the service layer
sees them.
"""

from fovea.store.database import Database
from fovea.store.tables import Base

__all__ = ["Base", "Database"]
