"""History's SQL (SPEC §12): archived object versions, as-of reads, change logs, rollbacks, pruning.

An object's states live in two places: the current one in `objects`, every earlier one in
`object_versions` (archived by the trigger on `objects` whenever an update replaces a state, and
by the removal statement here), each with the span it was current. A state comes back (rollback, object delete) as a copy of its
archived row; the state it ends is archived in its turn, so as-of reads see every state the store
ever served, the undone ones included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from batchsvc.core.identity import Scope
from batchsvc.models import HistoryWatermark, ObjectVersion, StoredObject
from batchsvc.store.stamps import DataLog
from batchsvc.store.transaction import TransactionCursor, int_array, text_array

# --- Reads, on the request's session ----------------------------------------------------------


class HistoryReader:
    """One tenant's environment's object history, read on the request's session."""

    def __init__(self, session: Session, scope: Scope):
        self.session = session
        self.scope = scope

    def _versions(self, object_id: str):
        return select(ObjectVersion).where(
            ObjectVersion.tenant == self.scope.tenant,
            ObjectVersion.environment == self.scope.environment,
            ObjectVersion.id == object_id,
        )

    def _since_removed(self, object_id: str):
        """The seq of the object's last removal: versions after it are its current lineage."""
        return (
            select(func.coalesce(func.max(ObjectVersion.seq), 0))
            .where(
                ObjectVersion.tenant == self.scope.tenant,
                ObjectVersion.environment == self.scope.environment,
                ObjectVersion.id == object_id,
                ObjectVersion.removed,
            )
            .scalar_subquery()
        )

    def object(self, object_id: str) -> StoredObject | None:
        return self.session.get(StoredObject, (self.scope.tenant, self.scope.environment, object_id))

    def archived_version(self, object_id: str, version: int) -> ObjectVersion | None:
        """The latest archived state of the object's current lineage that carried `version`."""
        query = (
            self._versions(object_id)
            .where(ObjectVersion.version == version, ObjectVersion.seq > self._since_removed(object_id))
            .order_by(ObjectVersion.seq.desc())
            .limit(1)
        )
        return self.session.scalars(query).first()

    def archived_versions(self, object_id: str, below: int, *, limit: int, skip: int) -> tuple[int, list]:
        """The current lineage's archived versions under `below`, newest first: (total, a page)."""
        lineage = (
            self._versions(object_id)
            .where(ObjectVersion.version < below, ObjectVersion.seq > self._since_removed(object_id))
            .distinct(ObjectVersion.version)
            .order_by(ObjectVersion.version.desc(), ObjectVersion.seq.desc())
            .subquery()
        )
        total = self.session.scalar(select(func.count()).select_from(lineage))
        rows = self.session.execute(select(lineage).order_by(lineage.c.version.desc()).limit(limit).offset(skip)).all()
        return total or 0, rows

    def archived_at(self, object_id: str, instant: datetime) -> ObjectVersion | None:
        """The archived state that was current at `instant`, if one was."""
        return self.archived_at_each([object_id], instant).get(object_id)

    def archived_at_each(self, object_ids: list[str], instant: datetime) -> dict[str, ObjectVersion]:
        """`archived_at` for several objects, in one query: id -> the archived state current at `instant`."""
        if not object_ids:
            return {}
        query = (
            select(ObjectVersion)
            .where(
                ObjectVersion.tenant == self.scope.tenant,
                ObjectVersion.environment == self.scope.environment,
                ObjectVersion.id.in_(object_ids),
                func.coalesce(ObjectVersion.restored_at, ObjectVersion.updated) <= instant,
                ObjectVersion.valid_to > instant,
            )
            .distinct(ObjectVersion.id)
            .order_by(ObjectVersion.id, ObjectVersion.seq.desc())
        )
        return {row.id: row for row in self.session.scalars(query)}

    def pruned_before(self) -> datetime | None:
        return self.session.scalar(
            select(HistoryWatermark.pruned_before).where(
                HistoryWatermark.tenant == self.scope.tenant, HistoryWatermark.environment == self.scope.environment
            )
        )


# --- Writes, inside a batch transaction (rollbacks, object deletes) ---------------------------


@dataclass(frozen=True)
class LockedSummary:
    status: str
    user: str
    timestamp: datetime
    doc: dict


@dataclass(frozen=True)
class Trail:
    """One archived state of an object, as conflict reports read it."""

    seq: int
    made_by: str
    superseded_by: str
    removed: bool


