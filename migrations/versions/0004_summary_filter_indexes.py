"""summary filter indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_batch_summaries_status_newest": "status",
    "ix_batch_summaries_user_newest": "user",
}


def upgrade() -> None:
    for name, column in _INDEXES.items():
        op.create_index(
            name,
            "batch_summaries",
            ["tenant", "environment", column, sa.literal_column("timestamp DESC"), "id"],
            unique=False,
        )


def downgrade() -> None:
    for name in reversed(_INDEXES):
        op.drop_index(name, table_name="batch_summaries")
