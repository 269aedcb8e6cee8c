"""Datasets and operations (the cloud SDK's surface), batch-wide options of batches.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("folder_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("task_type", sa.String(64), nullable=False),
        sa.Column("upload_format", sa.String(32), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("file_id", sa.String(32), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("validation_errors", sa.JSON(), nullable=True),
        sa.Column("batch_id", sa.String(32), nullable=True),
        sa.Column("created_by", sa.String(32), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name=op.f("fk_datasets_folder_id_folders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_datasets_batch_id")),
    )
    op.create_index(op.f("ix_datasets_folder_id"), "datasets", ["folder_id"])
    op.create_table(
        "operations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("folder_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(32), nullable=True),
        sa.Column("created_by", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        _timestamp("created_at"),
        _timestamp("modified_at"),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name=op.f("fk_operations_folder_id_folders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    op.create_index(op.f("ix_operations_folder_id"), "operations", ["folder_id"])
    op.create_index(op.f("ix_operations_done"), "operations", ["done"])
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("options", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("source_dataset_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("source_dataset_id")
        batch.drop_column("options")
    op.drop_index(op.f("ix_operations_done"), table_name="operations")
    op.drop_index(op.f("ix_operations_folder_id"), table_name="operations")
    op.drop_table("operations")
    op.drop_index(op.f("ix_datasets_folder_id"), table_name="datasets")
    op.drop_table("datasets")
