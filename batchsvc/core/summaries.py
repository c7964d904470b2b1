"""Batch summaries: building them, storing them, listing, reading and deleting them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from batchsvc.core.errors import Forbidden, InvalidInput, NotFound
from batchsvc.core.identity import Principal, Scope
from batchsvc.core.objects import iso
from batchsvc.core.queries import Field, ListQuery, apply_list_query
from batchsvc.db import TransactionCursor, prepared
from batchsvc.models import BatchSummary

SUCCESS, WARNING, FAILED = "success", "warning", "failed"
DATA_KINDS = ("curves", "series", "matrix", "events")


class SummaryBuilder:
    """Collects what a batch did, then renders the summary document in one pass."""

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.data: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in DATA_KINDS}
        self.public = False

    def copy(self) -> SummaryBuilder:
        """A builder to fill in one transaction attempt, leaving the planned failures intact."""
        twin = SummaryBuilder()
        twin.failures = dict(self.failures)
        return twin

    def fail(self, label: str, reason: str) -> None:
        # A repeated label (same _id failing twice) keeps the first reason and gets an index.
        key = label if label not in self.failures else f"{label}#{len(self.failures)}"
        self.failures[key] = reason

    def touched(self, kind: str, date: str, ident: str) -> None:
        self.data[kind][date].add(ident)

    def status(self, written: int) -> str:
        if not self.failures:
            return SUCCESS
        return WARNING if written else FAILED

    def message(self, size: int, written: int, atomic_abort: bool) -> str:
        if self.failures:
            text = f"{len(self.failures)} of {size} elements failed"
            return text + ("; nothing was written (_atomic)" if atomic_abort else "")
        updates = []
        if written:
            updates.append(f"{written} object{'s' if written != 1 else ''}")
        for kind, one, many in (
            ("series", "series", "series"),
            ("curves", "curve", "curves"),
            ("matrix", "matrix", "matrices"),
            ("events", "event list", "event lists"),
        ):
            ids = set().union(*self.data[kind].values()) if self.data[kind] else set()
            if ids:
                updates.append(f"{len(ids)} {one if len(ids) == 1 else many}")
        dates = sorted(set().union(*(self.data[kind].keys() for kind in DATA_KINDS)))
        if len(updates) <= 1 and not dates:
            return "Completed Successfully"
        text = "Updated " + ", ".join(updates)
        if len(dates) == 1:
            text += f" for {dates[0]}"
        elif dates:
            text += f" for {dates[0]} to {dates[-1]}"
        return text

    def render(
        self, *, batch, principal: Principal, scope: Scope, finished: datetime, written: int, atomic_abort: bool
    ) -> dict:
        body = {kind: {date: sorted(ids) for date, ids in sorted(self.data[kind].items())} for kind in DATA_KINDS}
        body["failures"] = dict(self.failures)
        return {
            "_id": batch.id,
            "user": principal.user,
            "environment": scope.environment,
            "timestamp": iso(finished),
            "service": batch.service,
            "name": batch.name,
            "reason": batch.reason,
            "loader": batch.loader,
            "correlationId": batch.correlation_id,
            "description": batch.description,
            "history": batch.history,
            "source": "public" if self.public else "private",
            "status": self.status(written),
            "message": self.message(batch.size, written, atomic_abort),
            "size": batch.size,
            "summary": body,
        }


@dataclass(frozen=True)
class Claimed:
    """The stored summary of a batch id, as `claim` found it."""

    status: str
    body_hash: str
    doc: dict


# The hot path of every batch, so prepared statements on the transaction cursor: the advisory
# lock serialises concurrent posts of one batch id (the second waits, then replays), the row
# lock guards against a concurrent delete. Both travel in one round trip, with BEGIN.
_LOCK_ID = prepared("batchsvc_lock_batch_id", "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))", key="text")
_CLAIM = prepared(
    "batchsvc_claim_summary",
    """
SELECT status, body_hash, doc FROM batch_summaries
WHERE tenant = %(tenant)s AND environment = %(environment)s AND id = %(id)s
FOR UPDATE
""",
    tenant="text",
    environment="text",
    id="text",
)
_STORE_SQL = """
INSERT INTO batch_summaries AS s (tenant, environment, id, timestamp, name, "user", status, source, body_hash, doc)
VALUES (%(tenant)s, %(environment)s, %(id)s, %(timestamp)s, %(name)s, %(user)s, %(status)s, %(source)s,
        %(body_hash)s, %(doc)s)
ON CONFLICT (tenant, environment, id) DO UPDATE SET
    timestamp = excluded.timestamp, name = excluded.name, "user" = excluded."user", status = excluded.status,
    source = excluded.source, body_hash = excluded.body_hash, doc = excluded.doc
