"""Quota counters every replica shares when the database holds them (PostgreSQL, no Redis):
rate-limit buckets per folder and key, replicas' leases and their generations in flight.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id(name: str, length: int = 32) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=False)


def upgrade() -> None:
    op.create_table(
        "quota_counters",
        _id("folder_id"),
        _id("key_id"),
        sa.Column("requests_level", sa.Float(), nullable=True),
        sa.Column("tokens_level", sa.Float(), nullable=True),
        sa.Column("refilled_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("folder_id", "key_id", name=op.f("pk_quota_counters")),
    )
    op.create_table(
        "quota_replicas",
        _id("id", 64),
        sa.Column("lease_expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_replicas")),
    )
    op.create_table(
        "quota_slots",
        _id("folder_id"),
        _id("key_id"),
        _id("replica_id", 64),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("folder_id", "key_id", "replica_id", name=op.f("pk_quota_slots")),
    )


def downgrade() -> None:
    for table in ("quota_slots", "quota_replicas", "quota_counters"):
        op.drop_table(table)
