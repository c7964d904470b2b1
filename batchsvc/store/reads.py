"""Reads (and the summary delete) on the request's session: objects, summaries, typed data, events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import Text, cast, column, delete, func, literal, select, true
from sqlalchemy.dialects.postgresql import JSONB, JSONPATH
from sqlalchemy.orm import Session

from batchsvc.core.data import DATA_SORTABLE, EVENT_FIELDS
from batchsvc.core.identity import Scope
from batchsvc.core.objects import DEFAULT_TYPE, OBJECT_FIELDS, OBJECT_SORTABLE
from batchsvc.core.queries import INT, TEXT, ListQuery
from batchsvc.core.summaries import SUMMARY_FIELDS
from batchsvc.core.typed import DATA_TYPES
from batchsvc.models import BatchSummary, Curve, Event, Matrix, StoredObject
from batchsvc.store import series
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
_EVENT_COLUMNS = {"_id": Event.event_id, "eventtime": Event.eventtime, "eventtype": Event.doc["eventtype"].astext}
_EVENT_FIELDS = {name: Field(_EVENT_COLUMNS[name], kind) for name, kind in EVENT_FIELDS.items()}
_EVENT_DOCUMENTS = Documents(Event.doc, {name: _EVENT_FIELDS[name] for name in ("_id", "eventtime")})
_DATED_MODELS = {"curve": Curve, "matrix": Matrix}

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


class Reader:
    """The stored records of one tenant and environment, read on the request's session."""

    def __init__(self, session: Session, scope: Scope):
        self.session = session
        self.scope = scope

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

    def dated(self, kind: str, object_id: str, prop: str, day: date | None) -> tuple[date, dict] | None:
        """A curve's or matrix's (date, document) for `day`, or the latest without one."""
        model = _DATED_MODELS[kind]
        query = select(model).where(*self._keyed(model, object_id, prop))
        query = query.where(model.ondate == day) if day else query.order_by(model.ondate.desc()).limit(1)
        row = self.session.scalars(query).first()
        return (row.ondate, row.doc) if row is not None else None

    def tenor_points(
        self, object_id: str, prop: str, tenor: str, *, first: date | None, stop: date | None, last: int | None
    ) -> list[tuple[date, object]]:
        """(curve date, value) of the contract with `tenor` on each curve date in [first, stop)
        that has one, in date order; the newest `last` of them when given."""
        hit = (
            func.jsonb_path_query_first(Curve.doc, _CONTRACT_OF_TENOR, func.jsonb_build_object("tenor", tenor))
            .table_valued(column("contract", JSONB))
            .render_derived(name="hit")
            .lateral("hit")
        )
        query = (
            select(Curve.ondate, hit.c.contract["value"])
            .select_from(Curve)
            .join(hit, true())
            .where(*self._keyed(Curve, object_id, prop), hit.c.contract.is_not(None))
        )
        if first is not None:
            query = query.where(Curve.ondate >= first)
        if stop is not None:
            query = query.where(Curve.ondate < stop)
        if last:
            rows = self.session.execute(query.order_by(Curve.ondate.desc()).limit(last)).all()[::-1]
        else:
            rows = self.session.execute(query.order_by(Curve.ondate)).all()
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

    def event(self, object_id: str, prop: str, event_id: str) -> dict | None:
        return self.session.scalars(
            select(Event.doc).where(*self._keyed(Event, object_id, prop), Event.event_id == event_id)
        ).first()

    def list_events(self, object_id: str, prop: str, query: ListQuery) -> tuple[int, list[dict]]:
        total, rows = apply_list_query(
            self.session,
            select(Event).where(*self._keyed(Event, object_id, prop)),
            query,
            field_for=_EVENT_FIELDS.__getitem__,
            sortable=_EVENT_FIELDS,
            search=(Event.event_id,),
            default_sort=[(Event.eventtime, -1), (Event.event_id, 1)],
            documents=_EVENT_DOCUMENTS,
        )
        return total, [row.doc for row in rows]