"""
_STORE_TYPES = dict(
    tenant="text",
    environment="text",
    id="text",
    timestamp="timestamptz",
    name="text",
    user="text",
    status="text",
    source="text",
    body_hash="text",
    doc="jsonb",
)
_STORE = prepared("batchsvc_store_summary", _STORE_SQL, **_STORE_TYPES)
# Stores only where no summary, or a failed one, holds the id: the optimistic path of a new batch.
_STORE_NEW = prepared(
    "batchsvc_store_new_summary", _STORE_SQL + "WHERE s.status = 'failed' RETURNING 1", **_STORE_TYPES
)


def lock_id(cursor: TransactionCursor, scope: Scope, batch_id: str) -> None:
    """Serialise concurrent posts of one batch id until this transaction ends (sent with the next statement)."""
    cursor.defer(_LOCK_ID, {"key": f"{scope.tenant}\x1f{scope.environment}\x1f{batch_id}"})


def claim(cursor: TransactionCursor, scope: Scope, batch_id: str) -> Claimed | None:
    """Take the batch id for this transaction and return its stored summary, if any."""
    lock_id(cursor, scope, batch_id)
    cursor.run(_CLAIM, {"tenant": scope.tenant, "environment": scope.environment, "id": batch_id})
    row = cursor.fetchone()
    return Claimed(*row) if row else None


def store(cursor: TransactionCursor, scope: Scope, doc: dict, *, finished: datetime, body_hash: str) -> None:
    """Insert the summary, or overwrite one under the same id (sent with the next statement)."""
    cursor.defer(_STORE, _summary_row(scope, doc, finished, body_hash))


def store_new(cursor: TransactionCursor, scope: Scope, doc: dict, *, finished: datetime, body_hash: str) -> bool:
    """Insert the summary, or overwrite a failed one; False, storing nothing, when a summary
    that did not fail holds the id (the batch is a replay or a conflict)."""
    cursor.run(_STORE_NEW, _summary_row(scope, doc, finished, body_hash))
    return cursor.fetchone() is not None


def _summary_row(scope: Scope, doc: dict, finished: datetime, body_hash: str) -> dict:
    return {
        "tenant": scope.tenant,
        "environment": scope.environment,
        "id": doc["_id"],
        "timestamp": finished,
        "name": doc["name"],
        "user": doc["user"],
        "status": doc["status"],
        "source": doc["source"],
        "body_hash": body_hash,
        "doc": orjson.dumps(doc).decode(),
    }


def _scoped(scope: Scope):
    return select(BatchSummary).where(
        BatchSummary.tenant == scope.tenant, BatchSummary.environment == scope.environment
    )


def get_summary(session: Session, scope: Scope, batch_id: str, source: str = "all") -> dict:
    row = session.scalars(_scoped(scope).where(BatchSummary.id == batch_id)).one_or_none()
    if row is None or (source != "all" and row.source != source):
        raise NotFound(f"batch {batch_id!r} not found")
    return row.doc


def delete_summary(session: Session, scope: Scope, principal: Principal, batch_id: str, source: str = "all") -> None:
    """Delete a summary (never the objects it wrote): admins any, writers their own."""
    with session.begin():
        row = session.scalars(_scoped(scope).where(BatchSummary.id == batch_id).with_for_update()).one_or_none()
        if row is None or (source != "all" and row.source != source):
            raise NotFound(f"batch {batch_id!r} not found")
        if not principal.is_admin and row.user != principal.user:
            raise Forbidden("only batch.admin may delete a batch summary created by another user")
        session.execute(
            delete(BatchSummary).where(
                BatchSummary.tenant == scope.tenant,
                BatchSummary.environment == scope.environment,
                BatchSummary.id == batch_id,
            )
        )


def _doc_text(name):
    return Field(BatchSummary.doc[name].astext, "text")


SUMMARY_FIELDS = {
    "_id": Field(BatchSummary.id, "text"),
    "timestamp": Field(BatchSummary.timestamp, "datetime"),
    "name": Field(BatchSummary.name, "text"),
    "user": Field(BatchSummary.user, "text"),
    "status": Field(BatchSummary.status, "text"),
    "source": Field(BatchSummary.source, "text"),
    "size": Field(BatchSummary.doc["size"].as_integer(), "int"),
    **{
        name: _doc_text(name)
        for name in ("service", "reason", "loader", "correlationId", "description", "message", "environment", "history")
    },
}
SUMMARY_SEARCH = tuple(BatchSummary.doc[name].astext for name in ("name", "service", "reason", "message"))


def _summary_field(name: str) -> Field:
    if name not in SUMMARY_FIELDS:
        raise InvalidInput(f"cannot filter summaries by {name[:64]!r}; fields: {', '.join(sorted(SUMMARY_FIELDS))}")
    return SUMMARY_FIELDS[name]


def list_summaries(session: Session, scope: Scope, source: str, query: ListQuery) -> tuple[int, list[dict]]:
    base = _scoped(scope)
    if source in ("private", "public"):
        base = base.where(BatchSummary.source == source)
    total, rows = apply_list_query(
        session,
        base,
        query,
        field_for=_summary_field,
        sortable=SUMMARY_FIELDS,
        search=SUMMARY_SEARCH,
        default_sort=[(BatchSummary.timestamp, -1), (BatchSummary.id, 1)],
    )
    return total, [row.doc for row in rows]
