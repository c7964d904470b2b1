"""Curves, matrices and events: one row per curve date, matrix date or event, with their history (SPEC §6, §12).

A row holds an item's current state and the stamp of the batch that wrote it (store/stamps.py).
A write compares each item with the stored row: a new one is created, an equal one (a document
equal as jsonb compares it, the rule objects follow; for an event also the same eventtime) is
left alone — not rewritten, its stamp kept, reported in `DataChanges.kept` — and a different
one is updated: its previous state goes to `data_versions` (kind, key text, `made` = its stamp,
`superseded`/`superseded_at` = the writing stamp) and the row is rewritten with the new stamp. The rows of replaced objects (`wiped`) that
the batch does not send again are archived the same way and deleted (removed). So history grows
with changes only: re-sending an unchanged curve writes no tuple and archives nothing.

Keys: a curve's or matrix's is its date (`datetime.date`; `data_versions.key` the ISO text
`YYYY-MM-DD`), an event's its id. The change log (`batch_changes`, kinds `curves`, `matrices`,
`events`) names an item by the JSON text `[object id, property, key]`, the key as ISO date text
or the event id, e.g. `["AAA","FWD","2024-01-02"]`; `log_key` and `parse_log_key` convert.

As of an instant T (store/reads.py) an item's state is the current row when its stamp's time is
<= T, or the archived state whose `made` time is <= T < `superseded_at`; stamp 0 (written before
history) and stamps whose `batch_stamps` row is gone count as made at -infinity.

Undoing a batch (core/history.py drives it): `undo_items` finds what the batch changed as the
store has it now, `apply_undo` removes items or puts back the states the batch superseded, written
like any write (so undoing that undo re-applies the batch), `data_writers` tells which stamps wrote
an object's current data.

Every statement binds arrays (parallel columns, documents as one JSON array split by the server)
and runs in key order; one round trip reads the stored rows of all three kinds, the writes are
deferred (they travel with the next statement).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import NamedTuple

import orjson

from batchsvc.core.changes import DataChanges, DataItem
from batchsvc.core.documents import same_json
from batchsvc.core.history import RECREATE, REMOVE, RESTORE, WAS_CREATED, WAS_REMOVED, WAS_UPDATED
from batchsvc.core.typed import DataWrites
from batchsvc.store.stamps import DataLog, Stamp, batches_of
from batchsvc.store.transaction import TransactionCursor, int_array, text_array

ROW_KINDS = ("curves", "matrices", "events")  # the data kinds of this module, each its own table
_DATED = frozenset({"curves", "matrices"})


class RowRef(NamedTuple):
    """An item a batch changed, as undo_items names it (`DataItem.key`): its object, property
    and key, and the stamp of the batch whose change is to be undone."""

    object_id: str
    property: str
    key: date | str
    undone: int


class _Stored(NamedTuple):
    """An item's stored row: its stamp, eventtime (events) and document (None when not read: a
    wiped object's row that the batch does not send again)."""

    stamp: int
    eventtime: datetime | None
    doc: dict | None


def _key_text(key: date | str) -> str:
    return key if isinstance(key, str) else key.isoformat()


def _key_of(kind: str, text: str) -> date | str:
    return date.fromisoformat(text) if kind in _DATED else text


def log_key(object_id: str, prop: str, key: date | str) -> str:
    """The change log's text for an item: `["OBJ","PROP","YYYY-MM-DD"]` or `["OBJ","LIST","EVENTID"]`."""
    return orjson.dumps([object_id, prop, _key_text(key)]).decode()


def parse_log_key(kind: str, text: str) -> tuple[str, str, date | str]:
    object_id, prop, key = orjson.loads(text)
    return object_id, prop, _key_of(kind, key)


def label(object_id: str, prop: str, key: date | str) -> str:
    """How people name an item: OBJ:PROP:YYYY-MM-DD (curves, matrices), OBJ:LIST:EVENTID (events)."""
    return f"{object_id}:{prop}:{_key_text(key)}"


