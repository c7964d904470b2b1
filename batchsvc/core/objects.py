"""The object store: merging documents, set-based upserts, reading objects back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from batchsvc.core.errors import NotFound
from batchsvc.core.identity import Scope
from batchsvc.core.queries import Field, ListQuery, apply_list_query, source_clause
from batchsvc.core.typed import EVENT_LIST_TYPE, DataWrites, is_data_header, merge_headers
from batchsvc.db import TransactionCursor, int_array, prepared, text_array
from batchsvc.models import StoredObject

DEFAULT_TYPE = "#Object"
SERVER_FIELDS = frozenset({"_id", "_version", "_created", "_timestamp", "_user", "_batch", "_oid", "_replace"})


@dataclass(slots=True)
class PendingWrite:
    """Everything one batch writes to one object, its elements folded together in order."""

    id: str
    doc: dict
    replace: bool
    data: DataWrites | None = None
    writes: int = 1

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
        self.writes += 1


def strip_server_fields(element: dict) -> dict:
    """The storable part of an element: server fields are never taken from input."""
    doc = dict(element)
    for name in SERVER_FIELDS.intersection(element):
        del doc[name]
    return doc


def is_public(object_id: str) -> bool:
    return object_id.startswith("#")


# Rows arrive as parallel arrays (one bound parameter each, no per-row SQL text to build or
# parse) and are inserted in `_id` order, so concurrent batches lock shared objects in the same
# order (SPEC §3.9).
_UPSERT = """
INSERT INTO objects AS o (tenant, environment, id, doc, version, created, updated, "user", batch)
SELECT %(tenant)s, %(environment)s, v.id, v.doc::jsonb, v.writes, %(now)s, %(now)s, %(user)s, %(batch)s
FROM ROWS FROM (unnest(%(ids)s::text[]), json_array_elements(%(docs)s::json), unnest(%(writes)s::int[]))
    AS v(id, doc, writes)
ORDER BY v.id
ON CONFLICT (tenant, environment, id) DO UPDATE SET
    doc = {doc},
    version = o.version + excluded.version,
    updated = excluded.updated,
    "user" = excluded."user",
    batch = excluded.batch
"""
_UPSERT_TYPES = dict(
    tenant="text",
    environment="text",
    now="timestamptz",
    user="text",
    batch="text",
    ids="text[]",
    docs="json",
    writes="int[]",
)
_MERGE = prepared("batchsvc_merge_objects", _UPSERT.format(doc="o.doc || excluded.doc"), **_UPSERT_TYPES)
_REPLACE = prepared("batchsvc_replace_objects", _UPSERT.format(doc="excluded.doc"), **_UPSERT_TYPES)
# A batch mixing both modes upserts every row as a merge (one ordered pass, so it locks like any
# other batch), then sets the replaced documents on rows it already holds: no new locks, no
# deadlock. Two ordered passes of inserts would deadlock concurrent batches again and again.
_SET_REPLACED = prepared(
    "batchsvc_set_replaced_objects",
    """
