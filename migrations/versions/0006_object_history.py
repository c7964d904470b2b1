"""object history: superseded versions, per-batch change logs, prune watermarks (SPEC §12)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:27:06.279039
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Every state of an object that an UPDATE replaces goes to object_versions, taken from the rows
# the statement itself replaced (its transition tables): the batch upsert needs no lookup of its
# own, and a state is never missed or stale when concurrent batches take turns on a row. The
# state that follows names the batch that ended it: its writer, or the rollback or delete that
# restored an earlier state (restored_by, restored_at). Removals are archived by their own
# statement (store/history.py), which knows who removed the object.
# EXECUTE plans the insert for each statement's actual row counts: a plan cached from a first,
# one-row statement would join the transition tables in a nested loop (quadratic in the rows).
ARCHIVE_FUNCTION = """
CREATE FUNCTION batchsvc_archive_objects() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM superseded) THEN
        RETURN NULL;  -- an upsert that only inserted, or changed nothing: no planning at all
    END IF;
    EXECUTE $archive$
    INSERT INTO object_versions (tenant, environment, id, version, doc, created, updated, "user", batch, reason,
                                 restored_at, restored_by, valid_to, superseded_by, removed)
    SELECT o.tenant, o.environment, o.id, o.version, o.doc, o.created, o.updated, o."user", o.batch, o.reason,
           o.restored_at, o.restored_by, COALESCE(n.restored_at, n.updated), COALESCE(n.restored_by, n.batch), false
    FROM superseded o JOIN superseding n USING (tenant, environment, id)
    WHERE o.version IS DISTINCT FROM n.version OR o.doc IS DISTINCT FROM n.doc
       OR o.restored_by IS DISTINCT FROM n.restored_by
    $archive$;
    RETURN NULL;
END
$$
"""
ARCHIVE_TRIGGER = """
CREATE TRIGGER archive_superseded_objects AFTER UPDATE ON objects
REFERENCING OLD TABLE AS superseded NEW TABLE AS superseding
FOR EACH STATEMENT EXECUTE FUNCTION batchsvc_archive_objects()
"""


def upgrade() -> None:
    op.create_table(
        "batch_changes",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("batch", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("updated", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("removed", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "batch", "kind", name=op.f("pk_batch_changes")),
    )
    op.create_table(
        "history_watermarks",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", name=op.f("pk_history_watermarks")),
    )
    op.create_table(
        "object_versions",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=256), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("doc", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.Text(), nullable=False),
        sa.Column("batch", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restored_by", sa.String(length=128), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_by", sa.String(length=128), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "environment", "id", "seq", name=op.f("pk_object_versions")),
    )
    op.add_column("objects", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("objects", sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("objects", sa.Column("restored_by", sa.String(length=128), nullable=True))
    op.execute(ARCHIVE_FUNCTION)
    op.execute(ARCHIVE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER archive_superseded_objects ON objects")
    op.execute("DROP FUNCTION batchsvc_archive_objects()")
    op.drop_column("objects", "restored_by")
    op.drop_column("objects", "restored_at")
    op.drop_column("objects", "reason")
    op.drop_table("object_versions")
    op.drop_table("history_watermarks")
    op.drop_table("batch_changes")
