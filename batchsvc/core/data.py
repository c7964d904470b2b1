"""Reading typed data back: a series with a range, a curve or matrix by date, an event list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from batchsvc.core.errors import InvalidInput, NotFound
from batchsvc.core.identity import visible
from batchsvc.core.queries import DATETIME, TEXT, ListQuery, check_fields, shape
from batchsvc.core.times import parse_instant
from batchsvc.core.typed import CURVE_TYPES, EVENT_LIST_TYPE, MATRIX_TYPE, SERIES_TYPES

_RANGE = re.compile(r"^(last|from|between)\((.*)\)$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# What event lists filter and sort by.
EVENT_FIELDS = {"_id": TEXT, "eventtime": DATETIME, "eventtype": TEXT}


@dataclass(frozen=True)
class TimeRange:
    """Which observations a `_range` asks for: within [start, end], or the newest `last`."""

    start: datetime | None = None
    end: datetime | None = None
    last: int | None = None


def split_ref(ref: str) -> tuple[str, str, date | None]:
    """`OBJ:PROP` or `OBJ:PROP:YYYY-MM-DD` (object ids may themselves contain ':')."""
    head, _, last = ref.rpartition(":")
    day = None
    if head and _DAY.match(last):
        try:
            day = date.fromisoformat(last)
        except ValueError:
            raise InvalidInput(f"{last!r} is not a valid date") from None
        ref = head
    object_id, _, prop = ref.rpartition(":")
    if not object_id or not prop:
        raise InvalidInput("data id must be OBJECT:PROPERTY or OBJECT:PROPERTY:YYYY-MM-DD")
    return object_id, prop, day


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        raise InvalidInput(f"_range needs ISO-8601 dates, got {text[:40]!r}") from None


def parse_range(raw: str | None) -> TimeRange:
    """`_range=last(n)|from(d)|between(d1,d2)`."""
    if raw is None:
        return TimeRange()
    match = _RANGE.match(raw.strip())
    if not match:
        raise InvalidInput("_range must be last(n), from(date) or between(date1,date2)")
    kind, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
    if kind == "last":
        if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= 1_000_000:
            raise InvalidInput("last(n) needs a whole number n from 1 to 1000000")
        return TimeRange(last=int(args[0]))
    if kind == "from":
        if len(args) != 1:
            raise InvalidInput("from(date) takes one date")
        return TimeRange(start=_instant(args[0]))
    if len(args) != 2:
        raise InvalidInput("between(date1,date2) takes two dates")
    return TimeRange(start=_instant(args[0]), end=_instant(args[1]))


def _header(reader, source: str, object_id: str, prop: str) -> dict:
    obj = reader.object(object_id)
    header = obj.doc.get(prop) if obj is not None and visible(source, object_id) else None
    if not isinstance(header, dict) or "_type" not in header:
        raise NotFound(f"data {object_id}:{prop} not found")
    return header


def get_data(reader, source: str, ref: str, range_text: str | None = None) -> dict:
    """A series with its observations, or a curve/matrix for a date (the latest without one)."""
    object_id, prop, day = split_ref(ref)
    header = _header(reader, source, object_id, prop)
    kind = header.get("_type")
    if kind in SERIES_TYPES and day is None:
        span = parse_range(range_text)
        points = reader.series_points(object_id, prop, start=span.start, end=span.end, last=span.last)
        return {"_id": f"{object_id}:{prop}", **header, "data": points}
    if kind in CURVE_TYPES or kind == MATRIX_TYPE:
        what = "curve" if kind in CURVE_TYPES else "matrix"
        found = reader.dated(what, object_id, prop, day)
        if found is None:
            raise NotFound(f"no {what} {ref} found")
        ondate, doc = found
        return {"_id": f"{object_id}:{prop}:{ondate.isoformat()}", **header, **doc}
    raise NotFound(f"data {ref} not found")


def list_events(reader, source: str, ref: str, query: ListQuery) -> tuple[int, list[dict]]:
    object_id, _, prop = ref.rpartition(":")
    if not object_id or not prop:
        raise InvalidInput("event list id must be OBJECT:LIST")
    if _header(reader, source, object_id, prop).get("_type") != EVENT_LIST_TYPE:
        raise NotFound(f"event list {ref} not found")
    check_fields(query, "events", sortable=EVENT_FIELDS, filterable=EVENT_FIELDS)
    total, events = reader.list_events(object_id, prop, query)
    return total, shape(query, events)