UPDATE objects AS o SET doc = v.doc::jsonb
FROM ROWS FROM (unnest(%(ids)s::text[]), json_array_elements(%(docs)s::json)) AS v(id, doc)
WHERE o.tenant = %(tenant)s AND o.environment = %(environment)s AND o.id = v.id
""",
    tenant="text",
    environment="text",
    ids="text[]",
    docs="json",
)
_LOCK_SQL = """
SELECT id, CASE WHEN id = ANY(%(read)s) THEN doc END FROM objects
WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = ANY(%(ids)s)
ORDER BY id FOR UPDATE
"""


def lock_objects(cursor, scope: Scope, ids: set[str], read: set[str]) -> dict[str, dict | None]:
    """Lock the stored rows among `ids` in `_id` order; return id -> document (for ids in `read`)."""
    cursor.execute(
        _LOCK_SQL, {"tenant": scope.tenant, "environment": scope.environment, "ids": sorted(ids), "read": sorted(read)}
    )
    return dict(cursor.fetchall())


def upsert_objects(
    cursor: TransactionCursor,
    scope: Scope,
    rows: list[tuple[str, dict, int, bool]],
    *,
    user: str,
    batch_id: str,
    now: datetime,
) -> None:
    """Write a batch's objects, rows (id, doc, writes, replace): one upsert, plus one update of
    the replaced documents when a batch mixes merge and replace; sent with the next statement."""
    if not rows:
        return
    params = {
        "tenant": scope.tenant,
        "environment": scope.environment,
        "now": now,
        "user": user,
        "batch": batch_id,
        "ids": text_array([row[0] for row in rows]),
        "docs": orjson.dumps([row[1] for row in rows]).decode(),  # one JSON array, split by the server
        "writes": int_array([row[2] for row in rows]),
    }
    replaced = [row for row in rows if row[3]]
    cursor.defer(_REPLACE if len(replaced) == len(rows) else _MERGE, params)
    if 0 < len(replaced) < len(rows):
        cursor.defer(
            _SET_REPLACED,
            {
                "tenant": scope.tenant,
                "environment": scope.environment,
                "ids": text_array([row[0] for row in replaced]),
                "docs": orjson.dumps([row[1] for row in replaced]).decode(),
            },
        )


def render(obj: StoredObject) -> dict:
    """An object as served: `_id`, its document, then the server fields."""
    doc = obj.doc
    out = {"_id": obj.id, "_type": doc.get("_type", DEFAULT_TYPE)}
    out.update(doc)
    out["_version"] = obj.version
    out["_created"] = iso(obj.created)
    out["_timestamp"] = iso(obj.updated)
    out["_user"] = obj.user
    out["_batch"] = obj.batch
    source = "public" if is_public(obj.id) else "private"
    for prop, value in doc.items():
        if is_data_header(value):
            route = "event" if value["_type"] == EVENT_LIST_TYPE else "data"
            ref = quote(f"{obj.id}:{prop}", safe="/:")  # '#', '?', '%' … must not end the path
            out[prop] = {**value, "_ref": f"/api/{route}/v1/{source}/{ref}"}
    return out


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, the platform's timestamp form."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def get_object(session: Session, scope: Scope, source: str, object_id: str) -> dict:
    obj = session.get(StoredObject, (scope.tenant, scope.environment, object_id))
    if (
        obj is None
        or (source == "private" and is_public(object_id))
        or (source == "public" and not is_public(object_id))
    ):
        raise NotFound(f"object {object_id!r} not found")
    return render(obj)


OBJECT_FIELDS = {
    "_id": Field(StoredObject.id, "text"),
    "_type": Field(func.coalesce(StoredObject.doc["_type"].astext, DEFAULT_TYPE), "text"),
    "_version": Field(StoredObject.version, "int"),
    "_created": Field(StoredObject.created, "datetime"),
    "_timestamp": Field(StoredObject.updated, "datetime"),
    "_user": Field(StoredObject.user, "text"),
    "_batch": Field(StoredObject.batch, "text"),
}
OBJECT_SORTABLE = {**OBJECT_FIELDS, "name": Field(StoredObject.doc["name"].astext, "text")}
OBJECT_SEARCH = (StoredObject.id, StoredObject.doc["name"].astext, StoredObject.doc["description"].astext)


def _object_field(name: str):
    """Known server fields, or any plain top-level property compared as text."""
    if name in OBJECT_FIELDS:
        return OBJECT_FIELDS[name]
    return Field(StoredObject.doc[name].astext, "text")


def list_objects(session: Session, scope: Scope, source: str, query: ListQuery) -> tuple[int, list[dict]]:
    base = select(StoredObject).where(
        StoredObject.tenant == scope.tenant,
        StoredObject.environment == scope.environment,
        source_clause(StoredObject.id, source),
    )
    total, rows = apply_list_query(
        session,
        base,
        query,
        field_for=_object_field,
        sortable=OBJECT_SORTABLE,
        search=OBJECT_SEARCH,
        default_sort=[(StoredObject.updated, -1), (StoredObject.id, 1)],
    )
    return total, [render(obj) for obj in rows]
