"""The batch path's SQL: the batch-id lock and summary, the object upsert; typed data through its modules."""

from __future__ import annotations

from datetime import date, datetime

import orjson

from batchsvc.core.changes import DataChanges, DataItem
from batchsvc.core.identity import Scope
from batchsvc.core.objects import ObjectWrite
from batchsvc.core.summaries import Claimed
from batchsvc.core.typed import DataWrites
from batchsvc.store import datarows, series, stamps
from batchsvc.store.history import HistoryWrites
from batchsvc.store.stamps import DataLog, Stamp
from batchsvc.store.transaction import TransactionCursor, prepared, text_array

# --- Summaries -------------------------------------------------------------------------------
# The advisory lock serialises concurrent posts of one batch id (the second waits, then replays);
# the row lock guards against a concurrent delete. Both travel in one round trip, with BEGIN.
LOCK_ID = prepared("batchsvc_lock_batch_id", "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))", key="text")
CLAIM = prepared(
    "batchsvc_claim_summary",
    """
SELECT status, body_hash, doc FROM batch_summaries
WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = %(id)s
FOR UPDATE
""",
    tenant="text",
    environment="text",
    id="text",
)
# The summary statements also fill in the summary's object counts from what this transaction's
# upsert recorded (in the transaction-local setting batchsvc.object_counts), so a plain batch
# still needs no round trip of its own for the upsert: core renders the summary before the
# database has answered it.
_STORE_SQL = """
WITH counted AS (SELECT NULLIF(current_setting('batchsvc.object_counts', true), '')::jsonb AS c),
stored AS (
    INSERT INTO batch_summaries AS s (tenant, environment, id, timestamp, name, "user", status, source, body_hash, doc)
    SELECT %(tenant)s, %(environment)s, %(id)s, %(timestamp)s, %(name)s, %(user)s, %(status)s, %(source)s,
           %(body_hash)s,
           CASE WHEN counted.c IS NULL THEN %(doc)s
                ELSE jsonb_set(%(doc)s, '{{counts,objects}}', (%(doc)s #> '{{counts,objects}}') || counted.c)
           END
    FROM counted
    ON CONFLICT (tenant, environment, id) DO UPDATE SET
        timestamp = excluded.timestamp, name = excluded.name, "user" = excluded."user", status = excluded.status,
        source = excluded.source, body_hash = excluded.body_hash, doc = excluded.doc
    {where}
    RETURNING 1
)
SELECT EXISTS (SELECT FROM stored), (SELECT c::text FROM counted)
"""
_STORE_TYPES = dict(
    tenant="text",
    environment="text",
    id="text",
    timestamp="timestamptz",
    name="text",
    user="text",
    status="text",
    source="text",
    body_hash="text",
    doc="jsonb",
)
STORE_SUMMARY = prepared("batchsvc_store_summary", _STORE_SQL.format(where=""), **_STORE_TYPES)
# Stores only where no summary, or a failed one, holds the id: the optimistic path of a new batch.
STORE_NEW_SUMMARY = prepared(
    "batchsvc_store_new_summary", _STORE_SQL.format(where="WHERE s.status = 'failed'"), **_STORE_TYPES
)

