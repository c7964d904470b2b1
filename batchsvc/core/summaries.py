"""Batch summaries: building them; the rules for reading, listing and deleting them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from batchsvc.core.changes import DATA_KINDS, DataChanges
from batchsvc.core.errors import Forbidden, NotFound
from batchsvc.core.identity import Principal, Scope
from batchsvc.core.queries import DATETIME, INT, TEXT, ListQuery, check_fields, shape
from batchsvc.core.times import iso

SUCCESS, WARNING, FAILED = "success", "warning", "failed"
SUMMARY_MAPS = ("curves", "series", "matrix", "events")  # the date -> ids maps of a summary
# `counts` (SPEC §12): what a batch did to each kind of item: objects, observations, curve
# dates, matrix dates, events.
COUNTED_KINDS = ("objects", *DATA_KINDS)
CHANGES = ("created", "updated", "unchanged", "removed")


def change_counts(objects: dict[str, int] | None = None, data: DataChanges | None = None) -> dict:
    """A summary's `counts`: every kind with every key, zero where nothing happened."""
    counts = {kind: dict.fromkeys(CHANGES, 0) for kind in COUNTED_KINDS}
    counts["objects"].update(objects or {})
    if data is not None:
        for kind in DATA_KINDS:
            counts[kind].update(data.tallies[kind].as_dict())
    return counts


class SummaryBuilder:
    """Collects what a batch did, then renders the summary document in one pass."""

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.data: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in SUMMARY_MAPS}
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
        dates = sorted(set().union(*(self.data[kind].keys() for kind in SUMMARY_MAPS)))
        if len(updates) <= 1 and not dates:
            return "Completed Successfully"
        text = "Updated " + ", ".join(updates)
        if len(dates) == 1:
            text += f" for {dates[0]}"
        elif dates:
            text += f" for {dates[0]} to {dates[-1]}"
        return text

    def render(
        self,
        *,
        batch,
        principal: Principal,
        scope: Scope,
        finished: datetime,
        written: int,
        atomic_abort: bool,
        counts: dict | None = None,
    ) -> dict:
        body = {kind: {date: sorted(ids) for date, ids in sorted(self.data[kind].items())} for kind in SUMMARY_MAPS}
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
            "counts": counts if counts is not None else change_counts(),
        }


@dataclass(frozen=True)
class Claimed:
    """The stored summary of a batch id, as `claim` found it."""

    status: str
    body_hash: str
    doc: dict


def get_summary(reader, batch_id: str, source: str = "all") -> dict:
    row = reader.summary(batch_id)
    if row is None or (source != "all" and row.source != source):
        raise NotFound(f"batch {batch_id!r} not found")
    return row.doc


def delete_summary(reader, principal: Principal, batch_id: str, source: str = "all") -> None:
    """Delete a summary (never the objects it wrote): admins any, writers their own."""

    def allow(row) -> None:
        if row is None or (source != "all" and row.source != source):
            raise NotFound(f"batch {batch_id!r} not found")
        if not principal.is_admin and row.user != principal.user:
            raise Forbidden("only batch.admin may delete a batch summary created by another user")

    reader.delete_summary(batch_id, allow)


# What summary lists filter and sort by.
SUMMARY_FIELDS = {
    "_id": TEXT,
    "timestamp": DATETIME,
    "name": TEXT,
    "user": TEXT,
    "status": TEXT,
    "source": TEXT,
    "size": INT,
    **{
        name: TEXT
        for name in ("service", "reason", "loader", "correlationId", "description", "message", "environment", "history")
    },
}


def check_query(query: ListQuery) -> None:
    """Summaries sort and filter by their own fields only."""
    check_fields(query, "summaries", sortable=SUMMARY_FIELDS, filterable=SUMMARY_FIELDS)


def list_summaries(reader, source: str, query: ListQuery) -> tuple[int, list[dict]]:
    check_query(query)
    total, rows = reader.list_summaries(source, query)
    return total, shape(query, [row.doc for row in rows])
