"""Reads (and the summary delete) on the request's session: objects, summaries, typed data, events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from batchsvc.core.data import EVENT_FIELDS
from batchsvc.core.identity import Scope
from batchsvc.core.objects import DEFAULT_TYPE, OBJECT_FIELDS, OBJECT_SORTABLE
from batchsvc.core.queries import INT, TEXT, ListQuery
from batchsvc.core.summaries import SUMMARY_FIELDS
from batchsvc.models import BatchSummary, Curve, Event, Matrix, StoredObject
from batchsvc.store import series
from batchsvc.store.lists import Field, apply_list_query, source_clause

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
_SUMMARY_SEARCH = tuple(BatchSummary.doc[name].astext for name in ("name", "service", "reason", "message"))
_EVENT_COLUMNS = {"_id": Event.event_id, "eventtime": Event.eventtime, "eventtype": Event.doc["eventtype"].astext}
_EVENT_FIELDS = {name: Field(_EVENT_COLUMNS[name], kind) for name, kind in EVENT_FIELDS.items()}
_DATED_MODELS = {"curve": Curve, "matrix": Matrix}


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
        self, object_id: str, prop: str, *, start: datetime | None, end: datetime | None, last: int | None
    ) -> list[dict]:
        """Observations in time order, within [start, end], or only the newest `last`."""
        scope = {"tenant": self.scope.tenant, "environment": self.scope.environment}
        return series.read_points(
            self.session.connection().connection, scope, object_id, prop, start=start, end=end, last=last
        )

    def dated(self, kind: str, object_id: str, prop: str, day: date | None) -> tuple[date, dict] | None:
        """A curve's or matrix's (date, document) for `day`, or the latest without one."""
        model = _DATED_MODELS[kind]
        query = select(model).where(*self._keyed(model, object_id, prop))
        query = query.where(model.ondate == day) if day else query.order_by(model.ondate.desc()).limit(1)
        row = self.session.scalars(query).first()
        return (row.ondate, row.doc) if row is not None else None

    def list_events(self, object_id: str, prop: str, query: ListQuery) -> tuple[int, list[dict]]:
        total, rows = apply_list_query(
            self.session,
            select(Event).where(*self._keyed(Event, object_id, prop)),
            query,
            field_for=_EVENT_FIELDS.__getitem__,
            sortable=_EVENT_FIELDS,
            search=(Event.event_id,),
            default_sort=[(Event.eventtime, -1), (Event.event_id, 1)],
        )
        return total, [row.doc for row in rows]