# --- Objects ---------------------------------------------------------------------------------
# One statement writes every object row of a batch (SPEC §3, §12). Rows arrive as parallel
# arrays (one bound parameter each, no per-row SQL text to build or parse) and are upserted in
# `_id` order, so concurrent batches lock shared objects in the same order (§3.9). A stored row
# is merged or replaced where it conflicts (`replaced` names the replaced ids as JSON object
# keys, a binary search per row; `replace_all` a batch of replaces), so a batch mixing both modes
# is one ordered pass too. A row whose document comes out as stored is not written at all (the
# WHERE of DO UPDATE): no new version, no new tuple, its `_timestamp` and `_batch` stay. A row
# that changes gets the next version; the migration's statement trigger on `objects`
# (batchsvc_archive_objects) moves its previous state to `object_versions`, from the rows the
# statement itself replaced: no lookup of its own, nothing for rows that did not change, and
# never a stale state when concurrent batches take turns on a row. The batch's change log
# (`batch_changes`) lists what it created and updated; a new row adds its id there and nothing
# more to history.
_UPSERT = """
WITH up AS (
    INSERT INTO objects AS o (tenant, environment, id, doc, version, created, updated, "user", batch, reason)
    SELECT %(tenant)s, %(environment)s, v.id, v.doc::jsonb, 1, %(now)s, %(now)s, %(user)s, %(batch)s, %(reason)s
    FROM ROWS FROM (unnest(%(ids)s::text[]), json_array_elements(%(docs)s::json)) AS v(id, doc)
    ORDER BY v.id
    ON CONFLICT (tenant, environment, id) DO UPDATE SET
        doc = {new_doc},
        version = o.version + 1,
        updated = excluded.updated,
        "user" = excluded."user",
        batch = excluded.batch,
        reason = excluded.reason,
        restored_at = NULL,
        restored_by = NULL
    WHERE o.doc IS DISTINCT FROM {new_doc}
    RETURNING o.id, o.version
),
counted AS (
    SELECT count(*) FILTER (WHERE version = 1) AS created,
           count(*) FILTER (WHERE version > 1) AS updated,
           COALESCE(array_agg(id) FILTER (WHERE version = 1), '{{}}') AS created_ids,
           COALESCE(array_agg(id) FILTER (WHERE version > 1), '{{}}') AS updated_ids
    FROM up
),
logged AS (
    INSERT INTO batch_changes AS l (tenant, environment, batch, kind, timestamp, created, updated, removed)
    SELECT %(tenant)s, %(environment)s, %(batch)s, 'objects', %(now)s, created_ids, updated_ids, '{{}}'
    FROM counted WHERE created + updated > 0
    ON CONFLICT (tenant, environment, batch, kind) DO UPDATE SET
        timestamp = excluded.timestamp, created = excluded.created, updated = excluded.updated,
        removed = excluded.removed
)
SELECT set_config('batchsvc.object_counts', json_build_object(
    'created', created, 'updated', updated, 'unchanged', cardinality(%(ids)s::text[]) - created - updated)::text, true)
FROM counted
""".format(
    new_doc="CASE WHEN %(replace_all)s OR %(replaced)s ? excluded.id THEN excluded.doc ELSE o.doc || excluded.doc END"
)
UPSERT_OBJECTS = prepared(
    "batchsvc_upsert_objects",
    _UPSERT,
    tenant="text",
    environment="text",
    now="timestamptz",
    user="text",
    batch="text",
    reason="text",
    ids="text[]",
    docs="json",
    replace_all="boolean",
    replaced="jsonb",
)
_LOCK_OBJECTS = """
SELECT id, CASE WHEN id = ANY(%(read)s) THEN doc END FROM objects
WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = ANY(%(ids)s)
ORDER BY id FOR UPDATE
"""

# Every connection of the batch path prepares these, once (see transaction.raw_transaction).
PREPARED = (LOCK_ID, CLAIM, STORE_SUMMARY, STORE_NEW_SUMMARY, UPSERT_OBJECTS)


