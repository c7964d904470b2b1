"""The batch path's SQL: the batch-id lock and summary, the object upsert, the typed data rows."""

from __future__ import annotations

from datetime import date, datetime

import orjson

from batchsvc.core.identity import Scope
from batchsvc.core.objects import ObjectWrite
from batchsvc.core.summaries import Claimed
from batchsvc.core.typed import DataWrites
from batchsvc.store import series
from batchsvc.store.history import HistoryWrites
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

# --- Typed data ------------------------------------------------------------------------------
# Each table's rows go in one statement as parallel arrays: key columns as array literals, the
# documents as one JSON array split by the server. No per-row SQL to build or to parse. Series
# are packed into chunks (store/series.py).
_DATED = """
INSERT INTO {table} (tenant, environment, object_id, property, ondate, doc)
SELECT %(tenant)s, %(environment)s, v.o, v.p, v.k, v.d::jsonb
FROM ROWS FROM (unnest(%(objects)s::text[]), unnest(%(props)s::text[]), unnest(%(keys)s::date[]),
                json_array_elements(%(docs)s::json)) AS v(o, p, k, d)
ON CONFLICT (tenant, environment, object_id, property, ondate) DO UPDATE SET doc = excluded.doc
"""
_EVENTS = """
INSERT INTO events (tenant, environment, object_id, property, event_id, eventtime, doc)
SELECT %(tenant)s, %(environment)s, v.o, v.p, v.k, v.t, v.d::jsonb
FROM ROWS FROM (unnest(%(objects)s::text[]), unnest(%(props)s::text[]), unnest(%(keys)s::text[]),
                unnest(%(times)s::timestamptz[]), json_array_elements(%(docs)s::json)) AS v(o, p, k, t, d)
ON CONFLICT (tenant, environment, object_id, property, event_id) DO UPDATE
SET eventtime = excluded.eventtime, doc = excluded.doc
"""
_DATA_TABLES = ("curves", "matrices", "events")
_DELETE_DATA = {
    table: f"DELETE FROM {table} WHERE tenant = %(tenant)s AND environment = %(environment)s "
    "AND object_id = ANY(%(ids)s)"
    for table in _DATA_TABLES
}
_STORED_CURVES = (
    "SELECT object_id, property, ondate, doc FROM curves WHERE tenant = %(tenant)s AND environment = %(environment)s "
    "AND (object_id, property, ondate) IN (SELECT * FROM unnest(%(o)s::text[], %(p)s::text[], %(d)s::date[]))"
)


def _as_text(value) -> str:
    return value if isinstance(value, str) else value.isoformat()


class BatchStore:
    """One batch transaction's view of the store, bound to one tenant and environment.

    Statements whose results nobody reads are deferred: they travel with the next message."""

    def __init__(self, cursor: TransactionCursor, scope: Scope):
        self._cursor = cursor
        self._scope = {"tenant": scope.tenant, "environment": scope.environment}
        self.scope = scope
        self.history = HistoryWrites(cursor, scope)  # rollbacks and object deletes (store/history.py)

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
    def stored_curves(self, keys: list[tuple[str, str, date]]) -> dict[tuple[str, str, date], dict]:
        """The stored curves that `_merge` curves merge into: (object, prop, date) -> curve."""
        if not keys:
            return {}
        self._cursor.execute(
            _STORED_CURVES,
            {**self._scope, "o": [k[0] for k in keys], "p": [k[1] for k in keys], "d": [k[2] for k in keys]},
        )
        return {(o, p, d): doc for o, p, d, doc in self._cursor.fetchall()}

    def write_data(self, wiped_objects: list[str], writes: dict[str, DataWrites]) -> None:
        """Every data row of a batch: the wipes of replaced objects and series, then one
        statement per table, rows in key order."""
        if wiped_objects:
            ids = sorted(wiped_objects)
            for table in _DATA_TABLES:
                self._cursor.defer(_DELETE_DATA[table], {**self._scope, "ids": ids})
            self._cursor.defer(series.WIPE_OBJECTS, {**self._scope, "ids": ids})
        series_wipes = sorted((obj, prop) for obj, data in writes.items() for prop in data.wipe_props)
        if series_wipes:
            self._cursor.defer(
                series.WIPE_SERIES,
                {
                    **self._scope,
                    "objects": text_array([o for o, _ in series_wipes]),
                    "props": text_array([p for _, p in series_wipes]),
                },
            )
        series.write_series(self._cursor, self._scope, writes)
        curves = [(o, p, day, curve) for o, w in writes.items() for (p, day), (curve, _) in w.curves.items()]
        self._upsert_rows(_DATED.format(table="curves"), curves)
        matrices = [(o, p, day, matrix) for o, w in writes.items() for (p, day), matrix in w.matrices.items()]
        self._upsert_rows(_DATED.format(table="matrices"), matrices)
        events = [(o, p, i, instant, e) for o, w in writes.items() for (p, i), (instant, e) in w.events.items()]
        self._upsert_rows(_EVENTS, events)

    def _upsert_rows(self, sql: str, rows: list[tuple]) -> None:
        """Upsert `rows` (object, property, key, [time,] document) in key order, in one statement."""
        if not rows:
            return
        rows.sort(key=lambda row: row[:3])
        columns = list(zip(*rows, strict=True))
        params = {
            **self._scope,
            "objects": text_array(columns[0]),
            "props": text_array(columns[1]),
            "keys": text_array([_as_text(key) for key in columns[2]]),
            "docs": orjson.dumps(columns[-1]).decode(),
        }
        if len(columns) == 5:
            params["times"] = text_array([instant.isoformat() for instant in columns[3]])
        self._cursor.defer(sql, params)
