"""Reads (and the summary delete) on the request's session: objects, summaries, typed data, events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import Date, DateTime, Text, and_, cast, column, delete, func, literal, select, true, union_all
from sqlalchemy.dialects.postgresql import JSONB, JSONPATH
from sqlalchemy.orm import Session, aliased

from batchsvc.core.data import DATA_SORTABLE, EVENT_FIELDS
from batchsvc.core.identity import Scope
from batchsvc.core.objects import DEFAULT_TYPE, OBJECT_FIELDS, OBJECT_SORTABLE
from batchsvc.core.queries import INT, TEXT, ListQuery
from batchsvc.core.summaries import SUMMARY_FIELDS
from batchsvc.core.typed import DATA_TYPES
from batchsvc.models import BatchStamp, BatchSummary, Curve, DataVersion, Event, Matrix, StoredObject
from batchsvc.store import series
from batchsvc.store.history import HistoryReader
from batchsvc.store.lists import Documents, Field, apply_list_query, source_clause

_OBJECT_COLUMNS = {
    "_id": StoredObject.id,
    "_type": func.coalesce(StoredObject.doc["_type"].astext, DEFAULT_TYPE),
    "_version": StoredObject.version,
    "_created": StoredObject.created,
    "_timestamp": StoredObject.updated,
    "_user": StoredObject.user,
    "_batch": StoredObject.batch,
}


def _object_field(name: str) -> Field:
    """Server fields by their columns; any other top-level property compared as text."""
    kind = OBJECT_SORTABLE.get(name, TEXT)
    return Field(_OBJECT_COLUMNS.get(name, StoredObject.doc[name].astext), kind)


_OBJECT_SORTABLE = {name: _object_field(name) for name in OBJECT_SORTABLE}
_OBJECT_DOCUMENTS = Documents(StoredObject.doc, {name: _object_field(name) for name in OBJECT_FIELDS})
_OBJECT_SEARCH = (StoredObject.id, StoredObject.doc["name"].astext, StoredObject.doc["description"].astext)
assert set(OBJECT_FIELDS) <= set(_OBJECT_COLUMNS)


def _summary_field(name: str) -> Field:
    """A summary field: its own column where the table has one, else the document's."""
    kind = SUMMARY_FIELDS[name]
    column = getattr(BatchSummary, "id" if name == "_id" else name, None)
    if column is None:
        column = BatchSummary.doc[name].as_integer() if kind == INT else BatchSummary.doc[name].astext
    return Field(column, kind)


_SUMMARY_FIELDS = {name: _summary_field(name) for name in SUMMARY_FIELDS}
# `_filter` compares these on their columns (the indexed ones among them); the rest of a
# summary on its document, which holds every field as served.
_SUMMARY_DOCUMENTS = Documents(
    BatchSummary.doc,
    {
        **{name: _SUMMARY_FIELDS[name] for name in ("_id", "timestamp", "user", "status", "source")},
        "name": Field(BatchSummary.name, TEXT, nullable=True),
    },
)
_SUMMARY_SEARCH = tuple(BatchSummary.doc[name].astext for name in ("name", "service", "reason", "message"))


def _event_fields(event_id, eventtime, doc) -> tuple[dict[str, Field], Documents]:
    """What event lists filter and sort by, on these columns (the table's, or an as-of read's)."""
    columns = {"_id": event_id, "eventtime": eventtime, "eventtype": doc["eventtype"].astext}
    fields = {name: Field(columns[name], kind) for name, kind in EVENT_FIELDS.items()}
    return fields, Documents(doc, {name: fields[name] for name in ("_id", "eventtime")})


_EVENT_FIELDS, _EVENT_DOCUMENTS = _event_fields(Event.event_id, Event.eventtime, Event.doc)
_DATED_MODELS = {"curve": Curve, "matrix": Matrix}
_VERSION_KINDS = {"curve": "curves", "matrix": "matrices"}  # data_versions.kind (store/datarows.py)
# A stamp's time; stamp 0 (written before history) and pruned stamps have no row: -infinity.
_NEVER = cast(literal("-infinity"), DateTime(timezone=True))

