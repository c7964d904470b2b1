"""Curves, matrices and events: one row per curve date, matrix date or event (SPEC §6, §12)."""

from __future__ import annotations

from datetime import date

import orjson

from batchsvc.core.changes import DataChanges
from batchsvc.core.typed import DataWrites
from batchsvc.store.stamps import DataLog, Stamp
from batchsvc.store.transaction import TransactionCursor, text_array

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


def stored_curves(cursor: TransactionCursor, scope: dict, keys: list[tuple[str, str, date]]) -> dict:
    """The stored curves that `_merge` curves merge into: (object, prop, date) -> curve."""
    if not keys:
        return {}
    cursor.execute(
        _STORED_CURVES, {**scope, "o": [k[0] for k in keys], "p": [k[1] for k in keys], "d": [k[2] for k in keys]}
    )
    return {(o, p, d): doc for o, p, d, doc in cursor.fetchall()}


def write_rows(
    cursor: TransactionCursor,
    scope: dict,
    writes: dict[str, DataWrites],
    *,
    wiped: list[str],
    stamp: Stamp,
    log: DataLog,
) -> DataChanges:
    """The curve, matrix and event rows of a batch; the rows of `wiped` objects go first."""
    changes = DataChanges()
    if wiped:
        for table in _DATA_TABLES:
            cursor.defer(_DELETE_DATA[table], {**scope, "ids": wiped})
    curves = [(o, p, day, curve) for o, w in writes.items() for (p, day), (curve, _) in w.curves.items()]
    _upsert_rows(cursor, scope, _DATED.format(table="curves"), curves)
    matrices = [(o, p, day, matrix) for o, w in writes.items() for (p, day), matrix in w.matrices.items()]
    _upsert_rows(cursor, scope, _DATED.format(table="matrices"), matrices)
    events = [(o, p, i, instant, e) for o, w in writes.items() for (p, i), (instant, e) in w.events.items()]
    _upsert_rows(cursor, scope, _EVENTS, events)
    changes.tallies["curves"].created += len(curves)
    changes.tallies["matrices"].created += len(matrices)
    changes.tallies["events"].created += len(events)
    return changes


def _upsert_rows(cursor: TransactionCursor, scope: dict, sql: str, rows: list[tuple]) -> None:
    """Upsert `rows` (object, property, key, [time,] document) in key order, in one statement."""
    if not rows:
        return
    rows.sort(key=lambda row: row[:3])
    columns = list(zip(*rows, strict=True))
    params = {
        **scope,
        "objects": text_array(columns[0]),
        "props": text_array(columns[1]),
        "keys": text_array([_as_text(key) for key in columns[2]]),
        "docs": orjson.dumps(columns[-1]).decode(),
    }
    if len(columns) == 5:
        params["times"] = text_array([instant.isoformat() for instant in columns[3]])
    cursor.defer(sql, params)


# --- undoing a batch (SPEC §12) ------------------------------------------------------------------
# Not yet kept: the history of this data arrives with its own change (stubs until then).


def undo_items(cursor, scope: dict, stamp: int, entries: dict) -> list:
    return []


def apply_undo(cursor, scope: dict, actions: list, *, stamp: Stamp, log: DataLog) -> DataChanges:
    return DataChanges()


def data_writers(cursor, scope: dict, object_ids: list[str]) -> dict[str, set[int]]:
    return {}
