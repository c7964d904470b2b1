"""data history: batch stamps on data rows and observations, superseded observations and data rows (SPEC §12)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:45:00.000000

Data written before this revision carries stamp 0: written before history was kept, current
since before any as-of instant anyone can ask about.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DATA_TABLES = ("curves", "matrices", "events")


def upgrade() -> None:
    op.create_table(
        "batch_stamps",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("stamp", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("batch", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "stamp", name=op.f("pk_batch_stamps")),
        sa.UniqueConstraint("tenant", "environment", "batch", name=op.f("uq_batch_stamps_tenant_environment_batch")),
    )
    op.create_table(
        "series_versions",
        sa.Column("tenant_key", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("superseded", sa.BigInteger(), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("vals", postgresql.ARRAY(sa.Double()), nullable=False),
        sa.Column("codes", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.Column("stamps", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("extras", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("tenant_key", "series_id", "day", "superseded", name=op.f("pk_series_versions")),
    )
    op.create_table(
        "data_versions",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("superseded", sa.BigInteger(), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("made", sa.BigInteger(), nullable=False),
        sa.Column("eventtime", sa.DateTime(timezone=True), nullable=True),
        sa.Column("doc", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "environment", "kind", "object_id", "property", "key", "superseded", name=op.f("pk_data_versions")
        ),
    )
    op.add_column(
        "series_chunks",
        sa.Column("stamps", postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{0}'"), nullable=False),
    )
    for table in DATA_TABLES:
        op.add_column(table, sa.Column("stamp", sa.BigInteger(), server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    for table in DATA_TABLES:
        op.drop_column(table, "stamp")
    op.drop_column("series_chunks", "stamps")
    op.drop_table("data_versions")
    op.drop_table("series_versions")
    op.drop_table("batch_stamps")