# An update's superseded state is archived by the trigger on `objects` (migration 0006); a
# removal's by this statement, which knows who removed the object.
_ARCHIVE_REMOVED = """
INSERT INTO object_versions (tenant, environment, id, version, doc, created, updated, "user", batch, reason,
                             restored_at, restored_by, valid_to, superseded_by, removed)
SELECT tenant, environment, id, version, doc, created, updated, "user", batch, reason,
       restored_at, restored_by, %(now)s, %(by)s, true
FROM objects
WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = ANY(%(ids)s::text[])
ORDER BY id
"""
_REMOVE = (
    "DELETE FROM objects WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = ANY(%(ids)s::text[])"
)
# Archived rows by (id, seq), as parallel arrays.
_ARCHIVED = """
SELECT v.* FROM object_versions v
JOIN unnest(%(ids)s::text[], %(seqs)s::bigint[]) AS w(id, seq) ON v.id = w.id AND v.seq = w.seq
WHERE v.tenant = %(tenant)s AND v.environment = %(environment)s
"""
_RESTORE = f"""
UPDATE objects AS o SET doc = a.doc, version = a.version, created = a.created, updated = a.updated,
    "user" = a."user", batch = a.batch, reason = a.reason, restored_at = %(now)s, restored_by = %(by)s
FROM ({_ARCHIVED}) AS a
WHERE o.tenant = %(tenant)s AND o.environment = %(environment)s AND o.id = a.id
"""
_RECREATE = f"""
INSERT INTO objects (tenant, environment, id, doc, version, created, updated, "user", batch, reason,
                     restored_at, restored_by)
SELECT a.tenant, a.environment, a.id, a.doc, a.version, a.created, a.updated, a."user", a.batch, a.reason,
       %(now)s, %(by)s
FROM ({_ARCHIVED}) AS a
ORDER BY a.id
"""


class HistoryWrites:
    """The history statements of one batch transaction (BatchStore.history), bound to its scope.

    Statements whose results nobody reads are deferred, like the batch path's."""

    def __init__(self, cursor: TransactionCursor, scope: Scope):
        self._cursor = cursor
        self._scope = {"tenant": scope.tenant, "environment": scope.environment}

    def _rows(self, sql: str, **params) -> list[tuple]:
        self._cursor.execute(sql, {**self._scope, **params})
        return self._cursor.fetchall()

    # the batch being undone
    def lock_summary(self, batch_id: str) -> LockedSummary | None:
        """The summary of `batch_id`, locked until the transaction ends (concurrent rollbacks of one
        batch take turns, and the second sees what the first did)."""
        rows = self._rows(
            """SELECT status, "user", timestamp, doc FROM batch_summaries
            WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = %(id)s FOR UPDATE""",
            id=batch_id,
        )
        return LockedSummary(*rows[0]) if rows else None

    def mark_rolled_back(self, batch_id: str, by: str) -> None:
        self._cursor.defer(
            """UPDATE batch_summaries SET doc = doc || jsonb_build_object('rolledBackBy', %(by)s::text)
            WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = %(id)s""",
            {**self._scope, "id": batch_id, "by": by},
        )

    def changes(self, batch_id: str) -> dict[str, tuple[list[str], list[str], list[str]]]:
        """The batch's change log: kind -> (created, updated, removed) keys."""
        rows = self._rows(
            """SELECT kind, created, updated, removed FROM batch_changes
            WHERE tenant = %(tenant)s AND environment = %(environment)s AND batch = %(batch)s""",
            batch=batch_id,
        )
        return {kind: (created, updated, removed) for kind, created, updated, removed in rows}

    def log_changes(
        self, batch_id: str, kind: str, now: datetime, *, created: list[str], updated: list[str], removed: list[str]
    ) -> None:
        log = DataLog()
        log.add(kind, created=created, updated=updated, removed=removed)
        log.flush(self._cursor, self._scope, batch_id, now)

    def pruned_before(self) -> datetime | None:
        rows = self._rows(
            "SELECT pruned_before FROM history_watermarks WHERE tenant = %(tenant)s AND environment = %(environment)s"
        )
        return rows[0][0] if rows else None

    # objects
    def lock_current(self, ids: list[str]) -> dict[str, tuple[int, str, str | None]]:
        """Lock the stored objects among `ids` in `_id` order: id -> (version, the batch that wrote
        the state, the rollback or delete that restored it or None)."""
        if not ids:
            return {}
        rows = self._rows(
            """SELECT id, version, batch, restored_by FROM objects
            WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = ANY(%(ids)s::text[])
            ORDER BY id FOR UPDATE""",
            ids=text_array(sorted(ids)),
        )
        return {ident: tuple(rest) for ident, *rest in rows}

    def states_before(self, ids: list[str], batch_id: str) -> dict[str, int]:
        """The archived state each object had before `batch_id` changed it: id -> seq."""
        if not ids:
            return {}
        rows = self._rows(
            """SELECT DISTINCT ON (id) id, seq FROM object_versions
            WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = ANY(%(ids)s::text[])
              AND superseded_by = %(batch)s
            ORDER BY id, seq DESC""",
            ids=text_array(sorted(ids)),
            batch=batch_id,
        )
        return dict(rows)

    def previous_version(self, object_id: str, version: int) -> int | None:
        """The seq of the latest archived `version` of the object's current lineage."""
        rows = self._rows(
            """SELECT seq FROM object_versions
            WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = %(id)s AND version = %(version)s
              AND seq > (SELECT COALESCE(max(seq), 0) FROM object_versions
                         WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = %(id)s AND removed)
            ORDER BY seq DESC LIMIT 1""",
            id=object_id,
            version=version,
        )
        return rows[0][0] if rows else None

    def trails(self, ids: list[str]) -> dict[str, list[Trail]]:
        """Every archived state of these objects, oldest first (what conflict reports name)."""
        if not ids:
            return {}
        rows = self._rows(
            """SELECT id, seq, COALESCE(restored_by, batch), superseded_by, removed FROM object_versions
            WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = ANY(%(ids)s::text[])
            ORDER BY id, seq""",
            ids=text_array(sorted(ids)),
        )
        trails: dict[str, list[Trail]] = {}
        for ident, *rest in rows:
            trails.setdefault(ident, []).append(Trail(*rest))
        return trails

    def remove(self, ids: list[str], *, now: datetime, by: str) -> None:
        """Archive the current states of `ids` as removed, then delete them."""
        if not ids:
            return
        params = {**self._scope, "ids": text_array(sorted(ids)), "now": now, "by": by}
        self._cursor.defer(_ARCHIVE_REMOVED, params)
        self._cursor.defer(_REMOVE, params)

    def _states(self, states: dict[str, int], now: datetime, by: str) -> dict:
        """The parameters naming archived states (id -> seq), ids in order."""
        ids = sorted(states)
        return {**self._scope, "ids": text_array(ids), "seqs": int_array(states[i] for i in ids), "now": now, "by": by}

    def restore(self, states: dict[str, int], *, now: datetime, by: str) -> None:
        """Make archived states (id -> seq) current again; the states they end are archived by
        the trigger on `objects`, like any update's."""
        if states:
            self._cursor.defer(_RESTORE, self._states(states, now, by))

    def recreate(self, states: dict[str, int], *, now: datetime, by: str) -> None:
        """Bring removed objects back in archived states (id -> seq)."""
        if not states:
            return
        params = self._states(states, now, by)
        self._cursor.defer(_RECREATE, params)
        # The removal is undone: the lineage before it is the object's again (versions, deletes).
        self._cursor.defer(
            f"UPDATE object_versions SET removed = false WHERE (id, seq) IN (SELECT id, seq FROM ({_ARCHIVED}) AS a)",
            params,
        )