# --- Reading the stored rows -------------------------------------------------------------------
# Keys travel as parallel text arrays per kind (`<kind>_o`, `_p`, `_k`; dates as ISO text, cast
# where they meet the date column). Each key finds its row by an index probe of its own (LATERAL
# ... LIMIT 1 keeps the planner from a hash join over the whole table when its statistics are
# behind), so the cost follows the batch, not what the table holds. (Which index serves the probe
# is still the planner's: before a table's first ANALYZE it may take the events' time index.)
# Each read branch returns (kind, object, property, key text, stamp, eventtime, document text),
# NULL where it has nothing to say; the batch compares (core.documents.same_json: equal as jsonb
# compares documents, the rule of object writes), so what a batch sends travels once, with its
# write, and a new item costs its key alone.
_TABLE = {
    "curves": ("curves", "ondate", "NULL::timestamptz"),
    "matrices": ("matrices", "ondate", "NULL::timestamptz"),
    "events": ("events", "event_id", "r.eventtime"),
}
_IN_SCOPE = "r.tenant = %(tenant)s AND r.environment = %(environment)s"


def _keyed_rows(kind: str, prefix: str = "") -> str:
    """FROM the kind's key arrays (`<prefix><kind>_o/_p/_k`) as `k`, each with its stored row `r`
    (probed by its primary key; none when the key has no row)."""
    table, key, _ = _TABLE[kind]
    cast = "::date" if kind in _DATED else ""
    arrays = ", ".join(f"%({prefix}{kind}_{name})s::text[]" for name in ("o", "p", "k"))
    return (
        f"unnest({arrays}) AS k(o, p, k) CROSS JOIN LATERAL (SELECT * FROM {table} r WHERE {_IN_SCOPE} "
        f"AND r.object_id = k.o AND r.property = k.p AND r.{key} = k.k{cast} LIMIT 1) AS r"
    )


def _read_keyed(kind: str) -> str:
    _, _, eventtime = _TABLE[kind]
    return f"SELECT '{kind}'::text, k.o, k.p, k.k, r.stamp, {eventtime}, r.doc::text FROM {_keyed_rows(kind)}"


def _read_wiped(kind: str) -> str:
    table, _, eventtime = _TABLE[kind]
    key = "to_char(r.ondate, 'YYYY-MM-DD')" if kind in _DATED else "r.event_id"
    return (
        f"SELECT '{kind}'::text, r.object_id, r.property, {key}, r.stamp, {eventtime}, NULL::text "
        f"FROM {table} r WHERE {_IN_SCOPE} AND r.object_id = ANY(%(wiped)s::text[])"
    )


_TARGET = "~"  # marks the rows of _READ_TARGETS
# apply_undo also reads the states it puts back: for each key, the archived state that the undone
# batch's stamp (`t_s`) superseded.
_READ_TARGETS = f"""SELECT '{_TARGET}' || v.kind, v.object_id, v.property, v.key, v.made, v.eventtime, v.doc::text
FROM unnest(%(t_kind)s::text[], %(t_o)s::text[], %(t_p)s::text[], %(t_k)s::text[], %(t_s)s::int8[])
     AS t(kind, o, p, k, s)
CROSS JOIN LATERAL (
    SELECT * FROM data_versions v
    WHERE v.tenant = %(tenant)s AND v.environment = %(environment)s
      AND v.kind = t.kind AND v.object_id = t.o AND v.property = t.p AND v.key = t.k AND v.superseded = t.s
    LIMIT 1
) AS v"""
_READ_KEYED = {kind: _read_keyed(kind) for kind in ROW_KINDS}
_READ_WIPED = {kind: _read_wiped(kind) for kind in ROW_KINDS}


def _key_params(keys: dict[str, list[tuple[str, str, date | str]]], prefix: str = "") -> dict:
    """The key arrays of each kind's keys (sorted), named `<prefix><kind>_o/_p/_k`."""
    params = {}
    for kind in keys:
        rows = sorted(keys[kind])
        params[f"{prefix}{kind}_o"] = text_array(o for o, _, _ in rows)
        params[f"{prefix}{kind}_p"] = text_array(p for _, p, _ in rows)
        params[f"{prefix}{kind}_k"] = text_array(_key_text(k) for _, _, k in rows)
    return params