# The data list: one row per property of an object whose value is a data header.
_ENTRY = func.jsonb_each(StoredObject.doc).table_valued(column("key", Text), column("value", JSONB)).lateral("entry")
_DATA_ID = StoredObject.id + literal(":") + _ENTRY.c.key
# `_filter` on the data list runs on each header; its `_id` is OBJ:PROP.
_DATA_DOCUMENTS = Documents(_ENTRY.c.value, {"_id": Field(_DATA_ID, TEXT)})


def _data_field(name: str) -> Field:
    """`_id` is OBJ:PROP; any other field is the header's, compared as text."""
    return Field(_DATA_ID if name == "_id" else _ENTRY.c.value[name].astext, TEXT)


_DATA_SORTABLE = {name: _data_field(name) for name in DATA_SORTABLE}
_DATA_SEARCH = (_DATA_ID, _ENTRY.c.value["name"].astext, _ENTRY.c.value["description"].astext)
# The first contract of a curve with the bound tenor (NULL when it has none).
_CONTRACT_OF_TENOR = cast(literal("$.contracts[*] ? (@.tenor == $tenor)"), JSONPATH)


def _stamp_time(model, stamp):
    """(the time of the batch whose stamp `stamp` is, as a column; a function that adds to a
    select over `model` the join that column needs). A stamp with no time (0: written before
    history was kept; or pruned) is from the beginning of time."""
    made = aliased(BatchStamp)

    def stamped(query):
        return query.select_from(model).outerjoin(
            made, and_(made.tenant == model.tenant, made.environment == model.environment, made.stamp == stamp)
        )

    return func.coalesce(made.at, _NEVER), stamped


