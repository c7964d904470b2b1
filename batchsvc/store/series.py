"""Time series storage: observations packed into chunks of parallel arrays, one row per series and span.

Layout (tables `tenants`, `series`, `series_chunks`, see models.py):

- A series (tenant, environment, object, property) has a compact integer id and a *span*: the
  time one chunk holds, a UTC day ('D'), month ('M') or year ('Y'). The span is chosen from the
  points the series is first written with (`pick_span`) and kept until the series is wiped.
- A chunk row holds the observations of one series within one span: `times` (int8[],
  microseconds since 1970-01-01 UTC, ascending), `vals` (float8[], NULL where the value is not a
  float64), `codes` (int2[]: per point, how its time was written and how its value is typed; a
  single code when every point of the chunk shares it) and `extras` (JSONB, NULL unless some
  observation carries more than a time and a number: `{"<times[i]>": {other fields}}`).
- A point's code is `value kind + 3 * time kind + 18 * offset index`: value kinds float, int
  (an integer of at most 2**53 in magnitude, read back as an integer) and other (not in `vals`:
  in `extras`, or absent); time kinds `...Z`, `...±HH:MM`, naive `YYYY-MM-DDTHH:MM:SS[.ffffff]`,
  a date `YYYY-MM-DD`, `....fffZ` and other (the text kept in `extras`); the offset (of the
  written form from UTC) in quarter hours, -64..64, index `q mod 129`. A time is only given a
  kind when rendering the instant in that kind gives back the exact text sent, so every
  observation reads back as sent: same time text, same float64, same other fields.

Writes: one statement upserts every chunk a batch touches, in key order. A chunk that is new
is a plain insert; one that exists is merged with the incoming points in SQL (by time, incoming
wins), so appending a day costs the same whatever the series already holds and reads or
rewrites nothing but the chunks the new points fall in. Writers of one series are serialised by
the object row that every data write of a batch upserts first (core.batches writes an object's
row with its data), so each merge sees the chunk as the previous writer committed it.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter, sub

import orjson

from batchsvc.core.changes import DataChanges
from batchsvc.core.typed import DataWrites
from batchsvc.store.stamps import DataLog, Stamp
from batchsvc.store.transaction import text_array

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
US = timedelta(microseconds=1)
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
QUARTER_US = 900 * SECOND_US
MAX_QUARTERS = 64  # written offsets within ±16 h
MAX_EXACT_INT = 2**53  # integers a float64 holds exactly

V_FLOAT, V_INT, V_OTHER = range(3)
T_Z, T_OFFSET, T_NAIVE, T_DATE, T_MS, T_OTHER = range(6)
DAY, MONTH, YEAR = "D", "M", "Y"


def encode_code(value_kind: int, time_kind: int, quarters: int = 0) -> int:
    return value_kind + 3 * time_kind + 18 * (quarters % 129)


def decode_code(code: int) -> tuple[int, int, int]:
    """(value kind, time kind, offset in microseconds) of a point code."""
    index = code // 18
    quarters = index if index <= MAX_QUARTERS else index - 129
    return code % 3, code // 3 % 6, quarters * QUARTER_US


_DECODED = {code: decode_code(code) for code in range(18 * 129)}

# --- rendering times -----------------------------------------------------------------------------
# Dates and clock times repeat across points: rendered once, then looked up.
_DAY_TEXT: dict[int, str] = {}
_CLOCK_TEXT: dict[int, str] = {}


def _day_text(day: int) -> str:
    text = _DAY_TEXT.get(day)
    if text is None:
        if len(_DAY_TEXT) > 200_000:
            _DAY_TEXT.clear()
        text = _DAY_TEXT[day] = date.fromordinal(day + EPOCH_ORDINAL).isoformat()
    return text


def _clock_text(seconds: int) -> str:
    text = _CLOCK_TEXT.get(seconds)
    if text is None:
        hours, rest = divmod(seconds, 3600)
        text = _CLOCK_TEXT[seconds] = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text


def _offset_text(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    minutes = abs(offset) // 60_000_000
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def render_time(t: int, time_kind: int, offset: int) -> str:
    """The text of instant `t` (µs since the epoch, UTC) written in `time_kind` at `offset` µs."""
    day, rest = divmod(t + offset, DAY_US)
    day_text = _day_text(day)
    if time_kind == T_DATE:
        return day_text
    seconds, micros = divmod(rest, SECOND_US)
    clock = _clock_text(seconds)
    if time_kind == T_MS:
        return f"{day_text}T{clock}.{micros // 1000:03d}Z"
    text = f"{day_text}T{clock}.{micros:06d}" if micros else f"{day_text}T{clock}"
    if time_kind == T_Z:
        return text + "Z"
    if time_kind == T_OFFSET:
        return text + _offset_text(offset)
    return text


def _written_offset(text: str, t: int) -> tuple[int, int] | None:
    """(time kind, offset µs) that `text` would be rendered from `t` with, before checking."""
    if text[-1:] == "Z":
        return (T_MS if len(text) == 24 and text[19] == "." else T_Z), 0
    try:
        written = datetime.fromisoformat(text)
    except ValueError:
        return None
    if written.tzinfo is not None:
        return T_OFFSET, written.utcoffset() // US
    local = (written - datetime(1970, 1, 1)) // US
    return (T_DATE if len(text) == 10 else T_NAIVE), local - t


def time_kind(text, t: int) -> tuple[int, int]:
    """(time kind, offset in quarter hours) under which `t` renders exactly as `text`, else T_OTHER."""
    if type(text) is str and text:
        found = _written_offset(text, t)
        if found is not None:
            kind, offset = found
            quarters, rest = divmod(offset, QUARTER_US)
            if not rest and -MAX_QUARTERS <= quarters <= MAX_QUARTERS:
                try:
                    if render_time(t, kind, offset) == text:
                        return kind, quarters
                except ValueError:  # a local time past the calendar's ends: kept as written
                    pass
    return T_OTHER, 0


# --- writing ---------------------------------------------------------------------------------------
# A point as written: (t, code, the number for `vals` or None, the extra fields or None).
Point = tuple[int, int, float | int | None, dict | None]
_ABSENT = object()
_TIME = itemgetter(0)


# The time text each recent instant was written as, with its microseconds and time code:
# loaders send the same instants in the same form batch after batch (every series of a day
# shares them), so most points are encoded with one lookup. Bounded: cleared when full.
_WRITTEN: dict[datetime, tuple[int, str, int]] = {}
_WRITTEN_MAX = 32_768


def _timing(text, instant: datetime) -> tuple[int, int]:
    """(t, the time part of the point's code) of an instant not seen written as `text`.

    An observation handed over without a time (a positional series' value) gets its instant
    in the `...Z` form, so that it reads back with one."""
    t = (instant - EPOCH) // US
    if text is _ABSENT:
        return t, encode_code(0, T_Z)
    when, quarters = time_kind(text, t)
    code = encode_code(0, when, quarters)
    if when != T_OTHER:
        if len(_WRITTEN) >= _WRITTEN_MAX:
            _WRITTEN.clear()
        _WRITTEN[instant] = (t, text, code)
    return t, code


def encode_series(writes: dict[str, DataWrites]) -> dict[tuple[str, str], list[Point]]:
    """Every series of a batch, (object, property) -> its points in time order.

    The batch's hot loop, one pass per observation; an instant seen before written the same way
    costs one lookup, any other is rendered from the instant and compared (`time_kind`)."""
    out = {}
    written = _WRITTEN
    other = encode_code(0, T_OTHER)
    for object_id, data in writes.items():
        by_prop: dict[str, list[Point]] = {}
        last_prop, append = None, None
        for (prop, instant), observation in data.points.items():
            text = observation.get("time", _ABSENT)
            seen = written.get(instant)
            if seen is not None and seen[1] == text:
                t, timing = seen[0], seen[2]
            else:
                t, timing = _timing(text, instant)
            value = observation.get("value", _ABSENT)
            kind = type(value)
            if kind is float:
                code = V_FLOAT + timing
            elif kind is int and -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
                code = V_INT + timing
            else:
                code, value = V_OTHER + timing, None
            extra = None
            if code % 3 == V_OTHER or timing == other or len(observation) != 2:
                timed = timing != other
                extra = {
                    key: field
                    for key, field in observation.items()
                    if not (key == "time" and timed) and not (key == "value" and code % 3 != V_OTHER)
                } or None
            if prop != last_prop:
                points = by_prop.get(prop)
                if points is None:
                    points = by_prop[prop] = []
                last_prop, append = prop, points.append
            append((t, code, value, extra))
        for prop, points in by_prop.items():
            points.sort(key=_TIME)
            out[(object_id, prop)] = points
    return out


def pick_span(points: list[Point]) -> str:
    """The chunk span of a new series, from the points it is first written with: a day for data
    spaced (median gap) under two hours, a month under five days, a year beyond. A single point
    is taken as daily when it is a date or a UTC midnight, as intraday otherwise. A guess that
    turns out wrong costs space or rewrites, never correctness."""
    if len(points) == 1:
        t, code = points[0][:2]
        return MONTH if t % DAY_US == 0 or _DECODED[code][1] == T_DATE else DAY
    times = [point[0] for point in points[:1025]]
    gaps = sorted(map(sub, times[1:], times))
    gap = gaps[(len(gaps) - 1) // 2]
    if gap < 2 * 3600 * SECOND_US:
        return DAY
    return MONTH if gap < 5 * DAY_US else YEAR


def span_start(span: str, day: int) -> tuple[int, int]:
    """(first day, day after the last) of the chunk of `span` holding `day` (days since the epoch)."""
    if span == DAY:
        return day, day + 1
    first = date.fromordinal(day + EPOCH_ORDINAL)
    if span == MONTH:
        start = first.replace(day=1)
        length = calendar.monthrange(start.year, start.month)[1]
    else:
        start = date(first.year, 1, 1)
        length = 366 if calendar.isleap(start.year) else 365
    begin = start.toordinal() - EPOCH_ORDINAL
    return begin, begin + length


def chunks(points: list[Point], span: str) -> Iterator[tuple[int, list[Point]]]:
    """(first day of the chunk, its points) for time-ordered points."""
    start = 0
    while start < len(points):
        first_day, end_day = span_start(span, points[start][0] // DAY_US)
        end = bisect_left(points, end_day * DAY_US, lo=start, key=_TIME)
        yield first_day, points[start:end]
        start = end


def _array(values: list) -> str:
    """A PostgreSQL array literal of numbers (None as NULL), serialised by orjson: shortest
    round-trip floats, so every float64 arrives exactly."""
    return "{" + orjson.dumps(values).decode()[1:-1].replace("null", "NULL") + "}"


_BOUNDS = ("lo", "hi", "code_lo", "code_hi")


class ChunkRows:
    """The chunks of one batch as the parallel arrays the upsert statement reads: each chunk's
    times, values and codes are a slice of one long array."""

    def __init__(self):
        self.series: list[int] = []
        self.days: list[str] = []
        self.bounds: tuple[list[int], ...] = ([], [], [], [])  # per chunk: its slice of times/vals, of codes
        self.times: list[int] = []
        self.vals: list = []
        self.codes: list[int] = []
        self.extras: list[dict | None] = []

    def add(self, series_id: int, first_day: int, points: list[Point]) -> None:
        times, codes, vals, extras = zip(*points, strict=True)
        self.series.append(series_id)
        self.days.append(_day_text(first_day))
        low, code_low = len(self.times) + 1, len(self.codes) + 1
        self.times.extend(times)
        self.vals.extend(vals)
        self.codes.extend(codes[:1] if codes.count(codes[0]) == len(codes) else codes)
        for column, bound in zip(self.bounds, (low, len(self.times), code_low, len(self.codes)), strict=True):
            column.append(bound)
        if extras.count(None) == len(extras):
            self.extras.append(None)
        else:
            self.extras.append({str(t): extra for t, extra in zip(times, extras, strict=True) if extra is not None})

    def params(self, tenant_key: int) -> dict:
        return {
            "tenant_key": tenant_key,
            "series": _array(self.series),
            "days": "{" + ",".join(self.days) + "}",
            **{name: _array(column) for name, column in zip(_BOUNDS, self.bounds, strict=True)},
            "times": _array(self.times),
            "vals": _array(self.vals),
            "codes": _array(self.codes),
            "extras": orjson.dumps(self.extras).decode(),
        }


# --- SQL ---------------------------------------------------------------------------------------------
_TENANT_KEY = "(SELECT key FROM tenants WHERE tenant = %(tenant)s)"

ENSURE_SERIES = f"""
INSERT INTO tenants (tenant) SELECT %(tenant)s WHERE NOT EXISTS (SELECT FROM tenants WHERE tenant = %(tenant)s)
ON CONFLICT DO NOTHING;
INSERT INTO series (tenant_key, environment, object_id, property, span)
SELECT {_TENANT_KEY}, %(environment)s, v.o, v.p, v.s
FROM unnest(%(objects)s::text[], %(props)s::text[], %(spans)s::text[]) AS v(o, p, s)
WHERE NOT EXISTS (SELECT FROM series x WHERE x.tenant_key = {_TENANT_KEY} AND x.environment = %(environment)s
                  AND x.object_id = v.o AND x.property = v.p)
ORDER BY v.o, v.p
ON CONFLICT DO NOTHING;
SELECT s.object_id, s.property, s.id, s.span, s.tenant_key
FROM series s JOIN unnest(%(objects)s::text[], %(props)s::text[]) AS v(o, p) ON s.object_id = v.o AND s.property = v.p
WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s
"""
# Whole series go with their rows in `series`: a series written again later starts afresh
# (new id, its span chosen again).
_WIPE = f"""
DELETE FROM series_chunks c USING series s
WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND {{match}}
  AND c.tenant_key = s.tenant_key AND c.series_id = s.id;
DELETE FROM series s WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND {{match}}
"""
WIPE_OBJECTS = _WIPE.format(match="s.object_id = ANY(%(ids)s)")
WIPE_SERIES = _WIPE.format(
    match="(s.object_id, s.property) IN (SELECT * FROM unnest(%(objects)s::text[], %(props)s::text[]))"
)


def _expanded(chunk: str) -> str:
    """A chunk's codes with one per point (a chunk whose points share one stores it once)."""
    return (
        f"CASE WHEN cardinality({chunk}.codes) = 1 "
        f"THEN array_fill({chunk}.codes[1], ARRAY[cardinality({chunk}.times)]) ELSE {chunk}.codes END"
    )


# An existing chunk merges with the incoming one by time, the incoming point winning; extras of
# the stored points the batch replaces go, the incoming ones are added.
UPSERT_CHUNKS = f"""
INSERT INTO series_chunks AS c (tenant_key, series_id, day, times, vals, codes, extras)
SELECT %(tenant_key)s, g.series, g.day, (%(times)s::int8[])[g.lo:g.hi], (%(vals)s::float8[])[g.lo:g.hi],
       (%(codes)s::int2[])[g.code_lo:g.code_hi], NULLIF(g.extras::jsonb, 'null'::jsonb)
FROM ROWS FROM (unnest(%(series)s::int[]), unnest(%(days)s::date[]), unnest(%(lo)s::int[]), unnest(%(hi)s::int[]),
                unnest(%(code_lo)s::int[]), unnest(%(code_hi)s::int[]), json_array_elements(%(extras)s::json))
     AS g(series, day, lo, hi, code_lo, code_hi, extras)
ORDER BY g.series, g.day
ON CONFLICT (tenant_key, series_id, day) DO UPDATE SET (times, vals, codes, extras) = (
    SELECT array_agg(m.t ORDER BY m.t), array_agg(m.v ORDER BY m.t),
           CASE WHEN min(m.k) = max(m.k) THEN ARRAY[min(m.k)] ELSE array_agg(m.k ORDER BY m.t) END,
           CASE WHEN c.extras IS NOT NULL OR excluded.extras IS NOT NULL THEN
               NULLIF((coalesce(c.extras, '{{}}') - ARRAY(SELECT i::text FROM unnest(excluded.times) AS i))
                      || coalesce(excluded.extras, '{{}}'), '{{}}')
           END
    FROM (SELECT DISTINCT ON (u.t) u.t, u.v, u.k
          FROM (SELECT i.t, i.v, i.k, 0 AS source FROM unnest(excluded.times, excluded.vals, {_expanded("excluded")}) AS i(t, v, k)
                UNION ALL
                SELECT s.t, s.v, s.k, 1 FROM unnest(c.times, c.vals, {_expanded("c")}) AS s(t, v, k)) AS u
          ORDER BY u.t, u.source) AS m)
"""


def write_series(
    cursor, scope: dict, writes: dict[str, DataWrites], *, wiped: list[str], stamp: Stamp, log: DataLog
) -> DataChanges:
    """Upsert the chunks of every series a batch writes to; the series of `wiped` objects and the
    `_replace` series are replaced whole.

    One round trip makes sure every series has its row (and the tenant its key) and reads their
    ids and spans; the chunks then go in one deferred statement, rows in (series, day) order so
    that concurrent batches lock shared chunks in the same order."""
    changes = DataChanges()
    if wiped:
        cursor.defer(WIPE_OBJECTS, {**scope, "ids": wiped})
    series_wipes = sorted((obj, prop) for obj, data in writes.items() for prop in data.wipe_props)
    if series_wipes:
        cursor.defer(
            WIPE_SERIES,
            {
                **scope,
                "objects": text_array([o for o, _ in series_wipes]),
                "props": text_array([p for _, p in series_wipes]),
            },
        )
    encoded = encode_series(writes)
    if not encoded:
        return changes
    changes.tallies["points"].created = sum(map(len, encoded.values()))
    keys = sorted(encoded)
    cursor.execute(
        ENSURE_SERIES,
        {
            **scope,
            "objects": text_array([o for o, _ in keys]),
            "props": text_array([p for _, p in keys]),
            "spans": text_array([pick_span(encoded[key]) for key in keys]),
        },
    )
    found = {(o, p): (ident, span, tenant_key) for o, p, ident, span, tenant_key in cursor.fetchall()}
    rows = ChunkRows()
    for key in sorted(keys, key=lambda k: found[k][0]):
        ident, span, tenant_key = found[key]
        for first_day, points in chunks(encoded[key], span):
            rows.add(ident, first_day, points)
    cursor.defer(UPSERT_CHUNKS, rows.params(tenant_key))
    return changes


# --- reading -----------------------------------------------------------------------------------------

READ_SERIES = f"""
SELECT s.tenant_key, s.id, s.span FROM series s
WHERE s.tenant_key = {_TENANT_KEY} AND s.environment = %(environment)s AND s.object_id = %(object_id)s
  AND s.property = %(prop)s
"""
_CHUNKS = """
SELECT day, times, vals, codes, extras::text FROM series_chunks
WHERE tenant_key = %(tenant_key)s AND series_id = %(series_id)s AND day >= %(first)s AND day <= %(last)s
"""
READ_CHUNKS = _CHUNKS + "ORDER BY day"
READ_NEWEST = _CHUNKS + "ORDER BY day DESC LIMIT %(limit)s"


def observations(times: list[int], vals: list, codes: list[int], extras: str | None, lo: int, hi: int) -> list[dict]:
    """The observations at positions lo..hi-1 of a chunk, as they were sent."""
    fields = orjson.loads(extras) if extras else None
    uniform = _DECODED[codes[0]] if len(codes) == 1 else None
    out = []
    for i in range(lo, hi):
        t = times[i]
        value_kind, kind, offset = uniform or _DECODED[codes[i]]
        point = {} if kind == T_OTHER else {"time": render_time(t, kind, offset)}
        if value_kind == V_FLOAT:
            point["value"] = vals[i]
        elif value_kind == V_INT:
            point["value"] = int(vals[i])
        if fields:
            extra = fields.get(str(t))
            if extra:
                point.update(extra)
        out.append(point)
    return out


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // US


def _as_date(day: int) -> date:
    return date.fromordinal(max(1, min(day + EPOCH_ORDINAL, date.max.toordinal())))


def read_points(
    connection,
    scope: dict,
    object_id: str,
    prop: str,
    *,
    start: datetime | None,
    end: datetime | None,
    last: int | None,
) -> list[dict]:
    """Observations in time order within [start, end), or only the newest `last` of them.

    `connection` is a DB-API connection. Only the chunks overlapping the range are read;
    `last(n)` reads chunks newest first until it has n points."""
    with connection.cursor() as cur:
        cur.execute(READ_SERIES, {**scope, "object_id": object_id, "prop": prop})
        row = cur.fetchone()
        if row is None:
            return []
        tenant_key, series_id, span = row
        lo_us = None if start is None else micros(start)
        hi_us = None if end is None else micros(end) - 1  # times are whole microseconds: < end is <= end - 1 µs
        params = {
            "tenant_key": tenant_key,
            "series_id": series_id,
            "first": date.min if lo_us is None else _as_date(span_start(span, lo_us // DAY_US)[0]),
            "last": date.max if hi_us is None else _as_date(span_start(span, hi_us // DAY_US)[0]),
        }
        if params["first"] > params["last"]:
            return []
        if last:
            return _newest(cur, params, lo_us, hi_us, last)
        cur.execute(READ_CHUNKS, params)
        out = []
        for _day, times, vals, codes, extras in cur.fetchall():
            lo = 0 if lo_us is None else bisect_left(times, lo_us)
            hi = len(times) if hi_us is None else bisect_right(times, hi_us)
            if lo < hi:
                out.extend(observations(times, vals, codes, extras, lo, hi))
        return out


def _newest(cur, params: dict, lo_us: int | None, hi_us: int | None, wanted: int) -> list[dict]:
    """The newest `wanted` points within [lo_us, hi_us], reading chunks newest first, a few at a time."""
    pieces, limit = [], 2
    while wanted > 0:
        cur.execute(READ_NEWEST, {**params, "limit": limit})
        rows = cur.fetchall()
        for day, times, vals, codes, extras in rows:
            if wanted <= 0:
                break
            hi = len(times) if hi_us is None else bisect_right(times, hi_us)
            lo = max(0 if lo_us is None else bisect_left(times, lo_us), hi - wanted)
            if lo < hi:
                pieces.append(observations(times, vals, codes, extras, lo, hi))
                wanted -= hi - lo
            params["last"] = day - timedelta(days=1) if day > date.min else None
        if len(rows) < limit or params["last"] is None or params["last"] < params["first"]:
            break
        limit *= 4
    return [point for piece in reversed(pieces) for point in piece]


# --- undoing a batch (SPEC §12) ------------------------------------------------------------------
# Not yet kept: the history of this data arrives with its own change (stubs until then).


def undo_items(cursor, scope: dict, stamp: int, entries: dict) -> list:
    return []


def apply_undo(cursor, scope: dict, actions: list, *, stamp: Stamp, log: DataLog) -> DataChanges:
    return DataChanges()


def data_writers(cursor, scope: dict, object_ids: list[str]) -> dict[str, set[int]]:
    return {}