def _read(cursor: TransactionCursor, branches: list[str], params: dict) -> dict[str, dict[tuple, _Stored]]:
    """Run the read branches as one statement: kind -> (object, property, key) -> _Stored (kinds
    marked `~`: apply_undo's targets)."""
    found: dict[str, dict[tuple, _Stored]] = {kind: {} for kind in ROW_KINDS}
    if not branches:
        return found
    cursor.execute("\nUNION ALL\n".join(branches), params)
    for kind, object_id, prop, key, stamp, eventtime, doc in cursor.fetchall():
        base = kind.removeprefix(_TARGET)
        item = (object_id, prop, _key_of(base, key))
        rows = found.setdefault(kind, {})
        if doc is None and item in rows:
            continue  # a wiped object's row the batch sends again: read with its document already
        rows[item] = _Stored(stamp, eventtime, orjson.loads(doc) if doc is not None else None)
    return found


# --- Writing -----------------------------------------------------------------------------------
def _archive_sql(kind: str) -> str:
    """Copy the stored states of the keys `a_<kind>_*` to data_versions, superseded by the stamp.

    A state this same stamp already archived stays (it is the one from before the transaction)."""
    table, _, eventtime = _TABLE[kind]
    return f"""
INSERT INTO data_versions (tenant, environment, kind, object_id, property, key, superseded, superseded_at,
                           made, eventtime, doc)
SELECT r.tenant, r.environment, '{kind}', r.object_id, r.property, k.k, %(stamp)s, %(at)s, r.stamp, {eventtime}, r.doc
FROM {_keyed_rows(kind, "a_")}
ON CONFLICT DO NOTHING
"""


def _delete_sql(kind: str) -> str:
    table, key, _ = _TABLE[kind]
    cast = "::date" if kind in _DATED else ""
    return f"""
DELETE FROM {table} r USING unnest(%(a_{kind}_o)s::text[], %(a_{kind}_p)s::text[], %(a_{kind}_k)s::text[]) AS k(o, p, k)
WHERE {_IN_SCOPE} AND r.object_id = k.o AND r.property = k.p AND r.{key} = k.k{cast}
"""


_ARCHIVE = {kind: _archive_sql(kind) for kind in ROW_KINDS}
_DELETE = {kind: _delete_sql(kind) for kind in ROW_KINDS}
_UPSERT_DATED = """
INSERT INTO {table} (tenant, environment, object_id, property, ondate, stamp, doc)
SELECT %(tenant)s, %(environment)s, v.o, v.p, v.k, %(stamp)s, v.d::jsonb
FROM ROWS FROM (unnest(%(objects)s::text[]), unnest(%(props)s::text[]), unnest(%(keys)s::date[]),
                json_array_elements(%(docs)s::json)) AS v(o, p, k, d)
ON CONFLICT (tenant, environment, object_id, property, ondate) DO UPDATE SET doc = excluded.doc, stamp = excluded.stamp
"""
_UPSERT = {
    "curves": _UPSERT_DATED.format(table="curves"),
    "matrices": _UPSERT_DATED.format(table="matrices"),
    "events": """
INSERT INTO events (tenant, environment, object_id, property, event_id, eventtime, stamp, doc)
SELECT %(tenant)s, %(environment)s, v.o, v.p, v.k, v.t, %(stamp)s, v.d::jsonb
FROM ROWS FROM (unnest(%(objects)s::text[]), unnest(%(props)s::text[]), unnest(%(keys)s::text[]),
                unnest(%(times)s::timestamptz[]), json_array_elements(%(docs)s::json)) AS v(o, p, k, t, d)
ON CONFLICT (tenant, environment, object_id, property, event_id) DO UPDATE
SET eventtime = excluded.eventtime, stamp = excluded.stamp, doc = excluded.doc
""",
}


