"""Applying a batch: classify elements, fold them per object, write, summarise."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg2

from batchsvc.core import summaries
from batchsvc.core.documents import element_label
from batchsvc.core.errors import Busy, Conflict, TooLarge
from batchsvc.core.identity import WRITE, Principal, Scope
from batchsvc.core.objects import (
    SERVER_FIELDS,
    PendingWrite,
    is_public,
    lock_objects,
    strip_server_fields,
    upsert_objects,
)
from batchsvc.core.summaries import FAILED, SummaryBuilder
from batchsvc.core.typed import (
    EVENT_LIST_TYPE,
    EVENT_TYPE,
    DataWrites,
    InvalidData,
    extract_data,
    merge_contracts,
    merge_headers,
    normalise_event,
    stored_curves,
    write_data,
)
from batchsvc.db import ConnectionLost

DEFAULT_REASON = "Update Batch"
# serialization_failure, deadlock_detected, lock_not_available: safe to retry the whole batch
RETRY_CAUSES = {"40001": "serialization", "40P01": "deadlock", "55P03": "lock_timeout"}
RETRYABLE_CODES = frozenset(RETRY_CAUSES)
CONNECTION_LOST = "connection_lost"

CREATED, REPLAYED, REJECTED = "created", "replayed", "rejected"


@dataclass(frozen=True)
class BatchRequest:
    """A validated envelope: the elements still raw, as the loader sent them."""

    id: str
    elements: list
    body_hash: str
    reason: str = DEFAULT_REASON
    name: str | None = None
    service: str | None = None
    loader: str | None = None
    correlation_id: str | None = None
    description: str | None = None
    history: bool | None = None
    replace: bool = False
    atomic: bool = False

    @property
    def size(self) -> int:
        return len(self.elements)


@dataclass(frozen=True)
class Outcome:
    kind: str  # created | replayed | rejected
    summary: dict


def utcnow() -> datetime:
    # Whole milliseconds, the precision timestamps are served in: a served value filters exactly.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class EventElement:
    """A top-level VarEvent element: one event for the list `prop` of object `object_id`."""

    label: str
    object_id: str
    prop: str
    data: DataWrites


@dataclass
class Plan:
    """What a batch will write, worked out before any database work."""

    pending: dict[str, PendingWrite]
    events: list[EventElement]
    builder: SummaryBuilder

    @property
    def reads_store(self) -> bool:
        """Whether resolving the plan reads stored objects (data headers, `_merge` curves, events)."""
        return bool(self.events) or any(w.data for w in self.pending.values())


def _event_element(index: int, element: dict, principal: Principal, builder: SummaryBuilder) -> EventElement | None:
    label = element_label(index, element)
    target = element.get("event")
    object_id, _, prop = target.rpartition(":") if isinstance(target, str) else ("", "", "")
    if not object_id or not prop or len(object_id) > 256:
        builder.fail(label, "event must be 'OBJECT:LIST' (the object id and its event-list property)")
        return None
    if is_public(object_id) and not principal.is_admin:
        builder.fail(label, "only batch.admin may write public objects (ids starting with '#')")
        return None
    event = {k: v for k, v in element.items() if k not in SERVER_FIELDS or k == "_id"}
    event.pop("event")
    try:
        ident, instant, day, stored = normalise_event(prop, index, event)
    except InvalidData as exc:
        builder.fail(label, str(exc))
        return None
    return EventElement(
        label, object_id, prop, DataWrites(events={(prop, ident): (instant, stored)}, dates=[("events", day, prop)])
    )


def plan_elements(batch: BatchRequest, principal: Principal) -> Plan:
    """Validate each element and fold the valid ones per `_id`, in order (spec §3.1-2)."""
    builder = SummaryBuilder()
    pending: dict[str, PendingWrite] = {}
    events: list[EventElement] = []
    admin = principal.is_admin
    for index, element in enumerate(batch.elements):
        if type(element) is not dict:
            builder.fail(f"#{index}", f"element #{index} is not a JSON object")
            continue
        kind = element.get("_type")
        if kind == EVENT_TYPE:
            event = _event_element(index, element, principal, builder)
            if event is not None:
                events.append(event)
            continue
        ident = element.get("_id")
        if type(ident) is not str or not ident:
            builder.fail(f"#{index}", f"element #{index} has no _id (a non-empty string is required)")
            continue
        if len(ident) > 256:
            builder.fail(f"#{index}", f"element #{index} has an _id of {len(ident)} characters (at most 256)")
            continue
        if kind is not None:
            if type(kind) is not str:
                builder.fail(ident, "_type must be a string")
                continue
            if kind.startswith("Var"):
                builder.fail(ident, f"_type {kind[:64]!r} is not an object type")
                continue
        replace = element.get("_replace", False)
        if replace is not False and replace is not True:
            builder.fail(ident, "_replace must be true or false")
            continue
        if not admin and is_public(ident):
            builder.fail(ident, "only batch.admin may write public objects (ids starting with '#')")
            continue
        try:
            doc, data = extract_data(strip_server_fields(element))
        except InvalidData as exc:
            builder.fail(ident, str(exc))
            continue
        replace = replace or batch.replace
        if ident in pending:
            pending[ident].fold(doc, replace, data)
        else:
            pending[ident] = PendingWrite(ident, doc, replace, data)
    return Plan(pending, events, builder)


@dataclass
class Writes:
    """One attempt's resolved writes: object rows and data rows."""

    rows: list = field(default_factory=list)  # (id, doc, writes, replace)
    data: dict = field(default_factory=dict)  # object id -> DataWrites


