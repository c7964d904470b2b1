"""typed data tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:22:59.935492
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "curves",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("ondate", sa.Date(), nullable=False),
        sa.Column("doc", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "object_id", "property", "ondate", name=op.f("pk_curves")),
    )
    op.create_table(
        "events",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("eventtime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("doc", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "object_id", "property", "event_id", name=op.f("pk_events")),
    )
    op.create_index(
        "ix_events_by_time", "events", ["tenant", "environment", "object_id", "property", "eventtime"], unique=False
    )
    op.create_table(
        "matrices",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("ondate", sa.Date(), nullable=False),
        sa.Column("doc", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "object_id", "property", "ondate", name=op.f("pk_matrices")),
    )
    op.create_table(
        "series_points",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("point", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "environment", "object_id", "property", "time", name=op.f("pk_series_points")
        ),
    )


def downgrade() -> None:
    op.drop_table("series_points")
    op.drop_table("matrices")
    op.drop_index("ix_events_by_time", table_name="events")
    op.drop_table("events")
    op.drop_table("curves")