def _apply(
    cursor: TransactionCursor,
    scope: dict,
    kind: str,
    sent: dict[tuple, tuple[datetime | None, dict]],
    stored: dict[tuple, _Stored],
    remove: Iterable[tuple],
    *,
    stamp: Stamp,
    log: DataLog,
    changes: DataChanges,
) -> None:
    """Write one kind's items: those of `sent` (key -> (eventtime, document)) that `stored` does
    not hold as they are, and delete the stored keys among `remove`; what is replaced or removed
    is archived first."""
    created, updated, kept = [], [], []
    for item, (eventtime, doc) in sent.items():
        old = stored.get(item)
        if old is None:
            created.append(item)
        elif old.eventtime == eventtime and same_json(old.doc, doc):
            kept.append(item)
        else:
            updated.append(item)
    removed = sorted(item for item in set(remove) if item in stored and item not in sent)
    archived = sorted(updated + removed)
    if archived:
        cursor.defer(
            _ARCHIVE[kind], {**scope, **_key_params({kind: archived}, "a_"), "stamp": stamp.value, "at": stamp.at}
        )
    if removed:
        cursor.defer(_DELETE[kind], {**scope, **_key_params({kind: removed}, "a_")})
    written = sorted(created + updated)
    if written:
        params = {
            **scope,
            "stamp": stamp.value,
            "objects": text_array(o for o, _, _ in written),
            "props": text_array(p for _, p, _ in written),
            "keys": text_array(_key_text(k) for _, _, k in written),
            "docs": orjson.dumps([sent[item][1] for item in written]).decode(),
        }
        if kind == "events":
            params["times"] = text_array(sent[item][0].isoformat() for item in written)
        cursor.defer(_UPSERT[kind], params)
    tally = changes.tallies[kind]
    tally.created += len(created)
    tally.updated += len(updated)
    tally.unchanged += len(kept)
    tally.removed += len(removed)
    by_property: dict[tuple[str, str], list] = {}
    for object_id, prop, key in kept:
        by_property.setdefault((object_id, prop), []).append(key)
    for (object_id, prop), keys in by_property.items():
        changes.keep(kind, object_id, prop, keys)
    if created or updated or removed:
        log.add(
            kind,
            created=(log_key(*item) for item in created),
            updated=(log_key(*item) for item in updated),
            removed=(log_key(*item) for item in removed),
        )


def _sent(writes: dict[str, DataWrites]) -> dict[str, dict[tuple, tuple[datetime | None, dict]]]:
    """kind -> (object, property, key) -> (eventtime, document) of a batch's rows."""
    return {
        "curves": {(o, p, day): (None, curve) for o, w in writes.items() for (p, day), (curve, _) in w.curves.items()},
        "matrices": {(o, p, day): (None, matrix) for o, w in writes.items() for (p, day), matrix in w.matrices.items()},
        "events": {(o, p, i): (instant, e) for o, w in writes.items() for (p, i), (instant, e) in w.events.items()},
    }


def stored_curves(cursor: TransactionCursor, scope: dict, keys: list[tuple[str, str, date]]) -> dict:
    """The stored rows of curves (object, prop, date) -> _Stored: what `_merge` curves merge into,
    handed back to `write_rows` (as `known`) so they are not read again."""
    if not keys:
        return {}
    return _read(cursor, [_READ_KEYED["curves"]], {**scope, **_key_params({"curves": keys})})["curves"]


