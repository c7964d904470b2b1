"""Undoing a batch's observations: the points it changed, put back or removed; the stamps of an object's points."""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

from batchsvc.core.changes import DataChanges, DataItem
from batchsvc.core.history import RECREATE, REMOVE, RESTORE, WAS_CREATED, WAS_REMOVED, WAS_UPDATED
from batchsvc.store.series.codec import _DECODED, T_OTHER, T_Z, Point, _day_number, _day_text, render_time
from batchsvc.store.series.writes import _TENANT_KEY, ChunkWriter, Stored, _array, _as_json, parse_chunk_key
from batchsvc.store.stamps import DataLog, Stamp, batches_of
from batchsvc.store.transaction import text_array


class PointKey(NamedTuple):
    """An observation a batch changed, as undo_items names it: its chunk (series id, first day
    since the epoch), its time (µs since the epoch) and the stamp of the batch being undone."""

    series_id: int
    day: int
    t: int
    stamp: int


# The objects of the series a rollback reads or writes are locked first, in id order, like every
# batch's: writers of a series are serialised by its object's row.
_LOCK_OBJECTS = f"""
SELECT o.id FROM objects o
WHERE o.tenant = %(tenant)s AND o.environment = %(environment)s AND o.id IN (
    SELECT s.object_id FROM series s
    WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND s.id = ANY(%(series)s::int[]))
ORDER BY o.id FOR UPDATE;
"""
# The current chunks and their archived points (superseded by the stamps asked for), of chunks
# named by (series id, first day).
_CHUNK_STATES = (
    _LOCK_OBJECTS
    + f"""
WITH k AS (SELECT DISTINCT k.id, k.day FROM unnest(%(series)s::int[], %(days)s::date[]) AS k(id, day)),
s AS (SELECT s.tenant_key, s.id, s.object_id, s.property, k.day
      FROM k JOIN series s ON s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND s.id = k.id)
SELECT s.tenant_key, s.object_id, s.property, s.id, s.day, NULL::int8, {_as_json("c")}, c.codes, c.stamps,
       c.extras::text
FROM s JOIN series_chunks c ON c.tenant_key = s.tenant_key AND c.series_id = s.id AND c.day = s.day
UNION ALL
SELECT s.tenant_key, s.object_id, s.property, s.id, s.day, v.superseded, {_as_json("v")}, v.codes, v.stamps,
       v.extras::text
FROM s JOIN series_versions v ON v.tenant_key = s.tenant_key AND v.series_id = s.id AND v.day = s.day
WHERE {{superseded}}
"""
)
_STATES_SINCE = _CHUNK_STATES.format(superseded="v.superseded >= %(stamp)s")
_STATES_SUPERSEDED_BY = _CHUNK_STATES.format(superseded="v.superseded = ANY(%(undone)s::int8[])")


class _ChunkStates(NamedTuple):
    tenant_key: int
    label: tuple[str, str]
    current: Stored | None
    archived: list[tuple[int, Stored]]  # (superseding stamp, the points it replaced or removed)


def _chunk_states(cursor, scope: dict, chunk_keys: list[tuple[int, int]], sql: str, **params) -> dict:
    """(series id, first day) -> _ChunkStates, for the chunks that exist or have archived points."""
    cursor.execute(
        sql,
        {
            **scope,
            **params,
            "series": _array([ident for ident, _ in chunk_keys]),
            "days": "{" + ",".join(_day_text(day) for _, day in chunk_keys) + "}",
        },
    )
    out: dict[tuple[int, int], _ChunkStates] = {}
    for tenant_key, obj, prop, ident, day, superseded, *chunk in cursor.fetchall():
        key = (ident, _day_number(day))
        states = out.get(key)
        if states is None:
            states = out[key] = _ChunkStates(tenant_key, (obj, prop), None, [])
        if superseded is None:
            out[key] = states._replace(current=Stored.of(*chunk))
        else:
            states.archived.append((superseded, Stored.of(*chunk)))
    return out


def _time_text(t: int, code: int, extra: dict | None) -> str:
    """An observation's time as it was written."""
    _, kind, offset = _DECODED[code]
    if kind != T_OTHER:
        return render_time(t, kind, offset)
    written = (extra or {}).get("time")
    return written if isinstance(written, str) else render_time(t, T_Z, 0)


def _logged_chunks(entries: dict) -> list[tuple[int, int]]:
    created, updated, removed = entries.get("points", ((), (), ()))
    return sorted({parse_chunk_key(key) for key in (*created, *updated, *removed)})


