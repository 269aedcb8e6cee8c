"""Usage records, quotas, the IAM audit log and the request log (operating Fovea).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _serial(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "usage_records",
        _serial("id"),
        _timestamp("created_at"),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("folder_id", sa.String(32), nullable=False),
        sa.Column("service_account_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model_uri", sa.String(255), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("branch", sa.String(63), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("image_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    op.create_index(op.f("ix_usage_records_created_at"), "usage_records", ["created_at"])
    op.create_index(
        "ix_usage_records_folder_id_created_at", "usage_records", ["folder_id", "created_at"]
    )
    op.create_table(
        "quotas",
        sa.Column("folder_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("concurrent", sa.Integer(), nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("folder_id", "key_id", name=op.f("pk_quotas")),
    )
    op.create_table(
        "iam_audit",
        _serial("id"),
        _timestamp("created_at"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("folder_id", sa.String(32), nullable=True),
        sa.Column("target_id", sa.String(32), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iam_audit")),
    )
    op.create_index(op.f("ix_iam_audit_created_at"), "iam_audit", ["created_at"])
    op.create_index(op.f("ix_iam_audit_folder_id"), "iam_audit", ["folder_id"])
    op.create_table(
        "request_log",
        sa.Column("request_id", sa.String(32), nullable=False),
        _timestamp("created_at"),
        sa.Column("folder_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model_uri", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_request_log")),
    )
    op.create_index(op.f("ix_request_log_created_at"), "request_log", ["created_at"])
    op.create_index(op.f("ix_request_log_folder_id"), "request_log", ["folder_id"])


def downgrade() -> None:
    for table, columns in (
        ("request_log", ("folder_id", "created_at")),
        ("iam_audit", ("folder_id", "created_at")),
    ):
        for column in columns:
            op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
        op.drop_table(table)
    op.drop_table("quotas")
    op.drop_index("ix_usage_records_folder_id_created_at", table_name="usage_records")
    op.drop_index(op.f("ix_usage_records_created_at"), table_name="usage_records")
    op.drop_table("usage_records")