def write_rows(
    cursor: TransactionCursor,
    scope: dict,
    writes: dict[str, DataWrites],
    *,
    wiped: list[str],
    stamp: Stamp,
    log: DataLog,
    known: dict[tuple, _Stored] | None = None,
) -> DataChanges:
    """The curve, matrix and event rows of a batch: new ones created, changed ones archived and
    rewritten, unchanged ones left alone (`kept`); the rows of `wiped` objects that the batch does
    not send again archived and deleted. One round trip reads what is stored (but the curves
    already read, `known`, from `stored_curves`); the writes are deferred."""
    changes = DataChanges()
    sent = _sent(writes)
    wiped_set = set(wiped)
    if not wiped and not any(sent.values()):
        return changes
    known = known or {}
    # Every row of a wiped object is read (keys only); those it sends again are read with their
    # documents like any other object's.
    keys = {kind: [item for item in items if kind != "curves" or item not in known] for kind, items in sent.items()}
    keys = {kind: items for kind, items in keys.items() if items}
    branches = [_READ_KEYED[kind] for kind in keys] + ([_READ_WIPED[kind] for kind in ROW_KINDS] if wiped else [])
    stored = _read(cursor, branches, {**scope, **_key_params(keys), "wiped": text_array(sorted(wiped_set))})
    stored["curves"].update((item, row) for item, row in known.items() if item in sent["curves"])
    for kind in ROW_KINDS:
        rows = stored[kind]
        remove = [item for item in rows if item[0] in wiped_set]
        _apply(cursor, scope, kind, sent[kind], rows, remove, stamp=stamp, log=log, changes=changes)
    return changes


# --- Undoing a batch ---------------------------------------------------------------------------
# The current rows of the keys, and every archived state of them: (kind, object, property, key,
# current stamp or made, superseded (NULL for a current row)).
_TRAILS = (
    "\nUNION ALL\n".join(
        f"SELECT '{kind}'::text, r.object_id, r.property, k.k, r.stamp, NULL::int8 FROM {_keyed_rows(kind)}"
        for kind in ROW_KINDS
    )
    + """
UNION ALL
SELECT v.kind, v.object_id, v.property, v.key, v.made, v.superseded
FROM unnest(%(t_kind)s::text[], %(t_o)s::text[], %(t_p)s::text[], %(t_k)s::text[]) AS t(kind, o, p, k)
CROSS JOIN LATERAL (
    SELECT * FROM data_versions v
    WHERE v.tenant = %(tenant)s AND v.environment = %(environment)s
      AND v.kind = t.kind AND v.object_id = t.o AND v.property = t.p AND v.key = t.k
    OFFSET 0
) AS v
"""
)


def _order(pair: tuple[str, tuple]) -> tuple:
    """(kind, (object, property, key, ...)) in kind and key order."""
    kind, (object_id, prop, key, *_) = pair
    return kind, object_id, prop, _key_text(key)


def _flat(items: Iterable[tuple[str, tuple]]) -> dict:
    """(kind, (object, property, key)) pairs, in the order given, as the parallel arrays
    `t_kind, t_o, t_p, t_k`."""
    rows = [(kind, o, p, _key_text(k)) for kind, (o, p, k) in items]
    return {f"t_{name}": text_array(row[i] for row in rows) for i, name in enumerate(("kind", "o", "p", "k"))}


