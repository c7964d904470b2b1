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

History (SPEC §12): `stamps` (int8[], one per point, or one when all share it, like `codes`)
holds the stamp of the batch that wrote each point as it is (store/stamps.py; 0: written before
history was kept). A point a batch replaces or removes goes to `series_versions`, one row per
chunk and superseding stamp (`superseded`, `superseded_at`), in the chunk layout, holding only
the points that changed, each with the stamp that had made it. So appending stores no history,
and correcting 10 points of a day archives those 10 points.

Writes: one round trip makes sure the batch's series exist (ids, spans) and reads the stored
chunks its points fall in (new days: nothing to read). The merge runs in Python, point by point
by time: a point equal to the stored one at its time (same time code, value and other fields) is
unchanged (kept as stored, with its stamp, and reported in `DataChanges.kept`); a different one
is updated (stamped, the old one archived); one at a new time is created. A chunk with no change
is not written at all (no new tuple); a changed one is written whole, with its archived points,
in deferred statements, chunks in (series, day) order. `_replace` series and the series of
replaced objects are replaced: their chunks that no incoming point falls in are archived whole
and deleted in SQL (in the same round trip), the others merged as a replace (stored points not
re-sent are removed and archived). Series rows, and so ids and spans, are kept: as-of reads of
old points need them. Writers of one series are serialised by the object row that every data
write of a batch upserts (or a rollback locks) first, so each merge sees the chunk as the
previous writer committed it.