def undo_items(cursor, scope: dict, stamp: int, entries: dict) -> list[DataItem]:
    """Every observation the batch with `stamp` changed (its change log's `points` entries name
    the chunks), as the store has it now: created (the batch wrote it, nothing was there),
    updated (it wrote it over an earlier point) or removed; whether it is there now, whose
    write it is, whether its state before the batch is kept, and the batches that changed it
    since. Locks the objects of those series (id order) first, so the answer holds until the
    transaction ends."""
    chunk_keys = _logged_chunks(entries)
    if not chunk_keys:
        return []
    found = _chunk_states(cursor, scope, chunk_keys, _STATES_SINCE, stamp=stamp)
    pending = []
    stamps_seen: set[int] = set()
    for (ident, day), states in sorted(found.items()):
        # per time: the batch's own state, its state before the batch, the stamps that came after
        wrote: dict[int, tuple] = {}
        before: dict[int, tuple] = {}
        after: dict[int, set[int]] = {}
        for superseded, archived in states.archived:
            for t, _, code, made, extra in archived.points():
                if superseded == stamp:
                    if made != stamp:  # a point the batch itself wrote and replaced was never a state
                        before[t] = (code, extra)
                elif made == stamp:
                    wrote[t] = (code, extra)
                if superseded > stamp:
                    after.setdefault(t, set()).update(s for s in (made, superseded) if s > stamp)
        current = {}
        if states.current is not None:
            for t, _, code, made, extra in states.current.points():
                current[t] = made
                if made == stamp:
                    wrote[t] = (code, extra)
                elif made > stamp:
                    after.setdefault(t, set()).add(made)
        obj, prop = states.label
        for t in sorted(wrote.keys() | before.keys()):
            if t in wrote:
                change = WAS_UPDATED if t in before else WAS_CREATED
                code, extra = wrote[t]
            else:
                change = WAS_REMOVED
                code, extra = before[t]
            later = sorted(after.get(t, ()))
            stamps_seen.update(later)
            if t in current:
                stamps_seen.add(current[t])
            pending.append((obj, prop, t, ident, day, code, extra, change, current.get(t), t in before, later))
    batches = batches_of(cursor, scope, stamps_seen)
    items = []
    for obj, prop, t, ident, day, code, extra, change, made, kept_before, later in sorted(
        pending, key=itemgetter(0, 1, 2)
    ):
        current_by = batches[made][0] if made is not None and made in batches else None
        items.append(
            DataItem(
                kind="points",
                key=PointKey(ident, day, t, stamp),
                label=f"{obj}:{prop}:{_time_text(t, code, extra)}",
                object_id=obj,
                change=change,
                present=made is not None,
                current_by=current_by,
                before=kept_before,
                later=tuple(dict.fromkeys(batches[s][0] for s in later if s in batches)),
            )
        )
    return items


def apply_undo(cursor, scope: dict, actions: list[tuple[DataItem, str]], *, stamp: Stamp, log: DataLog) -> DataChanges:
    """Undo observations: REMOVE deletes one, RESTORE and RECREATE put back the state it had
    before the batch undone (the archived point that batch's stamp superseded). Written with the
    rollback's `stamp` through the same merge as a batch's writes: what it replaces or removes is
    archived, an observation already as it should be is left alone, the chunks are logged."""
    removes: dict[tuple[int, int], set[int]] = {}
    restores: dict[tuple[int, int], dict[int, int]] = {}
    for item, action in actions:
        if item.kind != "points":
            continue
        key: PointKey = item.key
        chunk = (key.series_id, key.day)
        if action == REMOVE:
            removes.setdefault(chunk, set()).add(key.t)
        elif action in (RESTORE, RECREATE):
            restores.setdefault(chunk, {})[key.t] = key.stamp
    chunk_keys = sorted(removes.keys() | restores.keys())
    if not chunk_keys:
        return DataChanges()
    undone = sorted({s for wanted in restores.values() for s in wanted.values()})
    found = _chunk_states(cursor, scope, chunk_keys, _STATES_SUPERSEDED_BY, undone=_array(undone))
    writer = ChunkWriter(stamp)
    tenant_key = None
    for chunk in chunk_keys:
        states = found.get(chunk)
        if states is None:
            continue  # neither stored nor archived: nothing to do
        tenant_key = states.tenant_key
        wanted = restores.get(chunk, {})
        incoming: dict[int, Point] = {}
        for superseded, archived in states.archived:
            for t, value, code, _, extra in archived.points():
                if wanted.get(t) == superseded:
                    incoming[t] = (t, code, value, extra)
        writer.write(
            chunk[0],
            chunk[1],
            states.current,
            [incoming[t] for t in sorted(incoming)],
            label=states.label,
            remove=frozenset(removes.get(chunk, ())),
        )
    return writer.flush(cursor, tenant_key, log)


_DATA_WRITERS = f"""
SELECT s.object_id, array_agg(DISTINCT x.stamp)
FROM series s JOIN series_chunks c ON c.tenant_key = s.tenant_key AND c.series_id = s.id,
     unnest(c.stamps) AS x(stamp)
WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND s.object_id = ANY(%(ids)s::text[])
GROUP BY s.object_id
"""


def data_writers(cursor, scope: dict, object_ids: list[str]) -> dict[str, set[int]]:
    """object id -> the stamps of its current observations (0: written before history was kept)."""
    if not object_ids:
        return {}
    cursor.execute(_DATA_WRITERS, {**scope, "ids": text_array(sorted(set(object_ids)))})
    return {obj: set(stamps) for obj, stamps in cursor.fetchall()}