def undo_items(
    cursor: TransactionCursor, scope: dict, stamp: int, entries: dict[str, tuple[list[str], list[str], list[str]]]
) -> list[DataItem]:
    """Every curve, matrix and event the batch with `stamp` changed, as the store has it now, from
    the batch's change log (`entries`: kind -> (created, updated, removed) log keys; other kinds
    are ignored). Batches change an object's data only under its row lock: a caller that holds
    the locks of the items' objects (core.history's rollback) reads what stays until it ends."""
    changed: dict[tuple[str, tuple], str] = {}
    for kind in ROW_KINDS:
        for change, keys in zip((WAS_CREATED, WAS_UPDATED, WAS_REMOVED), entries.get(kind, ([], [], [])), strict=True):
            for text in keys:
                changed[(kind, parse_log_key(kind, text))] = change
    if not changed:
        return []
    by_kind: dict[str, list[tuple]] = {}
    for kind, item in changed:
        by_kind.setdefault(kind, []).append(item)
    ordered = sorted(changed, key=_order)
    every_kind = {kind: by_kind.get(kind, []) for kind in ROW_KINDS}
    cursor.execute(_TRAILS, {**scope, **_key_params(every_kind), **_flat(ordered)})
    current: dict[tuple, int] = {}
    states: dict[tuple, list[tuple[int, int]]] = {}
    for kind, object_id, prop, key, made, superseded in cursor.fetchall():
        found = (kind, (object_id, prop, _key_of(kind, key)))
        if superseded is None:
            current[found] = made
        else:
            states.setdefault(found, []).append((made, superseded))
    later_stamps = {
        found: sorted(
            {s for pair in states.get(found, []) for s in pair if s > stamp}
            | ({current[found]} if current.get(found, 0) > stamp else set())
        )
        for found in changed
    }
    names = batches_of(cursor, scope, {*current.values(), *(s for ss in later_stamps.values() for s in ss)})
    items = []
    for found in ordered:
        kind, (object_id, prop, key) = found
        change = changed[found]
        now = current.get(found)
        later = [names[s][0] for s in later_stamps[found] if s in names]
        items.append(
            DataItem(
                kind=kind,
                key=RowRef(object_id, prop, key, stamp),
                label=label(object_id, prop, key),
                object_id=object_id,
                change=change,
                present=now is not None,
                current_by=names[now][0] if now in names else None,
                before=change != WAS_CREATED and any(s == stamp for _, s in states.get(found, [])),
                later=tuple(dict.fromkeys(later)),
            )
        )
    return items


def apply_undo(
    cursor: TransactionCursor, scope: dict, actions: list[tuple[DataItem, str]], *, stamp: Stamp, log: DataLog
) -> DataChanges:
    """Undo items undo_items found: REMOVE deletes the item, RESTORE and RECREATE put back the
    state the undone batch superseded. Written with `stamp` like any write (what is replaced or
    removed is archived, an item already in that state is left alone) and logged."""
    changes = DataChanges()
    removing: dict[str, list[tuple]] = {}
    targets: list[tuple[str, RowRef]] = []
    for item, action in actions:
        if item.kind not in ROW_KINDS:
            continue
        ref: RowRef = item.key
        if action == REMOVE:
            removing.setdefault(item.kind, []).append(ref[:3])
        elif action in (RESTORE, RECREATE):
            targets.append((item.kind, ref))
        else:
            raise ValueError(f"unknown undo action {action!r}")
    targets.sort(key=_order)
    keys = {kind: list(rows) for kind, rows in removing.items()}
    for kind, ref in targets:
        keys.setdefault(kind, []).append(ref[:3])
    branches = [_READ_KEYED[kind] for kind in keys] + ([_READ_TARGETS] if targets else [])
    params = {
        **scope,
        **_key_params(keys),
        **_flat((kind, ref[:3]) for kind, ref in targets),
        "t_s": int_array(ref.undone for _, ref in targets),
    }
    found = _read(cursor, branches, params)
    for kind in ROW_KINDS:
        put_back = {item: (state.eventtime, state.doc) for item, state in found.get(_TARGET + kind, {}).items()}
        _apply(
            cursor,
            scope,
            kind,
            put_back,
            found[kind],
            removing.get(kind, []),
            stamp=stamp,
            log=log,
            changes=changes,
        )
    return changes


def data_writers(cursor: TransactionCursor, scope: dict, object_ids: list[str]) -> dict[str, set[int]]:
    """object id -> the stamps of its current curves, matrices and events (0: written before history)."""
    if not object_ids:
        return {}
    branches = "\nUNION ALL\n".join(
        f"SELECT r.object_id, r.stamp FROM {kind} r WHERE {_IN_SCOPE} AND r.object_id = ANY(%(ids)s::text[])"
        for kind in ROW_KINDS
    )
    cursor.execute(
        f"SELECT object_id, array_agg(DISTINCT stamp) FROM ({branches}) AS s GROUP BY object_id",
        {**scope, "ids": text_array(sorted(set(object_ids)))},
    )
    return {object_id: set(found) for object_id, found in cursor.fetchall()}
