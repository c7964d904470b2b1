"""Reading typed data back: series with a range, curves and matrices by date, tenor histories,
the data list, event lists and single events; each of them as of an instant (`_asof`, SPEC §12).

As of an instant T, an object's data header is the object's state at T (as `_asof` on the object
route serves it) and its data the items as the store held them at T: observations, curve dates,
matrices and events written later are absent, corrected ones have their earlier values. T before
the history watermark (retention pruned what answers it) is Gone, whatever the data: corrections
superseded before it are no longer kept, so no answer before it can be told complete."""

from __future__ import annotations

import re
from datetime import date, datetime

from batchsvc.core.errors import Gone, InvalidInput, NotFound
from batchsvc.core.history import parse_asof, state_at
from batchsvc.core.identity import visible
from batchsvc.core.objects import data_ref
from batchsvc.core.periods import parse_range, series_zone
from batchsvc.core.queries import DATETIME, SERVER_PARAMETERS, TEXT, ListQuery, check_fields, shape
from batchsvc.core.times import iso
from batchsvc.core.typed import CURVE_TYPES, EVENT_LIST_TYPE, MATRIX_TYPE, SERIES_TYPES

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REF_RULE = "data id must be OBJECT:PROPERTY, OBJECT:PROPERTY:YYYY-MM-DD or OBJECT:PROPERTY:TENOR"
MAX_TENOR_LENGTH = 64
# What event lists filter and sort by.
EVENT_FIELDS = {"_id": TEXT, "eventtime": DATETIME, "eventtype": TEXT}
# What the data list sorts by; it filters by these and by any other header field, as text.
DATA_SORTABLE = {"_id": TEXT, "_type": TEXT, "name": TEXT}
ASOF = "_asof"  # the query parameter of as-of reads
DATA_PARAMETERS = frozenset({"_range", "tenor", ASOF})


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
        raise InvalidInput(_REF_RULE)
    return object_id, prop, day


def _split(ref: str) -> tuple[str, str] | None:
    object_id, _, prop = ref.rpartition(":")
    return (object_id, prop) if object_id and prop else None


def _prefixes(ref: str) -> list[str]:
    """Every id `ref` could start with before a ':': the objects a reference may name."""
    return [ref[:index] for index, char in enumerate(ref) if char == ":" and index]


def as_of(reader, raw: str | None) -> datetime | None:
    """The instant of an `_asof` parameter (None without one): 400 when it cannot be read, 410
    when it falls before the history watermark."""
    if raw is None:
        return None
    instant = parse_asof(raw)
    pruned = reader.history.pruned_before()
    if pruned is not None and instant < pruned:
        raise Gone(f"history before {iso(pruned)} was pruned: the data as of {iso(instant)} is not known")
    return instant


def _at(instant: datetime | None) -> str:
    return "" if instant is None else f" at {iso(instant)}"


def objects_at(reader, ids: list[str], instant: datetime) -> list:
    """The states these objects had at `instant` (core.history.state_at for each), in two queries."""
    archived = reader.history.archived_at_each(ids, instant)
    current = {obj.id: obj for obj in reader.objects([ident for ident in ids if ident not in archived])}
    states = (state_at(archived.get(ident), current.get(ident), instant) for ident in ids)
    return [state for state in states if state is not None]


class _Objects:
    """The candidate objects of one reference, read in one query, as this source sees them
    (as they were at `instant`, when given)."""

    def __init__(self, reader, source: str, ref: str, instant: datetime | None = None):
        ids = _prefixes(ref)
        found = reader.objects(ids) if instant is None else objects_at(reader, ids, instant)
        self.found = {obj.id: obj for obj in found if visible(source, obj.id)}

    def header(self, object_id: str, prop: str) -> dict | None:
        obj = self.found.get(object_id)
        header = obj.doc.get(prop) if obj is not None else None
        return header if isinstance(header, dict) and "_type" in header else None


def _series(reader, object_id: str, prop: str, header: dict, range_text: str | None, instant) -> dict:
    span = parse_range(range_text, series_zone(header))
    points = reader.series_points(object_id, prop, start=span.start, end=span.end, last=span.last, asof=instant)
    return {"_id": f"{object_id}:{prop}", **header, "data": points}


def _dated(reader, object_id: str, prop: str, header: dict, day: date | None, instant) -> dict:
    what = "curve" if header["_type"] in CURVE_TYPES else "matrix"
    found = reader.dated(what, object_id, prop, day, instant)
    if found is None:
        asked = f"{object_id}:{prop}" + (f":{day.isoformat()}" if day else "")
        raise NotFound(f"no {what} {asked} found{_at(instant)}")
    ondate, doc = found
    return {"_id": f"{object_id}:{prop}:{ondate.isoformat()}", **header, **doc}


def tenor_history(
    reader, object_id: str, prop: str, header: dict, tenor: str, range_text: str | None, instant=None
) -> dict:
    """A curve's contract of one tenor across its curve dates, as a VarTimeSeries (as of `instant`)."""
    if not tenor or len(tenor) > MAX_TENOR_LENGTH:
        raise InvalidInput(f"tenor must be 1 to {MAX_TENOR_LENGTH} characters")
    zone = series_zone(header)
    span = parse_range(range_text, zone)
    first, stop = span.dates(zone)
    points = reader.tenor_points(object_id, prop, tenor, first=first, stop=stop, last=span.last, asof=instant)
    meta = {k: v for k, v in header.items() if k != "_type"}
    return {
        "_id": f"{object_id}:{prop}:{tenor}",
        "_type": "VarTimeSeries",
        **meta,
        "tenor": tenor,
        "data": [{"time": day.isoformat(), "value": value} for day, value in points],
    }


