"""Reading typed data back: a series with a range, a curve or matrix by date, an event list."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from batchsvc.core.errors import InvalidInput, NotFound
from batchsvc.core.identity import Scope
from batchsvc.core.objects import is_public
from batchsvc.core.queries import Field, ListQuery, apply_list_query
from batchsvc.core.typed import CURVE_TYPES, EVENT_LIST_TYPE, MATRIX_TYPE, SERIES_TYPES
from batchsvc.models import Curve, Event, Matrix, SeriesPoint, StoredObject

_RANGE = re.compile(r"^(last|from|between)\((.*)\)$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


def _header(session: Session, scope: Scope, source: str, object_id: str, prop: str) -> dict:
    obj = session.get(StoredObject, (scope.tenant, scope.environment, object_id))
    visible = obj is not None and (source == "all" or (source == "public") == is_public(object_id))
    header = obj.doc.get(prop) if visible else None
    if not isinstance(header, dict) or "_type" not in header:
        raise NotFound(f"data {object_id}:{prop} not found")
    return header


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"_range needs ISO-8601 dates, got {text[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _range_clause(raw: str | None):
    """(where clauses, newest-n limit) for `_range=last(n)|from(d)|between(d1,d2)`."""
    if raw is None:
        return [], None
    match = _RANGE.match(raw.strip())
    if not match:
        raise InvalidInput("_range must be last(n), from(date) or between(date1,date2)")
    kind, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
    if kind == "last":
        if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= 1_000_000:
            raise InvalidInput("last(n) needs a whole number n from 1 to 1000000")
        return [], int(args[0])
    if kind == "from":
        if len(args) != 1:
            raise InvalidInput("from(date) takes one date")
        return [SeriesPoint.time >= _instant(args[0])], None
    if len(args) != 2:
        raise InvalidInput("between(date1,date2) takes two dates")
    return [SeriesPoint.time >= _instant(args[0]), SeriesPoint.time <= _instant(args[1])], None


def _keyed(model, scope: Scope, object_id: str, prop: str):
    return (
        model.tenant == scope.tenant,
        model.environment == scope.environment,
        model.object_id == object_id,
        model.property == prop,
    )


def get_data(session: Session, scope: Scope, source: str, ref: str, range_text: str | None = None) -> dict:
    """A series with its observations, or a curve/matrix for a date (the latest without one)."""
    object_id, prop, day = split_ref(ref)
    header = _header(session, scope, source, object_id, prop)
    kind = header.get("_type")
    if kind in SERIES_TYPES and day is None:
        clauses, last = _range_clause(range_text)
        query = select(SeriesPoint.point).where(*_keyed(SeriesPoint, scope, object_id, prop), *clauses)
        if last:
            points = session.scalars(query.order_by(SeriesPoint.time.desc()).limit(last)).all()[::-1]
        else:
            points = session.scalars(query.order_by(SeriesPoint.time)).all()
        return {"_id": f"{object_id}:{prop}", **header, "data": points}
    if kind in CURVE_TYPES or kind == MATRIX_TYPE:
        model = Curve if kind in CURVE_TYPES else Matrix
        query = select(model).where(*_keyed(model, scope, object_id, prop))
        query = query.where(model.ondate == day) if day else query.order_by(model.ondate.desc()).limit(1)
        row = session.scalars(query).first()
        if row is None:
            raise NotFound(f"no {'curve' if model is Curve else 'matrix'} {ref} found")
        return {"_id": f"{object_id}:{prop}:{row.ondate.isoformat()}", **header, **row.doc}
    raise NotFound(f"data {ref} not found")


EVENT_FIELDS = {
    "_id": Field(Event.event_id, "text"),
    "eventtime": Field(Event.eventtime, "datetime"),
    "eventtype": Field(Event.doc["eventtype"].astext, "text"),
}


def _event_field(name: str) -> Field:
    if name not in EVENT_FIELDS:
        raise InvalidInput(f"cannot filter events by {name[:64]!r}; fields: {', '.join(sorted(EVENT_FIELDS))}")
    return EVENT_FIELDS[name]


def list_events(session: Session, scope: Scope, source: str, ref: str, query: ListQuery) -> tuple[int, list[dict]]:
    object_id, _, prop = ref.rpartition(":")
    if not object_id or not prop:
        raise InvalidInput("event list id must be OBJECT:LIST")
    header = _header(session, scope, source, object_id, prop)
    if header.get("_type") != EVENT_LIST_TYPE:
        raise NotFound(f"event list {ref} not found")
    base = select(Event).where(*_keyed(Event, scope, object_id, prop))
    total, rows = apply_list_query(
        session,
        base,
        query,
        field_for=_event_field,
        sortable=EVENT_FIELDS,
        search=(Event.event_id,),
        default_sort=[(Event.eventtime, -1), (Event.event_id, 1)],
    )
    return total, [row.doc for row in rows]
