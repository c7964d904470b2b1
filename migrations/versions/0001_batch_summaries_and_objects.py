"""batch summaries and objects

Revision ID: 0001
Revises:
Create Date: 2026-11-28 15:20:19.609276
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_summaries",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("user", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("doc", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "id", name=op.f("pk_batch_summaries")),
    )
    op.create_index(
        "ix_batch_summaries_newest",
        "batch_summaries",
        ["tenant", "environment", sa.literal_column("timestamp DESC"), "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_batch_summaries_tenant_environment_name"),
        "batch_summaries",
        ["tenant", "environment", "name"],
        unique=False,
    )
    op.create_table(
        "objects",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=256), nullable=False),
        sa.Column("doc", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.Text(), nullable=False),
        sa.Column("batch", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "id", name=op.f("pk_objects")),
    )
    op.create_index(
        "ix_objects_newest", "objects", ["tenant", "environment", sa.literal_column("updated DESC"), "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_objects_newest", table_name="objects")
    op.drop_table("objects")
    op.drop_index(op.f("ix_batch_summaries_tenant_environment_name"), table_name="batch_summaries")
    op.drop_index("ix_batch_summaries_newest", table_name="batch_summaries")
    op.drop_table("batch_summaries")