def _resolve(cursor, scope: Scope, plan: Plan, builder: SummaryBuilder) -> Writes:
    """Turn the plan into rows, reading the store only where the plan depends on it.

    Objects with data merge their data headers with the stored ones and `_merge` curves merge
    with the stored curve; top-level events need their object to exist. Those rows are locked
    (in `_id` order, like the upsert) and read first.
    """
    pending = plan.pending
    writes = Writes()
    if not plan.reads_store:
        # Plain objects only (the bulk of loads): rows straight from the plan, nothing to read.
        writes.rows = [(w.id, w.doc, w.writes, w.replace) for w in pending.values()]
        return writes
    ids = set(pending) | {e.object_id for e in plan.events}
    read = {w.id for w in pending.values() if w.data and not w.replace} | {e.object_id for e in plan.events}
    stored = lock_objects(cursor, scope, ids, read)

    extra: dict[str, list[EventElement]] = {}
    for event in plan.events:
        if event.object_id in pending or event.object_id in stored:
            extra.setdefault(event.object_id, []).append(event)
        else:
            builder.fail(event.label, f"event object {event.object_id[:64]!r} does not exist")

    for ident in sorted(set(pending) | set(extra)):
        write = pending.get(ident)
        events = extra.get(ident, [])
        doc = dict(write.doc) if write else {}
        data = DataWrites()
        if write and write.data:
            data.update(write.data)
        for event in events:
            doc[event.prop] = {"_type": EVENT_LIST_TYPE}
            data.update(event.data)
        replace = bool(write and write.replace)
        if not replace and stored.get(ident):
            doc = merge_headers(stored[ident], doc)
        writes.rows.append((ident, doc, (write.writes if write else 0) + len(events), replace))
        if data:
            writes.data[ident] = data

    merge_keys = [
        (o, p, d)
        for o, data in writes.data.items()
        if not pending.get(o, _NO_WRITE).replace
        for (p, d), (_, merge) in data.curves.items()
        if merge
    ]
    for (o, p, d), curve in stored_curves(cursor, scope, merge_keys).items():
        new, merge = writes.data[o].curves[(p, d)]
        writes.data[o].curves[(p, d)] = (merge_contracts(curve, new), merge)
    return writes


_NO_WRITE = PendingWrite("", {}, False)


def _record_data(builder: SummaryBuilder, writes: Writes) -> None:
    for object_id, data in writes.data.items():
        for kind, day, prop in data.dates:
            builder.touched(kind, day, f"{object_id}:{prop}")