class BatchStore:
    """One batch transaction's view of the store, bound to one tenant and environment.

    Statements whose results nobody reads are deferred: they travel with the next message."""

    def __init__(self, cursor: TransactionCursor, scope: Scope):
        self._cursor = cursor
        self._scope = {"tenant": scope.tenant, "environment": scope.environment}
        self.scope = scope
        self.history = HistoryWrites(cursor, scope)  # rollbacks and object deletes (store/history.py)
        self.log = DataLog()  # what this transaction's data writes changed, written with the summary
        self._stamp: Stamp | None = None
        self._stored_curves: dict = {}  # read for `_merge` curves, not read again by the write

    # summaries
    def lock_id(self, batch_id: str) -> None:
        """Serialise concurrent posts of this batch id until the transaction ends."""
        self._cursor.defer(LOCK_ID, {"key": f"{self.scope.tenant}\x1f{self.scope.environment}\x1f{batch_id}"})

    def claim(self, batch_id: str) -> Claimed | None:
        """Take the batch id for this transaction and return its stored summary, if any."""
        self.lock_id(batch_id)
        self._cursor.run(CLAIM, {**self._scope, "id": batch_id})
        row = self._cursor.fetchone()
        return Claimed(*row) if row else None

    def store_summary(self, doc: dict, *, finished: datetime, body_hash: str) -> None:
        """Insert the summary, or overwrite one under the same id; fills in doc's object counts."""
        self._store(STORE_SUMMARY, doc, finished, body_hash)

    def store_new_summary(self, doc: dict, *, finished: datetime, body_hash: str) -> bool:
        """Insert the summary, or overwrite a failed one; False, storing nothing, when a summary
        that did not fail holds the id. Fills in doc's object counts."""
        return self._store(STORE_NEW_SUMMARY, doc, finished, body_hash)

    def _store(self, statement, doc: dict, finished: datetime, body_hash: str) -> bool:
        if self._stamp is not None and not self.log:
            stamps.release(self._cursor, self._scope, self._stamp)  # its data writes changed nothing
        self.log.flush(self._cursor, self._scope, doc["_id"], finished)
        self._cursor.run(statement, self._summary_row(doc, finished, body_hash))
        stored, counts = self._cursor.fetchone()
        if counts is not None:
            doc["counts"]["objects"].update(orjson.loads(counts))
        return stored

    def _summary_row(self, doc: dict, finished: datetime, body_hash: str) -> dict:
        return {
            **self._scope,
            "id": doc["_id"],
            "timestamp": finished,
            "name": doc["name"],
            "user": doc["user"],
            "status": doc["status"],
            "source": doc["source"],
            "body_hash": body_hash,
            "doc": orjson.dumps(doc).decode(),
        }

    # objects
    def lock_objects(self, ids: set[str], read: set[str]) -> dict[str, dict | None]:
        """Lock the stored rows among `ids` in `_id` order; id -> document (for ids in `read`)."""
        self._cursor.execute(_LOCK_OBJECTS, {**self._scope, "ids": sorted(ids), "read": sorted(read)})
        return dict(self._cursor.fetchall())

    def upsert_objects(self, rows: list[ObjectWrite], *, user: str, batch_id: str, now: datetime, reason: str) -> None:
        """One statement for every row: merged or replaced, unchanged rows left alone, the change
        logged; its counts reach the summary statement (which is what reads them)."""
        if not rows:
            return
        replaced = [row.id for row in rows if row.replace]
        self._cursor.defer(
            UPSERT_OBJECTS,
            {
                **self._scope,
                "now": now,
                "user": user,
                "batch": batch_id,
                "reason": reason,
                "ids": text_array([row.id for row in rows]),
                "docs": orjson.dumps([row.doc for row in rows]).decode(),  # one JSON array, split by the server
                "replace_all": len(replaced) == len(rows),
                "replaced": "{}"
                if len(replaced) in (0, len(rows))
                else orjson.dumps(dict.fromkeys(replaced, 1)).decode(),
            },
        )

    # typed data
    def stamp(self, batch_id: str, now: datetime) -> Stamp:
        """This transaction's stamp (taken on first use): what its data writes are marked with."""
        if self._stamp is None:
            self._stamp = stamps.allocate(self._cursor, self._scope, batch_id, now)
        return self._stamp

    def stored_curves(self, keys: list[tuple[str, str, date]]) -> dict[tuple[str, str, date], dict]:
        """The stored curves that `_merge` curves merge into: (object, prop, date) -> curve."""
        found = datarows.stored_curves(self._cursor, self._scope, keys)
        self._stored_curves.update(found)  # write_data's change check reuses them
        return {key: row.doc for key, row in found.items()}

    def write_data(
        self, wiped_objects: list[str], writes: dict[str, DataWrites], *, batch_id: str, now: datetime
    ) -> DataChanges:
        """Every data row of a batch: the data of replaced objects (`wiped_objects`) and series
        (`_replace`) replaced whole, the rest merged; what changed is archived, stamped and logged."""
        changes = DataChanges()
        if not wiped_objects and not writes:
            return changes
        stamp = self.stamp(batch_id, now)
        wiped = sorted(wiped_objects)
        changes.add(series.write_series(self._cursor, self._scope, writes, wiped=wiped, stamp=stamp, log=self.log))
        changes.add(
            datarows.write_rows(
                self._cursor, self._scope, writes, wiped=wiped, stamp=stamp, log=self.log, known=self._stored_curves
            )
        )
        return changes

    def remove_data(self, object_ids: list[str], *, batch_id: str, now: datetime) -> DataChanges:
        """Remove every data row of these objects (they are being removed), archived and logged."""
        return self.write_data(object_ids, {}, batch_id=batch_id, now=now)

    # undoing a batch's data
    def data_items(self, batch_id: str, log: dict[str, tuple[list[str], list[str], list[str]]]) -> list[DataItem]:
        """Every data item batch `batch_id` changed, as it is now (from its change log `log`)."""
        stamp = stamps.stamp_of(self._cursor, self._scope, batch_id)
        if stamp is None:
            return []
        items = []
        for module, kinds in _DATA_MODULES:
            entries = {kind: log[kind] for kind in kinds if kind in log}
            if entries:
                items += module.undo_items(self._cursor, self._scope, stamp, entries)
        return items

    def undo_data(self, actions: list[tuple[DataItem, str]], *, batch_id: str, now: datetime) -> DataChanges:
        """Put the items back as they were before the batch being undone (REMOVE, RESTORE, RECREATE)."""
        changes = DataChanges()
        if not actions:
            return changes
        stamp = self.stamp(batch_id, now)
        for module, kinds in _DATA_MODULES:
            mine = [(item, action) for item, action in actions if item.kind in kinds]
            if mine:
                changes.add(module.apply_undo(self._cursor, self._scope, mine, stamp=stamp, log=self.log))
        return changes

    def data_writers(self, object_ids: list[str]) -> dict[str, set[str]]:
        """The batches whose writes the current data of these objects is (object id -> batch ids)."""
        if not object_ids:
            return {}
        found: dict[str, set[int]] = {}
        for module, _ in _DATA_MODULES:
            for ident, marks in module.data_writers(self._cursor, self._scope, object_ids).items():
                found.setdefault(ident, set()).update(marks)
        names = stamps.batches_of(self._cursor, self._scope, {mark for marks in found.values() for mark in marks})
        return {ident: {names[mark][0] for mark in marks if mark in names} for ident, marks in found.items()}


# The data kinds and the module that stores each (the same functions in each).
_DATA_MODULES = ((series, ("points",)), (datarows, ("curves", "matrices", "events")))
