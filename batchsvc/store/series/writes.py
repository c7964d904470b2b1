"""Series writes: a batch's points merged into the stored chunks, changed chunks written, replaced points archived."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterator
from datetime import date
from math import copysign
from typing import NamedTuple

import orjson

from batchsvc.core.changes import DataChanges
from batchsvc.core.typed import DataWrites
from batchsvc.store.series.codec import (
    _TIME,
    DAY,
    DAY_US,
    EPOCH_ORDINAL,
    MONTH,
    Point,
    _day_number,
    _day_text,
    chunks,
    encode_series,
    pick_span,
)
from batchsvc.store.stamps import DataLog, Stamp
from batchsvc.store.transaction import text_array


def _array(values) -> str:
    """A PostgreSQL array literal of numbers (None as NULL), serialised by orjson: shortest
    round-trip floats, so every float64 arrives exactly."""
    return "{" + orjson.dumps(list(values)).decode()[1:-1].replace("null", "NULL") + "}"


def _compact(column):
    """A column of codes or stamps as stored: one element when every point shares it."""
    return column[:1] if column.count(column[0]) == len(column) else column


def chunk_key(series_id: int, first_day: int) -> str:
    """How the change log names a chunk: `<series id>/<its first day>` (store/series's own format)."""
    return f"{series_id}/{_day_text(first_day)}"


def parse_chunk_key(key: str) -> tuple[int, int]:
    ident, day = key.split("/", 1)
    return int(ident), date.fromisoformat(day).toordinal() - EPOCH_ORDINAL


def _load_extras(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # numbers orjson cannot hold (JSONB writes 1e300 out in full)
        return json.loads(text)


def _numbers(text: str) -> list:
    """A chunk's values from their JSON text. A whole float prints as an integer ("1"), which
    compares and is stored back the same; but -0.0 prints "-0", which JSON reads as 0: then
    each value is read as a float."""
    if "-0," in text or "-0]" in text:
        return [None if value == "null" else float(value) for value in text[1:-1].split(",")]
    return orjson.loads(text)


class Stored(NamedTuple):
    """A chunk (or an archived part of one) as read: codes and stamps one per point, or one for all."""

    times: list[int]
    vals: list
    codes: list[int]
    stamps: list[int]
    extras: dict | None

    @classmethod
    def of(cls, times: str, vals: str, codes, stamps, extras: str | None) -> Stored:
        """From a row whose times and values came as JSON (`_AS_JSON`)."""
        return cls(orjson.loads(times), _numbers(vals), codes, stamps, _load_extras(extras))

    def column(self, name: str) -> list[int]:
        """Codes or stamps, one per point."""
        values = getattr(self, name)
        return values if len(values) == len(self.times) else values * len(self.times)

    def points(self) -> Iterator[tuple[int, object, int, int, dict | None]]:
        """(t, value, code, stamp, extra) of each point."""
        fields = self.extras or {}
        for t, value, code, stamp in zip(
            self.times, self.vals, self.column("codes"), self.column("stamps"), strict=True
        ):
            yield t, value, code, stamp, fields.get(str(t)) if fields else None


_BOUNDS = ("lo", "hi", "code_lo", "code_hi", "stamp_lo", "stamp_hi")


class ChunkRows:
    """Chunks (or the archived points of chunks) for one statement, as the parallel arrays it
    reads: each row's times, values, codes and stamps are a slice of one long array."""

    def __init__(self):
        self.series: list[int] = []
        self.days: list[str] = []
        self.bounds: tuple[list[int], ...] = tuple([] for _ in _BOUNDS)
        self.times: list[int] = []
        self.vals: list = []
        self.codes: list[int] = []
        self.stamps: list[int] = []
        self.extras: list[dict | None] = []

    def __len__(self) -> int:
        return len(self.series)

    def add(self, series_id: int, first_day: int, times, vals, codes, stamps, extras: dict | None) -> None:
        """One row; `codes` and `stamps` one per point or one for all, `extras` keyed by str(t)."""
        self.series.append(series_id)
        self.days.append(_day_text(first_day))
        lows = (len(self.times) + 1, len(self.codes) + 1, len(self.stamps) + 1)
        self.times.extend(times)
        self.vals.extend(vals)
        self.codes.extend(_compact(codes))
        self.stamps.extend(_compact(stamps))
        highs = (len(self.times), len(self.codes), len(self.stamps))
        for column, bound in zip(self.bounds, (lows[0], highs[0], lows[1], highs[1], lows[2], highs[2]), strict=True):
            column.append(bound)
        self.extras.append(extras or None)

    def params(self) -> dict:
        return {
            "series": _array(self.series),
            "days": "{" + ",".join(self.days) + "}",
            **{name: _array(column) for name, column in zip(_BOUNDS, self.bounds, strict=True)},
            "times": _array(self.times),
            "vals": _array(self.vals),
            "codes": _array(self.codes),
            "stamps": _array(self.stamps),
            "extras": orjson.dumps(self.extras).decode(),
        }


class _Columns:
    """A chunk being built point by point."""

    __slots__ = ("times", "vals", "codes", "stamps", "extras")

    def __init__(self):
        self.times: list[int] = []
        self.vals: list = []
        self.codes: list[int] = []
        self.stamps: list[int] = []
        self.extras: dict[str, dict] = {}

    def add(self, t: int, value, code: int, stamp: int, extra: dict | None) -> None:
        self.times.append(t)
        self.vals.append(value)
        self.codes.append(code)
        self.stamps.append(stamp)
        if extra is not None:
            self.extras[str(t)] = extra


def _same_value(stored, value) -> bool:
    """The same float64 (or both absent); 0.0 and -0.0 are different observations."""
    return stored == value and (value != 0 or copysign(1.0, value) == copysign(1.0, stored))


def _same_extra(stored: dict | None, extra: dict | None) -> bool:
    """The same other fields, exactly: JSON's true is not 1, nor 1.0 the integer 1."""
    return stored == extra and (
        stored is None or orjson.dumps(stored, option=_SORTED) == orjson.dumps(extra, option=_SORTED)
    )


_SORTED = orjson.OPT_SORT_KEYS


def _unchanged(stored: Stored, incoming: list[Point]) -> bool:
    """Whether `incoming` is exactly the stored chunk (the common re-send), checked column by
    column in C before any point-by-point merge."""
    if len(incoming) != len(stored.times):
        return False
    times, codes, vals, extras = zip(*incoming, strict=True)
    if list(times) != stored.times or list(vals) != stored.vals:
        return False
    if len(stored.codes) == 1 and len(codes) > 1:
        if codes.count(stored.codes[0]) != len(codes):
            return False
    elif list(codes) != stored.codes:
        return False
    if 0 in vals and not all(map(_same_value, stored.vals, vals)):
        return False
    if stored.extras is None:
        return extras.count(None) == len(extras)
    fields = stored.extras
    return len(fields) == len(extras) - extras.count(None) and all(
        _same_extra(fields.get(str(t)), extra) for t, extra in zip(times, extras, strict=True)
    )


class ChunkWriter:
    """What one transaction writes to the chunks of its series: each chunk merged with what is
    stored (unchanged points kept as they are, with their stamps; new and different ones stamped;
    replaced and removed ones archived with their old stamps), counted, and logged.

    Writes and undos both go through `write`, then one `flush`."""

    def __init__(self, stamp: Stamp):
        self.stamp = stamp
        self.chunks = ChunkRows()
        self.archive = ChunkRows()
        self.emptied: list[tuple[int, int]] = []
        self.changes = DataChanges()
        self.logged: list[str] = []

    def write(
        self,
        series_id: int,
        first_day: int,
        stored: Stored | None,
        incoming: list[Point],
        *,
        label: tuple[str, str],
        replace: bool = False,
        remove: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        """Merge `incoming` (time-ordered points) into the chunk; with `replace` the stored points
        not re-sent go, and so do those at the times in `remove`."""
        tally = self.changes.tallies["points"]
        stamp = self.stamp.value
        if stored is None:
            if incoming:
                times, codes, vals, extras = zip(*incoming, strict=True)
                fields = None
                if extras.count(None) != len(extras):
                    fields = {str(t): extra for t, extra in zip(times, extras, strict=True) if extra is not None}
                self.chunks.add(series_id, first_day, times, vals, codes, (stamp,), fields)
                tally.created += len(times)
                self.logged.append(chunk_key(series_id, first_day))
            return
        obj, prop = label
        if not remove and _unchanged(stored, incoming):
            tally.unchanged += len(incoming)
            self.changes.keep("points", obj, prop, stored.times)
            return
        kept = self.changes.kept["points"].setdefault((obj, prop), set())
        out, gone = _Columns(), _Columns()
        created = updated = unchanged = removed = 0
        s_times, s_vals, fields = stored.times, stored.vals, stored.extras
        s_codes, s_stamps = stored.column("codes"), stored.column("stamps")
        dropping = replace or bool(remove)
        i = 0

        def passed(upto: int) -> None:
            """The stored points from i to `upto` (no incoming point at their times): kept, or removed."""
            nonlocal i, removed
            for j in range(i, upto):
                t = s_times[j]
                point = (t, s_vals[j], s_codes[j], s_stamps[j], fields.get(str(t)) if fields else None)
                if dropping and (replace or t in remove):
                    removed += 1
                    gone.add(*point)
                else:
                    out.add(*point)
            i = upto

        for t, code, value, extra in incoming:
            passed(bisect_left(s_times, t, lo=i))
            if i < len(s_times) and s_times[i] == t:
                old_extra = fields.get(str(t)) if fields else None
                if s_codes[i] == code and _same_value(s_vals[i], value) and _same_extra(old_extra, extra):
                    unchanged += 1
                    kept.add(t)
                    out.add(t, s_vals[i], code, s_stamps[i], old_extra)
                else:
                    updated += 1
                    gone.add(t, s_vals[i], s_codes[i], s_stamps[i], old_extra)
                    out.add(t, value, code, stamp, extra)
                i += 1
            else:
                created += 1
                out.add(t, value, code, stamp, extra)
        passed(len(s_times))
        tally.created += created
        tally.updated += updated
        tally.unchanged += unchanged
        tally.removed += removed
        if not (created or updated or removed):
            return  # nothing changed: the chunk is not written
        if out.times:
            self.chunks.add(series_id, first_day, out.times, out.vals, out.codes, out.stamps, out.extras)
        else:
            self.emptied.append((series_id, first_day))
        self._archive(series_id, first_day, gone)
        self.logged.append(chunk_key(series_id, first_day))

    def _archive(self, series_id: int, first_day: int, gone: _Columns) -> None:
        """The replaced and removed points, with the stamps that made them; a point this same
        transaction wrote was never anyone's state, so it is not kept."""
        stamp = self.stamp.value
        if stamp in gone.stamps:
            keep = [k for k, made in enumerate(gone.stamps) if made != stamp]
            kept = _Columns()
            for k in keep:
                t = gone.times[k]
                kept.add(t, gone.vals[k], gone.codes[k], gone.stamps[k], gone.extras.get(str(t)))
            gone = kept
        if gone.times:
            self.archive.add(series_id, first_day, gone.times, gone.vals, gone.codes, gone.stamps, gone.extras)

    def flush(self, cursor, tenant_key: int | None, log: DataLog) -> DataChanges:
        """Send what was merged (deferred: it travels with the next statement) and log it."""
        if len(self.chunks):
            cursor.defer(UPSERT_CHUNKS, {"tenant_key": tenant_key, **self.chunks.params()})
        if self.emptied:
            cursor.defer(
                DELETE_CHUNKS,
                {
                    "tenant_key": tenant_key,
                    "series": _array([ident for ident, _ in self.emptied]),
                    "days": "{" + ",".join(_day_text(day) for _, day in self.emptied) + "}",
                },
            )
        if len(self.archive):
            cursor.defer(
                ARCHIVE_POINTS,
                {"tenant_key": tenant_key, "stamp": self.stamp.value, "at": self.stamp.at, **self.archive.params()},
            )
        if self.logged:
            log.add("points", updated=self.logged)
        return self.changes


# --- SQL ---------------------------------------------------------------------------------------------
_TENANT_KEY = "(SELECT key FROM tenants WHERE tenant = %(tenant)s)"

_ENSURE_SERIES = f"""
INSERT INTO tenants (tenant) SELECT %(tenant)s WHERE NOT EXISTS (SELECT FROM tenants WHERE tenant = %(tenant)s)
ON CONFLICT DO NOTHING;
INSERT INTO series (tenant_key, environment, object_id, property, span)
SELECT {_TENANT_KEY}, %(environment)s, v.o, v.p, v.s
FROM unnest(%(objects)s::text[], %(props)s::text[], %(spans)s::text[]) AS v(o, p, s)
WHERE NOT EXISTS (SELECT FROM series x WHERE x.tenant_key = {_TENANT_KEY} AND x.environment = %(environment)s
                  AND x.object_id = v.o AND x.property = v.p)
ORDER BY v.o, v.p
ON CONFLICT DO NOTHING;
"""


def _chunk_start(span: str, day: str) -> str:
    """SQL: the first day of the chunk of `span` holding date `day` (span_start's rule, no time zone involved)."""
    return (
        f"CASE {span} WHEN '{DAY}' THEN {day} WHEN '{MONTH}' THEN {day} - (extract(day FROM {day})::int - 1) "
        f"ELSE make_date(extract(year FROM {day})::int, 1, 1) END"
    )


def _as_json(row: str) -> str:
    """SQL: a row's times and values as JSON text. psycopg2 parses a number array's text in Python
    objects one by one; orjson reads the same numbers about five times faster (float8 prints
    the shortest text that reads back exactly, as in the array's own text form)."""
    return f"array_to_json({row}.times)::text, array_to_json({row}.vals)::text"


def _expanded(row: str, column: str) -> str:
    """A row's codes or stamps with one per point (a row whose points share one stores it once)."""
    return (
        f"CASE WHEN cardinality({row}.{column}) = 1 "
        f"THEN array_fill({row}.{column}[1], ARRAY[cardinality({row}.times)]) ELSE {row}.{column} END"
    )


# A chunk's archived points for one superseding stamp are one row. Should the same transaction
# archive points of that chunk twice (an undo and a removal in one rollback), the rows merge: the
# point archived first (the state before the transaction) wins.
_MERGE_ARCHIVED = f"""(times, vals, codes, stamps, extras) = (
    SELECT array_agg(m.t ORDER BY m.t), array_agg(m.v ORDER BY m.t), array_agg(m.k ORDER BY m.t),
           array_agg(m.s ORDER BY m.t),
           CASE WHEN v.extras IS NOT NULL OR excluded.extras IS NOT NULL THEN
               NULLIF((coalesce(excluded.extras, '{{}}') - ARRAY(SELECT i::text FROM unnest(v.times) AS i))
                      || coalesce(v.extras, '{{}}'), '{{}}')
           END
    FROM (SELECT DISTINCT ON (u.t) u.t, u.v, u.k, u.s
          FROM (SELECT a.t, a.v, a.k, a.s, 0 AS source
                FROM unnest(v.times, v.vals, {_expanded("v", "codes")}, {_expanded("v", "stamps")}) AS a(t, v, k, s)
                UNION ALL
                SELECT b.t, b.v, b.k, b.s, 1
                FROM unnest(excluded.times, excluded.vals, {_expanded("excluded", "codes")},
                            {_expanded("excluded", "stamps")}) AS b(t, v, k, s)) AS u
          ORDER BY u.t, u.source) AS m)"""

# The series a batch sends points to (numbered as `objects`), and the chunks those points fall in.
_SENT = f"""
sent AS (
    SELECT s.tenant_key, s.id, s.span, v.n
    FROM unnest(%(objects)s::text[], %(props)s::text[]) WITH ORDINALITY AS v(o, p, n)
    JOIN series s ON s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s
                 AND s.object_id = v.o AND s.property = v.p
),
touched AS (
    SELECT DISTINCT s.tenant_key, s.id, {_chunk_start("s.span", "x.d")} AS day
    FROM sent s
    JOIN (SELECT n, date '1970-01-01' + d AS d FROM unnest(%(point_series)s::int[], %(point_days)s::int[]) AS x(n, d)) x
      ON x.n = s.n
)"""
_SENT_CHUNKS = f"""
SELECT s.n, s.id, s.span, s.tenant_key, t.day, c.series_id IS NOT NULL, {_as_json("c")}, c.codes, c.stamps,
       c.extras::text, NULL::int8
FROM sent s JOIN touched t ON t.id = s.id
LEFT JOIN series_chunks c ON c.tenant_key = t.tenant_key AND c.series_id = t.id AND c.day = t.day
"""
# One round trip: the batch's series made sure of (the tenant's key too), their ids and spans,
# and the stored chunks its points fall in.
STORED_CHUNKS = _ENSURE_SERIES + "WITH " + _SENT + _SENT_CHUNKS
# With wipes (`_replace` series, replaced objects), the same round trip also archives and deletes
# the chunks of the wiped series that no incoming point falls in, and answers what it removed:
# rows with no series number, the chunk and its number of points. The series rows stay (as-of
# reads of the old points need their ids); chunks the batch's points fall in are merged as a
# replace, by write_series.
STORED_CHUNKS_WIPING = (
    _ENSURE_SERIES
    + "WITH "
    + _SENT
    + f""",
wiping AS (
    SELECT s.tenant_key, s.id FROM series s
    WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND s.object_id = ANY(%(wiped)s::text[])
    UNION
    SELECT s.tenant_key, s.id FROM unnest(%(wipe_objects)s::text[], %(wipe_props)s::text[]) AS v(o, p)
    JOIN series s ON s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s
                 AND s.object_id = v.o AND s.property = v.p
),
gone AS (
    DELETE FROM series_chunks c USING wiping w
    WHERE c.tenant_key = w.tenant_key AND c.series_id = w.id
      AND NOT EXISTS (SELECT FROM touched t WHERE t.id = c.series_id AND t.day = c.day)
    RETURNING c.tenant_key, c.series_id, c.day, c.times, c.vals, c.codes, c.stamps, c.extras
),
archived AS (
    INSERT INTO series_versions AS v (tenant_key, series_id, day, superseded, superseded_at, times, vals, codes,
                                      stamps, extras)
    SELECT g.tenant_key, g.series_id, g.day, %(stamp)s, %(at)s, g.times, g.vals, g.codes, g.stamps, g.extras
    FROM gone g WHERE g.stamps <> ARRAY[%(stamp)s::int8]
    ORDER BY g.series_id, g.day
    ON CONFLICT (tenant_key, series_id, day, superseded) DO UPDATE SET {_MERGE_ARCHIVED}
)"""
    + _SENT_CHUNKS
    + """UNION ALL
SELECT NULL, g.series_id, NULL, g.tenant_key, g.day, false, NULL, NULL, NULL, NULL, NULL, cardinality(g.times)
FROM gone g
"""
)

_ROWS = """ROWS FROM (unnest(%(series)s::int[]), unnest(%(days)s::date[]), unnest(%(lo)s::int[]), unnest(%(hi)s::int[]),
                unnest(%(code_lo)s::int[]), unnest(%(code_hi)s::int[]), unnest(%(stamp_lo)s::int[]),
                unnest(%(stamp_hi)s::int[]), json_array_elements(%(extras)s::json))
     AS g(series, day, lo, hi, code_lo, code_hi, stamp_lo, stamp_hi, extras)"""
_SLICES = """(%(times)s::int8[])[g.lo:g.hi], (%(vals)s::float8[])[g.lo:g.hi], (%(codes)s::int2[])[g.code_lo:g.code_hi],
       (%(stamps)s::int8[])[g.stamp_lo:g.stamp_hi], NULLIF(g.extras::jsonb, 'null'::jsonb)"""
# Every chunk a transaction changes, whole, as merged (write_series read it first under the
# object's row lock): in (series, day) order, so concurrent writers lock shared chunks alike.
UPSERT_CHUNKS = f"""
INSERT INTO series_chunks AS c (tenant_key, series_id, day, times, vals, codes, stamps, extras)
SELECT %(tenant_key)s, g.series, g.day, {_SLICES}
FROM {_ROWS}
ORDER BY g.series, g.day
ON CONFLICT (tenant_key, series_id, day) DO UPDATE
SET (times, vals, codes, stamps, extras) = (excluded.times, excluded.vals, excluded.codes, excluded.stamps, excluded.extras)
"""
DELETE_CHUNKS = """
DELETE FROM series_chunks
WHERE tenant_key = %(tenant_key)s AND (series_id, day) IN (SELECT * FROM unnest(%(series)s::int[], %(days)s::date[]))
"""
# The points a transaction replaced or removed, one row per chunk, with the stamps that made them.
ARCHIVE_POINTS = f"""
INSERT INTO series_versions AS v (tenant_key, series_id, day, superseded, superseded_at, times, vals, codes, stamps,
                                  extras)
SELECT %(tenant_key)s, g.series, g.day, %(stamp)s, %(at)s, {_SLICES}
FROM {_ROWS}
ORDER BY g.series, g.day
ON CONFLICT (tenant_key, series_id, day, superseded) DO UPDATE SET {_MERGE_ARCHIVED}
"""


def _days(points: list[Point]) -> list[int]:
    """The UTC days (since the epoch) that time-ordered points fall on."""
    out, start, count = [], 0, len(points)
    while start < count:
        day = points[start][0] // DAY_US
        out.append(day)
        start = bisect_left(points, (day + 1) * DAY_US, lo=start, key=_TIME)
    return out


def write_series(
    cursor, scope: dict, writes: dict[str, DataWrites], *, wiped: list[str], stamp: Stamp, log: DataLog
) -> DataChanges:
    """Write every series of a batch: points merged into their chunks by time, each compared
    with the stored point at its time (the same time code, value and other fields: unchanged,
    left as stored with its stamp; else updated, the old point archived; no point there:
    created). The series of `wiped` objects and the `_replace` series are replaced: their
    stored points not re-sent are removed (archived).

    One round trip makes sure every series has its row (and the tenant its key), reads their ids
    and spans and the stored chunks the points fall in (and, with wipes, archives and deletes the
    wiped series' other chunks); the merge runs here, and what changed goes in deferred
    statements, chunks in (series, day) order. A chunk with no change is not written."""
    encoded = encode_series(writes)
    wipe_pairs = sorted({(obj, prop) for obj, data in writes.items() for prop in data.wipe_props})
    if not encoded and not wiped and not wipe_pairs:
        return DataChanges()
    keys = sorted(encoded)
    point_series, point_days = [], []
    for number, key in enumerate(keys, 1):
        days = _days(encoded[key])
        point_series += [number] * len(days)
        point_days += days
    params = {
        **scope,
        "objects": text_array([o for o, _ in keys]),
        "props": text_array([p for _, p in keys]),
        "spans": text_array([pick_span(encoded[key]) for key in keys]),
        "point_series": _array(point_series),
        "point_days": _array(point_days),
    }
    if wiped or wipe_pairs:
        params.update(
            wiped=text_array(wiped),
            wipe_objects=text_array([o for o, _ in wipe_pairs]),
            wipe_props=text_array([p for _, p in wipe_pairs]),
            stamp=stamp.value,
            at=stamp.at,
        )
    cursor.execute(STORED_CHUNKS_WIPING if wiped or wipe_pairs else STORED_CHUNKS, params)
    writer = ChunkWriter(stamp)
    found: dict[tuple[str, str], tuple[int, str]] = {}
    stored: dict[tuple[int, int], Stored] = {}
    rows = cursor.fetchall()
    for number, ident, span, _, day, is_stored, *chunk, removed in rows:
        if number is None:  # a chunk of a wiped series that no incoming point falls in: archived, deleted
            writer.changes.tallies["points"].removed += removed
            writer.logged.append(chunk_key(ident, _day_number(day)))
            continue
        found[keys[number - 1]] = (ident, span)
        if is_stored:
            stored[(ident, _day_number(day))] = Stored.of(*chunk)
    replaced = set(wiped)
    wiped_props = set(wipe_pairs)
    for key in sorted(keys, key=lambda k: found[k][0]):
        ident, span = found[key]
        replace = key[0] in replaced or key in wiped_props
        for first_day, points in chunks(encoded[key], span):
            writer.write(ident, first_day, stored.get((ident, first_day)), points, label=key, replace=replace)
    return writer.flush(cursor, rows[0][3] if rows else None, log)