def apply_batch(
    transaction: Callable[[], AbstractContextManager],
    scope: Scope,
    principal: Principal,
    batch: BatchRequest,
    *,
    max_elements: int,
    attempts: int = 5,
    clock: Callable[[], datetime] = utcnow,
    on_retry: Callable[[str], None] | None = None,
) -> Outcome:
    """Apply a batch in one transaction, retried whole on deadlock, serialization failure or a lost connection.

    `transaction()` gives a TransactionCursor that commits when the block ends cleanly and
    rolls back otherwise. Per-element work stays in set-based statements; a new plain batch
    costs two round trips (BEGIN + id lock + objects + summary, then COMMIT); one with data or
    events claims first and reads what it merges with (BEGIN + claim, the reads, all writes +
    summary, COMMIT). `on_retry` hears the cause of each retry (a `RETRY_CAUSES` value or
    `CONNECTION_LOST`), for metrics.
    """
    principal.require(WRITE)
    if batch.size > max_elements:
        raise TooLarge(f"batch has {batch.size} elements; at most {max_elements} are allowed")
    plan = plan_elements(batch, principal)

    # A plain batch is written optimistically: objects and summary in one round trip, the
    # summary only where its id is new (or failed before). If the id is taken, that
    # transaction rolls back and the careful path claims the id first (replay or 409).
    optimistic = not plan.reads_store
    failures = 0
    while True:
        try:
            with transaction() as cursor:
                return _apply_once(cursor, scope, principal, batch, plan, clock, optimistic=optimistic)
        except _IdTaken:
            optimistic = False  # not a failure: the id is stored, so claim it (replay or 409)
        except (psycopg2.Error, ConnectionLost) as exc:
            # A lost connection is retried too: the batch is idempotent, so even a commit whose
            # outcome is unknown is safe to send again (it replays if it had landed).
            if getattr(exc, "pgcode", None) not in RETRYABLE_CODES and not isinstance(exc, ConnectionLost):
                raise
            failures += 1
            if failures >= attempts:
                if isinstance(exc, ConnectionLost):
                    raise
                raise Busy(
                    f"batch {batch.id!r} could not be applied: the database kept reporting conflicts; retry later",
                    retry_after=1,
                ) from None
            if on_retry is not None:
                on_retry(CONNECTION_LOST if isinstance(exc, ConnectionLost) else RETRY_CAUSES[exc.pgcode])
            # Jittered exponential backoff: the competing transaction usually ends within ms.
            time.sleep(min(2.0, 0.02 * 2 ** (failures - 1)) * (0.5 + random.random()))


class _IdTaken(Exception):
    """The optimistic write found the batch id stored by a batch that did not fail."""


def _apply_once(
    cursor, scope: Scope, principal: Principal, batch: BatchRequest, plan: Plan, clock, *, optimistic: bool
) -> Outcome:
    if optimistic:
        summaries.lock_id(cursor, scope, batch.id)
    else:
        existing = summaries.claim(cursor, scope, batch.id)
        if existing is not None and existing.status != FAILED:
            if existing.body_hash == batch.body_hash:
                return Outcome(REPLAYED, existing.doc)
            raise Conflict(f"batch {batch.id!r} was already applied with a different body")
    builder = plan.builder.copy()
    writes = _resolve(cursor, scope, plan, builder)
    atomic_abort = bool(builder.failures) and batch.atomic
    if atomic_abort:
        writes = Writes()
    started = clock()
    upsert_objects(cursor, scope, writes.rows, user=principal.user, batch_id=batch.id, now=started)
    write_data(cursor, scope, [ident for ident, _, _, replace in writes.rows if replace], writes.data)
    _record_data(builder, writes)
    builder.public = any(is_public(row[0]) for row in writes.rows)
    finished = clock()
    doc = builder.render(
        batch=batch,
        principal=principal,
        scope=scope,
        finished=finished,
        written=len(writes.rows),
        atomic_abort=atomic_abort,
    )
    if not optimistic:
        summaries.store(cursor, scope, doc, finished=finished, body_hash=batch.body_hash)
    elif not summaries.store_new(cursor, scope, doc, finished=finished, body_hash=batch.body_hash):
        raise _IdTaken()  # rolls this transaction back, objects included
    return Outcome(CREATED if writes.rows else REJECTED, doc)