As-of reads take, per point, the state that was current at the instant: made by then (its
stamp's batch time; stamp 0 and pruned stamps before any instant) and superseded after it.

The change log (`batch_changes`, kind "points") names the chunks a transaction changed,
`<series id>/<first day>` (`chunk_key`), in `updated`; undo_items finds the points from there.
"""

from __future__ import annotations

import calendar
import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from math import copysign
from operator import itemgetter, sub
from typing import NamedTuple

import orjson

from batchsvc.core.changes import DataChanges, DataItem
from batchsvc.core.history import RECREATE, REMOVE, RESTORE, WAS_CREATED, WAS_REMOVED, WAS_UPDATED
from batchsvc.core.typed import DataWrites
from batchsvc.store.stamps import DataLog, Stamp, batches_of
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


def _array(values) -> str:
    """A PostgreSQL array literal of numbers (None as NULL), serialised by orjson: shortest
    round-trip floats, so every float64 arrives exactly."""
    return "{" + orjson.dumps(list(values)).decode()[1:-1].replace("null", "NULL") + "}"


def _compact(column):
    """A column of codes or stamps as stored: one element when every point shares it."""
    return column[:1] if column.count(column[0]) == len(column) else column


def chunk_key(series_id: int, first_day: int) -> str:
    """How the change log names a chunk: `<series id>/<its first day>` (store/series.py's own format)."""
    return f"{series_id}/{_day_text(first_day)}"


def parse_chunk_key(key: str) -> tuple[int, int]:
    ident, day = key.split("/", 1)
    return int(ident), date.fromisoformat(day).toordinal() - EPOCH_ORDINAL


def _day_number(day: date) -> int:
    return day.toordinal() - EPOCH_ORDINAL


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


# --- undoing a batch ---------------------------------------------------------------------------------


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
# As of an instant: of the chunks (days) in range that hold points now or held some then (the
# newest `limit` of them, all with NULL), the current chunk and the archived points superseded
# after the instant. Which of those were current at the instant, their stamps tell.
READ_ASOF = f"""
WITH days AS (
    SELECT day FROM series_chunks
    WHERE tenant_key = %(tenant_key)s AND series_id = %(series_id)s AND day >= %(first)s AND day <= %(last)s
    UNION
    SELECT day FROM series_versions
    WHERE tenant_key = %(tenant_key)s AND series_id = %(series_id)s AND day >= %(first)s AND day <= %(last)s
      AND superseded_at > %(asof)s
    ORDER BY day DESC LIMIT %(limit)s
)
SELECT c.day, NULL::int8, {_as_json("c")}, c.codes, c.stamps, c.extras::text
FROM days JOIN series_chunks c ON c.tenant_key = %(tenant_key)s AND c.series_id = %(series_id)s AND c.day = days.day
UNION ALL
SELECT v.day, v.superseded, {_as_json("v")}, v.codes, v.stamps, v.extras::text
FROM days JOIN series_versions v
  ON v.tenant_key = %(tenant_key)s AND v.series_id = %(series_id)s AND v.day = days.day AND v.superseded_at > %(asof)s
"""


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


def _observation(t: int, value, code: int, extra: dict | None) -> dict:
    value_kind, kind, offset = _DECODED[code]
    point = {} if kind == T_OTHER else {"time": render_time(t, kind, offset)}
    if value_kind == V_FLOAT:
        point["value"] = float(value)
    elif value_kind == V_INT:
        point["value"] = int(value)
    if extra:
        point.update(extra)
    return point


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
    asof: datetime | None = None,
) -> list[dict]:
    """Observations in time order within [start, end), or only the newest `last` of them; as
    the store knew them at instant `asof` when given (points written later absent, corrected
    ones with their old values, removed ones there).

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
        if asof is not None:
            return _as_of(cur, scope, {**params, "asof": asof}, lo_us, hi_us, last)
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


_BEFORE_ANY = datetime.min.replace(tzinfo=UTC)


class _Then:
    """When each stamp's state became current: its batch's time (stamp 0, and stamps whose
    record was pruned, before any instant), learned a round trip at a time."""

    def __init__(self, cur, scope: dict, asof: datetime):
        self.cur, self.scope, self.asof = cur, scope, asof
        self.at: dict[int, datetime] = {}

    def learn(self, rows: list[tuple]) -> None:
        wanted = {stamp for row in rows for stamp in row[5]} - self.at.keys()
        known = batches_of(self.cur, self.scope, wanted)
        for stamp in wanted:
            self.at[stamp] = known[stamp][1] if stamp in known else _BEFORE_ANY

    def visible(self, rows: list[tuple], lo_us: int | None, hi_us: int | None) -> list[dict]:
        """The observations within [lo_us, hi_us] of one chunk's rows (current and archived) that
        were current at the instant: made by then and (archived ones) superseded after. Should two
        qualify (clocks disagreeing), the one made latest."""
        if len(rows) == 1 and rows[0][1] is None and len(rows[0][5]) == 1:  # a current chunk of one batch
            _, _, times, vals, codes, stamps, extras = rows[0]
            if self.at[stamps[0]] > self.asof:
                return []
            times, vals = orjson.loads(times), [float(v) if type(v) is int else v for v in _numbers(vals)]
            lo = 0 if lo_us is None else bisect_left(times, lo_us)
            hi = len(times) if hi_us is None else bisect_right(times, hi_us)
            return observations(times, vals, codes, extras, lo, hi) if lo < hi else []
        best: dict[int, tuple] = {}
        for _, _, times, vals, codes, stamps, extras in rows:
            for t, value, code, made, extra in Stored.of(times, vals, codes, stamps, extras).points():
                if (lo_us is not None and t < lo_us) or (hi_us is not None and t > hi_us):
                    continue
                when = (self.at[made], made)
                if when[0] <= self.asof:
                    held = best.get(t)
                    if held is None or when > held[0]:
                        best[t] = (when, (t, value, code, extra))
        return [_observation(*best[t][1]) for t in sorted(best)]


def _as_of(cur, scope: dict, params: dict, lo_us: int | None, hi_us: int | None, last: int | None) -> list[dict]:
    """Observations as of params["asof"]: every chunk in range (or, for `last`, the newest days a
    few at a time) with its archived points superseded after the instant."""
    then = _Then(cur, scope, params["asof"])
    out: list[list[dict]] = []
    wanted, limit = last or 0, 2 if last else None
    while True:
        cur.execute(READ_ASOF, {**params, "limit": limit})
        rows = cur.fetchall()
        then.learn(rows)
        by_day: dict[date, list[tuple]] = {}
        for row in rows:
            by_day.setdefault(row[0], []).append(row)
        for day in sorted(by_day, reverse=bool(last)):
            points = then.visible(by_day[day], lo_us, hi_us)
            if last:
                points = points[-wanted:]
                wanted -= len(points)
                params["last"] = day - timedelta(days=1) if day > date.min else None
            out.append(points)
            if last and wanted <= 0:
                break
        if not last or wanted <= 0 or len(by_day) < limit or params["last"] is None:
            break
        if params["last"] < params["first"]:
            break
        limit *= 4
    if last:
        out.reverse()
    return [point for piece in out for point in piece]
