"""The object store's rules: folding a batch's elements per object, server fields, how objects are served."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import quote

from batchsvc.core.errors import NotFound
from batchsvc.core.identity import is_public, visible
from batchsvc.core.queries import DATETIME, INT, TEXT, ListQuery, check_fields, shape
from batchsvc.core.times import iso
from batchsvc.core.typed import EVENT_LIST_TYPE, DataWrites, is_data_header, merge_headers

DEFAULT_TYPE = "#Object"
SERVER_FIELDS = frozenset({"_id", "_version", "_created", "_timestamp", "_user", "_batch", "_oid", "_replace"})
# What object lists filter and sort by (any other top-level property filters too, as text).
OBJECT_FIELDS = {
    "_id": TEXT,
    "_type": TEXT,
    "_version": INT,
    "_created": DATETIME,
    "_timestamp": DATETIME,
    "_user": TEXT,
    "_batch": TEXT,
}
OBJECT_SORTABLE = {**OBJECT_FIELDS, "name": TEXT}


@dataclass(slots=True)
class PendingWrite:
    """Everything one batch writes to one object, its elements folded together in order."""

    id: str
    doc: dict
    replace: bool
    data: DataWrites | None = None

    def fold(self, doc: dict, replace: bool, data: DataWrites | None) -> None:
        """Apply a later element of the same batch over this one (spec §3.1)."""
        if replace:
            self.doc, self.replace, self.data = doc, True, data
        else:
            self.doc.update(merge_headers(self.doc, doc))  # data headers merge (metadata merges, §6)
            if data is not None:
                if self.data is None:
                    self.data = DataWrites()
                self.data.update(data)


@dataclass(frozen=True, slots=True)
class ObjectWrite:
    """One object row a batch hands the store: its document, merged into the stored one
    unless `replace`. A row that leaves the stored document as it is changes nothing; any
    other makes one new version, however many elements of the batch it folds (SPEC §12)."""

    id: str
    doc: dict
    replace: bool


class StoredRecord(Protocol):
    """An object as the store holds it: the document and its server columns."""

    id: str
    doc: dict
    version: int
    created: datetime
    updated: datetime
    user: str
    batch: str


def strip_server_fields(element: dict) -> dict:
    """The storable part of an element: server fields are never taken from input."""
    doc = dict(element)
    for name in SERVER_FIELDS.intersection(element):
        del doc[name]
    return doc


def render(obj: StoredRecord) -> dict:
    """An object as served: `_id`, its document, then the server fields; data as headers with a `_ref`."""
    doc = obj.doc
    out = {"_id": obj.id, "_type": doc.get("_type", DEFAULT_TYPE)}
    out.update(doc)
    out["_version"] = obj.version
    out["_created"] = iso(obj.created)
    out["_timestamp"] = iso(obj.updated)
    out["_user"] = obj.user
    out["_batch"] = obj.batch
    for prop, value in doc.items():
        if is_data_header(value):
            out[prop] = {**value, "_ref": data_ref(obj.id, prop, value)}
    return out


def data_ref(object_id: str, prop: str, header: dict) -> str:
    """The route that reads a data property: its series, curve, matrix or event list."""
    route = "event" if header["_type"] == EVENT_LIST_TYPE else "data"
    return f"/api/{route}/v1/{source_of(object_id)}/{path_segment(f'{object_id}:{prop}')}"


def source_of(object_id: str) -> str:
    """The source an object belongs to: public for '#' ids, else private."""
    return "public" if is_public(object_id) else "private"


def path_segment(ident: str) -> str:
    """An id as it goes into a route: '/' and ':' stay, '#', '?', '%' … are encoded so they cannot end the path."""
    return quote(ident, safe="/:")


def object_location(object_id: str) -> str:
    """Where an object is read back: `/api/object/v1/{source}/{id}`."""
    return f"/api/object/v1/{source_of(object_id)}/{path_segment(object_id)}"


def get_object(reader, source: str, object_id: str) -> dict:
    obj = reader.object(object_id)
    if obj is None or not visible(source, object_id):
        raise NotFound(f"object {object_id!r} not found")
    return render(obj)


def list_objects(reader, source: str, query: ListQuery) -> tuple[int, list[dict]]:
    check_fields(query, "objects", sortable=OBJECT_SORTABLE, filterable=None)
    total, rows = reader.list_objects(source, query)
    return total, shape(query, [render(obj) for obj in rows])