# --- Retention -----------------------------------------------------------------------------------


# Where each archive's rows name their tenant and environment (series versions by their series).
_PRUNED_PLACES = """
SELECT tenant, environment FROM object_versions WHERE valid_to < :before
UNION SELECT tenant, environment FROM data_versions WHERE superseded_at < :before
UNION SELECT t.tenant, s.environment FROM series_versions v
      JOIN series s ON s.tenant_key = v.tenant_key AND s.id = v.series_id
      JOIN tenants t ON t.key = v.tenant_key
      WHERE v.superseded_at < :before
UNION SELECT tenant, environment FROM batch_changes WHERE timestamp < :before
"""


def prune(session: Session, before: datetime) -> dict[str, int]:
    """Drop archived states (objects, observations, curves, matrices, events) superseded before
    `before`, and the change logs and stamps of batches older than it, in every tenant and
    environment; raise each affected environment's watermark. One transaction.

    Current states are never touched: data written by a pruned batch keeps its stamp, which
    as-of reads then take as "before the watermark" (which it is)."""
    params = {"before": before}
    with session.begin():
        session.execute(
            text(
                f"""
INSERT INTO history_watermarks AS h (tenant, environment, pruned_before)
SELECT tenant, environment, :before FROM ({_PRUNED_PLACES}) AS pruned
ON CONFLICT (tenant, environment) DO UPDATE SET pruned_before = GREATEST(h.pruned_before, excluded.pruned_before)
"""
            ),
            params,
        )
        versions = session.execute(text("DELETE FROM object_versions WHERE valid_to < :before"), params).rowcount
        data = session.execute(text("DELETE FROM data_versions WHERE superseded_at < :before"), params).rowcount
        points = session.execute(text("DELETE FROM series_versions WHERE superseded_at < :before"), params).rowcount
        logs = session.execute(text("DELETE FROM batch_changes WHERE timestamp < :before"), params).rowcount
        session.execute(text("DELETE FROM batch_stamps WHERE at < :before"), params)
    return {"versions": versions, "dataVersions": data, "seriesVersions": points, "changeLogs": logs}
