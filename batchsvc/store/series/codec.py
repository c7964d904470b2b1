"""The point codec: point codes, times rendered and recognised, points encoded and chunked, stored points decoded."""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from operator import itemgetter, sub

import orjson

from batchsvc.core.times import micros
from batchsvc.core.typed import DataWrites

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


# --- encoding a batch's points -------------------------------------------------------------------
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
    t = micros(instant)
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


def _day_number(day: date) -> int:
    return day.toordinal() - EPOCH_ORDINAL


# --- decoding stored points ------------------------------------------------------------------------


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