class Reader:
    """The stored records of one tenant and environment, read on the request's session."""

    def __init__(self, session: Session, scope: Scope):
        self.session = session
        self.scope = scope
        self.history = HistoryReader(session, scope)  # objects as of an instant, the pruning watermark

    def _keyed(self, model, object_id: str, prop: str) -> tuple:
        return (
            model.tenant == self.scope.tenant,
            model.environment == self.scope.environment,
            model.object_id == object_id,
            model.property == prop,
        )

    # objects
    def object(self, object_id: str) -> StoredObject | None:
        return self.session.get(StoredObject, (self.scope.tenant, self.scope.environment, object_id))

    def objects(self, ids: list[str]) -> list[StoredObject]:
        """The stored objects among `ids` (one query)."""
        if not ids:
            return []
        return self.session.scalars(
            select(StoredObject).where(
                StoredObject.tenant == self.scope.tenant,
                StoredObject.environment == self.scope.environment,
                StoredObject.id.in_(ids),
            )
        ).all()

    def list_objects(self, source: str, query: ListQuery) -> tuple[int, list[StoredObject]]:
        base = select(StoredObject).where(
            StoredObject.tenant == self.scope.tenant,
            StoredObject.environment == self.scope.environment,
            source_clause(StoredObject.id, source),
        )
        return apply_list_query(
            self.session,
            base,
            query,
            field_for=_object_field,
            sortable=_OBJECT_SORTABLE,
            search=_OBJECT_SEARCH,
            default_sort=[(StoredObject.updated, -1), (StoredObject.id, 1)],
            documents=_OBJECT_DOCUMENTS,
        )

    # summaries
    def _summaries(self):
        return select(BatchSummary).where(
            BatchSummary.tenant == self.scope.tenant, BatchSummary.environment == self.scope.environment
        )

    def summary(self, batch_id: str) -> BatchSummary | None:
        return self.session.scalars(self._summaries().where(BatchSummary.id == batch_id)).one_or_none()

    def list_summaries(self, source: str, query: ListQuery) -> tuple[int, list[BatchSummary]]:
        base = self._summaries()
        if source in ("private", "public"):
            base = base.where(BatchSummary.source == source)
        return apply_list_query(
            self.session,
            base,
            query,
            field_for=_SUMMARY_FIELDS.__getitem__,
            sortable=_SUMMARY_FIELDS,
            search=_SUMMARY_SEARCH,
            default_sort=[(BatchSummary.timestamp, -1), (BatchSummary.id, 1)],
            documents=_SUMMARY_DOCUMENTS,
        )

    def delete_summary(self, batch_id: str, allow: Callable[[BatchSummary | None], None]) -> None:
        """Delete a summary in its own transaction, the row locked while `allow` (which raises
        to refuse) looks at it."""
        with self.session.begin():
            row = self.session.scalars(
                self._summaries().where(BatchSummary.id == batch_id).with_for_update()
            ).one_or_none()
            allow(row)
            self.session.execute(
                delete(BatchSummary).where(
                    BatchSummary.tenant == self.scope.tenant,
                    BatchSummary.environment == self.scope.environment,
                    BatchSummary.id == batch_id,
                )
            )

    # typed data
    def series_points(
        self,
        object_id: str,
        prop: str,
        *,
        start: datetime | None,
        end: datetime | None,
        last: int | None,
        asof: datetime | None = None,
    ) -> list[dict]:
        """Observations in time order, within [start, end), the newest `last` of them when given;
        as the store knew them at instant `asof` when given."""
        scope = {"tenant": self.scope.tenant, "environment": self.scope.environment}
        return series.read_points(
            self.session.connection().connection, scope, object_id, prop, start=start, end=end, last=last, asof=asof
        )

    def _states_at(self, model, kind: str, object_id: str, prop: str, instant: datetime, *, now: tuple, then: tuple):
        """One property's items as they were at `instant`, a subquery of the columns `now` names on
        `model`'s rows and `then` on the data_versions rows of `kind` (each a (columns, WHERE
        clauses) pair, the item's key first): the current rows whose stamp's time is <= instant and
        the archived states made by then and superseded after it; where two states of a key
        qualify (clocks skewed), the one made latest."""
        columns, narrow = now
        made_at, stamped = _stamp_time(model, model.stamp)
        current = stamped(select(*columns, made_at.label("made_at"), model.stamp.label("made"))).where(
            *self._keyed(model, object_id, prop), made_at <= instant, *narrow
        )
        columns, narrow = then
        made_at, stamped = _stamp_time(DataVersion, DataVersion.made)
        archived = stamped(select(*columns, made_at.label("made_at"), DataVersion.made.label("made"))).where(
            *self._keyed(DataVersion, object_id, prop),
            DataVersion.kind == kind,
            made_at <= instant,
            DataVersion.superseded_at > instant,
            *narrow,
        )
        states = union_all(current, archived).subquery("states")
        key = states.c[0]
        latest = select(states).distinct(key).order_by(key, states.c.made_at.desc(), states.c.made.desc())
        return latest.subquery("as_of")

    def _dated(
        self,
        kind: str,
        object_id: str,
        prop: str,
        asof: datetime | None,
        *,
        day: date | None = None,
        first: date | None = None,
        stop: date | None = None,
    ):
        """A property's curves or matrices (the date `day`, or those in [first, stop)) as a subquery
        of (ondate, doc): as stored, or as of `asof`."""
        model = _DATED_MODELS[kind]
        columns = [model.ondate.label("ondate"), model.doc.label("doc")]
        narrow = [model.ondate == day] if day is not None else []
        narrow += [model.ondate >= first] if first is not None else []
        narrow += [model.ondate < stop] if stop is not None else []
        if asof is None:
            return select(*columns).where(*self._keyed(model, object_id, prop), *narrow).subquery("dated")
        # data_versions keys are ISO dates, which sort as the dates do.
        key = DataVersion.key
        archived = [key == day.isoformat()] if day is not None else []
        archived += [key >= first.isoformat()] if first is not None else []
        archived += [key < stop.isoformat()] if stop is not None else []
        return self._states_at(
            model,
            _VERSION_KINDS[kind],
            object_id,
            prop,
            asof,
            now=(columns, narrow),
            then=([cast(key, Date).label("ondate"), DataVersion.doc.label("doc")], archived),
        )

    def dated(
        self, kind: str, object_id: str, prop: str, day: date | None, asof: datetime | None = None
    ) -> tuple[date, dict] | None:
        """A curve's or matrix's (date, document) for `day`, or the latest without one (as of `asof`)."""
        rows = self._dated(kind, object_id, prop, asof, day=day)
        query = select(rows.c.ondate, rows.c.doc)
        query = query.where(rows.c.ondate == day) if day else query.order_by(rows.c.ondate.desc()).limit(1)
        row = self.session.execute(query).first()
        return (row.ondate, row.doc) if row is not None else None

    def tenor_points(
        self,
        object_id: str,
        prop: str,
        tenor: str,
        *,
        first: date | None,
        stop: date | None,
        last: int | None,
        asof: datetime | None = None,
    ) -> list[tuple[date, object]]:
        """(curve date, value) of the contract with `tenor` on each curve date in [first, stop)
        that has one, in date order; the newest `last` of them when given; as of `asof` when given."""
        curves = self._dated("curve", object_id, prop, asof, first=first, stop=stop)
        hit = (
            func.jsonb_path_query_first(curves.c.doc, _CONTRACT_OF_TENOR, func.jsonb_build_object("tenor", tenor))
            .table_valued(column("contract", JSONB))
            .render_derived(name="hit")
            .lateral("hit")
        )
        query = (
            select(curves.c.ondate, hit.c.contract["value"])
            .select_from(curves)
            .join(hit, true())
            .where(hit.c.contract.is_not(None))
        )
        if last:
            rows = self.session.execute(query.order_by(curves.c.ondate.desc()).limit(last)).all()[::-1]
        else:
            rows = self.session.execute(query.order_by(curves.c.ondate)).all()
        return [(day, value) for day, value in rows]

    def list_data(self, source: str, query: ListQuery) -> tuple[int, list[tuple[str, str, dict]]]:
        """(object id, property, header) of every data property of the source's objects."""
        row = func.jsonb_build_array(StoredObject.id, _ENTRY.c.key, _ENTRY.c.value, type_=JSONB)
        base = (
            select(row)
            .select_from(StoredObject)
            .join(_ENTRY, true())
            .where(
                StoredObject.tenant == self.scope.tenant,
                StoredObject.environment == self.scope.environment,
                source_clause(StoredObject.id, source),
                func.jsonb_typeof(_ENTRY.c.value) == "object",
                _ENTRY.c.value["_type"].astext.in_(sorted(DATA_TYPES)),
            )
        )
        total, rows = apply_list_query(
            self.session,
            base,
            query,
            field_for=_data_field,
            sortable=_DATA_SORTABLE,
            search=_DATA_SEARCH,
            default_sort=[(StoredObject.id, 1), (_ENTRY.c.key, 1)],
            documents=_DATA_DOCUMENTS,
        )
        return total, [tuple(item) for item in rows]

    def _events_at(self, object_id: str, prop: str, asof: datetime, event_id: str | None = None):
        """An event list's events (or the one `event_id`) as of `asof`: (event_id, eventtime, doc)."""
        now = [Event.event_id.label("event_id"), Event.eventtime.label("eventtime"), Event.doc.label("doc")]
        then = [
            DataVersion.key.label("event_id"),
            DataVersion.eventtime.label("eventtime"),
            DataVersion.doc.label("doc"),
        ]
        one = event_id is not None
        return self._states_at(
            Event,
            "events",
            object_id,
            prop,
            asof,
            now=(now, [Event.event_id == event_id] if one else []),
            then=(then, [DataVersion.key == event_id] if one else []),
        )

    def event(self, object_id: str, prop: str, event_id: str, asof: datetime | None = None) -> dict | None:
        if asof is not None:
            events = self._events_at(object_id, prop, asof, event_id)
            return self.session.scalars(select(events.c.doc)).first()
        return self.session.scalars(
            select(Event.doc).where(*self._keyed(Event, object_id, prop), Event.event_id == event_id)
        ).first()

    def list_events(
        self, object_id: str, prop: str, query: ListQuery, asof: datetime | None = None
    ) -> tuple[int, list[dict]]:
        """A page of an event list's events (as of `asof` when given)."""
        if asof is None:
            base, fields, documents = (
                select(Event.doc).where(*self._keyed(Event, object_id, prop)),
                _EVENT_FIELDS,
                _EVENT_DOCUMENTS,
            )
        else:
            events = self._events_at(object_id, prop, asof)
            base = select(events.c.doc)
            fields, documents = _event_fields(events.c.event_id, events.c.eventtime, events.c.doc)
        return apply_list_query(
            self.session,
            base,
            query,
            field_for=fields.__getitem__,
            sortable=fields,
            search=(fields["_id"].column,),
            default_sort=[(fields["eventtime"].column, -1), (fields["_id"].column, 1)],
            documents=documents,
        )
