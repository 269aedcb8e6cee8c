"""Usage records say what kind of request they count: a completion or an embedding; stored
responses are found by age (their retention sweep).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every record written before this revision counts a completion.
    with op.batch_alter_table("usage_records") as table:
        table.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="completion")
        )
    op.create_index(op.f("ix_responses_created_at"), "responses", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_responses_created_at"), table_name="responses")
    with op.batch_alter_table("usage_records") as table:
        table.drop_column("kind")
