"""Batch runners on several replicas: leases on batches (validation, finalization) and on lines.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("batches", "batch_lines"):
        with op.batch_alter_table(table) as alter:
            alter.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
            alter.add_column(
                sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
            )


def downgrade() -> None:
    for table in ("batch_lines", "batches"):
        with op.batch_alter_table(table) as alter:
            alter.drop_column("lease_expires_at")
            alter.drop_column("lease_owner")