def get_data(
    reader, source: str, ref: str, range_text: str | None = None, tenor: str | None = None, asof: str | None = None
) -> dict:
    """What a data reference names: a series (with its `_range`), the curve or matrix of a date
    (the latest without one), or a tenor's history (`OBJ:PROP:TENOR` or `?tenor=`); as the store
    knew it at the instant `asof` when given.

    Object ids may contain ':', so a reference is read the ways it can be, most specific first:
    OBJ:PROP:DATE, then OBJ:PROP, then OBJ:PROP:TENOR."""
    object_id, prop, day = split_ref(ref)  # 400 for what no reading can make sense of
    instant = as_of(reader, asof)
    objects = _Objects(reader, source, ref, instant)
    if day is not None:
        header = objects.header(object_id, prop)
        if header is not None and (header["_type"] in CURVE_TYPES or header["_type"] == MATRIX_TYPE):
            if tenor is not None:
                raise InvalidInput("tenor cannot be combined with a curve date; ask OBJ:PROP?tenor=TENOR")
            return _dated(reader, object_id, prop, header, day, instant)
    whole = _split(ref)
    header = objects.header(*whole) if whole else None
    if header is not None:
        kind = header["_type"]
        if tenor is not None:
            if kind not in CURVE_TYPES:
                raise NotFound(f"data {ref} is not a curve: it has no tenors")
            return tenor_history(reader, *whole, header, tenor, range_text, instant)
        if kind in SERIES_TYPES:
            return _series(reader, *whole, header, range_text, instant)
        if kind in CURVE_TYPES or kind == MATRIX_TYPE:
            return _dated(reader, *whole, header, None, instant)
    head, _, last = ref.rpartition(":")
    parent = _split(head) if day is None else None
    header = objects.header(*parent) if parent else None
    if header is not None and header["_type"] in CURVE_TYPES:
        if tenor is not None:
            raise InvalidInput(f"tenor given twice: in the id ({last[:64]!r}) and as ?tenor=")
        return tenor_history(reader, *parent, header, last, range_text, instant)
    raise NotFound(f"data {ref} not found{_at(instant)}")


def _event_list(objects: _Objects, ref: str) -> tuple[str, str] | None:
    whole = _split(ref)
    header = objects.header(*whole) if whole else None
    return whole if header is not None and header["_type"] == EVENT_LIST_TYPE else None


def list_events(reader, source: str, ref: str, query: ListQuery, asof: str | None = None) -> tuple[int, list[dict]]:
    """The events of an event list OBJ:LIST (paged, filtered, sorted; as of the instant `asof`)."""
    if _split(ref) is None:
        raise InvalidInput("event list id must be OBJECT:LIST")
    instant = as_of(reader, asof)
    found = _event_list(_Objects(reader, source, ref, instant), ref)
    if found is None:
        raise NotFound(f"event list {ref} not found{_at(instant)}")
    check_fields(query, "events", sortable=EVENT_FIELDS, filterable=EVENT_FIELDS)
    total, events = reader.list_events(*found, query, instant)
    return total, shape(query, events)


def read_events(
    reader, source: str, ref: str, query: ListQuery, asof: str | None = None
) -> tuple[int, list[dict]] | dict:
    """OBJ:LIST → (total, a page of its events); OBJ:LIST:EVENTID → that one event; as of the
    instant `asof` when given.

    OBJ:LIST wins when it names an event list; otherwise the event id is what follows the
    list, the object id the longest stored one before it (so either may contain ':')."""
    if _split(ref) is None:
        raise InvalidInput("event id must be OBJECT:LIST or OBJECT:LIST:EVENTID")
    instant = as_of(reader, asof)
    objects = _Objects(reader, source, ref, instant)
    found = _event_list(objects, ref)
    if found is not None:
        check_fields(query, "events", sortable=EVENT_FIELDS, filterable=EVENT_FIELDS)
        total, events = reader.list_events(*found, query, instant)
        return total, shape(query, events)
    parts = ref.split(":")
    for cut in range(len(parts) - 2, 0, -1):
        object_id, prop, event_id = ":".join(parts[:cut]), parts[cut], ":".join(parts[cut + 1 :])
        header = objects.header(object_id, prop)
        if header is not None and header["_type"] == EVENT_LIST_TYPE and event_id:
            event = reader.event(object_id, prop, event_id, instant)
            if event is None:
                raise NotFound(f"event {event_id[:64]!r} not found in event list {object_id}:{prop}{_at(instant)}")
            return event
    raise NotFound(f"event list or event {ref} not found{_at(instant)}")


def list_data(reader, source: str, query: ListQuery) -> tuple[int, list[dict]]:
    """The data properties of the source's objects, as headers with `_id` OBJ:PROP and a `_ref`."""
    check_fields(query, "data", sortable=DATA_SORTABLE, filterable=None)
    for condition in query.filters:
        if condition.field in SERVER_PARAMETERS - {"_id", "_type"}:
            raise InvalidInput(f"cannot filter data by {condition.field!r}; data headers have no server fields")
    total, rows = reader.list_data(source, query)
    headers = [
        {"_id": f"{object_id}:{prop}", **header, "_ref": data_ref(object_id, prop, header)}
        for object_id, prop, header in rows
    ]
    return total, shape(query, headers)
