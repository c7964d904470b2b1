"""Applying a batch: classify elements, fold them per object, write, summarise."""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol, TypeVar

from batchsvc.core.changes import DataChanges
from batchsvc.core.documents import MAX_DEPTH, check_shape, element_label, first_bad_element, loads
from batchsvc.core.errors import Busy, Conflict, ConnectionLost, InvalidInput, Retryable, TooLarge, Unprocessable
from batchsvc.core.identity import (
    BATCH_ID_PATTERN,
    BATCH_ID_RULE,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    WRITE,
    Principal,
    Scope,
    is_public,
    source_problem,
)
from batchsvc.core.objects import SERVER_FIELDS, ObjectWrite, PendingWrite, strip_server_fields
from batchsvc.core.periods import series_zone
from batchsvc.core.summaries import FAILED, Claimed, SummaryBuilder, change_counts
from batchsvc.core.times import micros
from batchsvc.core.typed import (
    EVENT_LIST_TYPE,
    EVENT_TYPE,
    DataWrites,
    InvalidData,
    extract_data,
    merge_contracts,
    merge_headers,
    normalise_event,
    parse_time,
)

DEFAULT_REASON = "Update Batch"
OBJECT_SERVICE, OBJECT_REASON = "object", "Update Object"  # the summary of an object-service write (SPEC §11)
T = TypeVar("T")

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
    source: str = "all"  # the objects it may write: those this source shows (object-service writes)

    @property
    def size(self) -> int:
        return len(self.elements)


_BATCH_ID = re.compile(BATCH_ID_PATTERN)
_ENVELOPE_TEXT = {
    "name": "name",
    "service": "service",
    "loader": "loader",
    "correlationId": "correlation_id",
    "description": "description",
    "reason": "reason",
}


def parse_flag(name: str, raw: str | None) -> bool:
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", ""):
        raise InvalidInput(f"{name} must be true or false, got {raw[:32]!r}")
    return value in ("true", "1")


def _envelope(body: dict) -> dict:
    """The envelope's fields (SPEC §3), checked; every problem named in one message."""
    problems: dict[str, str] = {}
    fields: dict = {}
    batch_id = body.get("_id")
    if batch_id is not None:
        if not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id):
            problems["_id"] = f"_id must be {BATCH_ID_RULE}"
        fields["id"] = batch_id
    if "_type" in body and body["_type"] != "VarBatch":
        problems["_type"] = '_type must be "VarBatch"'
    if "elements" not in body:
        problems["elements"] = "Missing data for required field."
    elif not isinstance(body["elements"], list):
        problems["elements"] = "elements must be an array of objects"
    elif not body["elements"]:
        problems["elements"] = "elements must hold at least one element"
    for key, name in _ENVELOPE_TEXT.items():
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            problems[key] = "Not a valid string."
        elif value is not None and len(value) > MAX_TEXT_LENGTH:
            problems[key] = f"Longer than maximum length {MAX_TEXT_LENGTH}."
        fields[name] = value
    history = body.get("history")
    if history is not None and not isinstance(history, bool):
        problems["history"] = "Not a valid boolean."
    fields["history"] = history
    if problems:
        detail = "; ".join(f"{name}: {problem}" for name, problem in sorted(problems.items()))
        raise InvalidInput(f"invalid batch envelope: {detail}", errors={"json": problems})
    return fields


def read_batch_request(
    raw: bytes, *, replace: str | None = None, atomic: str | None = None, reason: str | None = None
) -> BatchRequest:
    """The batch a request body and its query flags (`_replace`, `_atomic`, `_reason`, as sent) ask for.

    Its idempotency hash covers the exact body and the flags: a replay must match all of them."""
    body = loads(raw)
    if isinstance(body, list):
        body = {"elements": body}
    elif not isinstance(body, dict):
        raise InvalidInput("body must be a VarBatch object or a JSON array of elements")
    _check_shape(body)
    envelope = _envelope(body)
    replace_all, all_or_nothing = parse_flag("_replace", replace), parse_flag("_atomic", atomic)
    reason = _reason(reason or envelope["reason"] or DEFAULT_REASON)
    return BatchRequest(
        id=envelope.get("id") or str(uuid.uuid4()),
        elements=body["elements"],
        body_hash=_body_hash(raw, replace_all, all_or_nothing, reason),
        reason=reason,
        name=envelope["name"],
        service=envelope["service"],
        loader=envelope["loader"],
        correlation_id=envelope["correlation_id"],
        description=envelope["description"],
        history=envelope["history"],
        replace=replace_all,
        atomic=all_or_nothing,
    )


def _check_shape(body: dict) -> None:
    problem = check_shape(body)
    if problem:
        found = first_bad_element(body, lambda element: check_shape(element, max_depth=MAX_DEPTH - 2))
        raise InvalidInput(f"body has {problem}" + (f" (element #{found[0]})" if found else ""))


def _reason(reason: str) -> str:
    if len(reason) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"_reason must be at most {MAX_TEXT_LENGTH} characters")
    return reason


def _body_hash(raw: bytes, *flags) -> str:
    digest = hashlib.sha256(raw)
    digest.update("".join(f"\x1f{flag}" for flag in flags).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ObjectWriteRequest:
    """An object-service write (SPEC §11): the batch of its objects, and the one object a
    single-object body writes (`target`; None for an array)."""

    batch: BatchRequest
    single: bool
    target: str | None = None


def object_write_request(
    raw: bytes,
    *,
    source: str = "all",
    replace: str | None = None,
    atomic: str | None = None,
    reason: str | None = None,
) -> ObjectWriteRequest:
    """The batch a body of the object service asks for: one object or an array of them, as the
    elements of a batch with service "object", a generated id and the query flags as sent.

    There is no envelope (an object's `name` or `reason` are its own properties) and no
    idempotency: every call is a new write under a new id."""
    body = loads(raw)
    if isinstance(body, dict):
        elements = [body]
    elif isinstance(body, list) and body:
        elements = body
    elif isinstance(body, list):
        raise InvalidInput("body must hold at least one object")
    else:
        raise InvalidInput("body must be an object (with _id) or a JSON array of objects")
    _check_shape({"elements": elements})  # the depth a batch allows its elements
    replace_all, all_or_nothing = parse_flag("_replace", replace), parse_flag("_atomic", atomic)
    reason = _reason(reason or OBJECT_REASON)
    batch = BatchRequest(
        id=str(uuid.uuid4()),
        elements=elements,
        body_hash=_body_hash(raw, replace_all, all_or_nothing, reason, source),
        reason=reason,
        service=OBJECT_SERVICE,
        replace=replace_all,
        atomic=all_or_nothing,
        source=source,
    )
    single = isinstance(body, dict)
    return ObjectWriteRequest(batch, single, _target(body) if single else None)


def _target(element: dict) -> str | None:
    """The object an element writes: its `_id`, or for a top-level event the object of its list."""
    if element.get("_type") == EVENT_TYPE:
        target = element.get("event")
        return target.rpartition(":")[0] if isinstance(target, str) else None
    ident = element.get("_id")
    return ident if isinstance(ident, str) else None


def object_write_failure(summary: dict) -> Unprocessable:
    """Why a single-object write wrote nothing, as the error it answers (its summary is stored)."""
    failures = summary["summary"]["failures"]
    label, reason = next(iter(failures.items()), (None, summary["message"]))
    message = reason if label is None or label.startswith("#") else f"object {label[:64]!r}: {reason}"
    return Unprocessable(message, errors={"failures": failures, "batch": summary["_id"]})


class BatchStore(Protocol):
    """What applying a batch needs of the store, inside one transaction and one scope
    (store.batches.BatchStore; tests use an in-memory one)."""

    scope: Scope

    def lock_id(self, batch_id: str) -> None: ...
    def claim(self, batch_id: str) -> Claimed | None: ...
    def lock_objects(self, ids: set[str], read: set[str]) -> dict[str, dict | None]: ...
    def stored_curves(self, keys: list[tuple[str, str, date]]) -> dict[tuple[str, str, date], dict]: ...
    def upsert_objects(
        self, rows: list[ObjectWrite], *, user: str, batch_id: str, now: datetime, reason: str
    ) -> None: ...
    def write_data(
        self, wiped_objects: list[str], writes: dict[str, DataWrites], *, batch_id: str, now: datetime
    ) -> DataChanges: ...
    # Both fill doc["counts"]["objects"] in with what this transaction's upsert did.
    def store_summary(self, doc: dict, *, finished: datetime, body_hash: str) -> None: ...
    def store_new_summary(self, doc: dict, *, finished: datetime, body_hash: str) -> bool: ...


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


def _event_element(
    index: int, element: dict, principal: Principal, source: str, builder: SummaryBuilder
) -> EventElement | None:
    label = element_label(index, element)
    target = element.get("event")
    object_id, _, prop = target.rpartition(":") if isinstance(target, str) else ("", "", "")
    if not object_id or not prop or len(object_id) > MAX_ID_LENGTH:
        builder.fail(label, "event must be 'OBJECT:LIST' (the object id and its event-list property)")
        return None
    problem = source_problem(source, object_id)
    if problem:
        builder.fail(label, problem)
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
    restricted = batch.source != "all"
    for index, element in enumerate(batch.elements):
        if type(element) is not dict:
            builder.fail(f"#{index}", f"element #{index} is not a JSON object")
            continue
        kind = element.get("_type")
        if kind == EVENT_TYPE:
            event = _event_element(index, element, principal, batch.source, builder)
            if event is not None:
                events.append(event)
            continue
        ident = element.get("_id")
        if type(ident) is not str or not ident:
            builder.fail(f"#{index}", f"element #{index} has no _id (a non-empty string is required)")
            continue
        if len(ident) > MAX_ID_LENGTH:
            builder.fail(
                f"#{index}", f"element #{index} has an _id of {len(ident)} characters (at most {MAX_ID_LENGTH})"
            )
            continue
        if kind is not None or "_type" in element:  # "_type": null is no type either
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
        problem = restricted and source_problem(batch.source, ident)
        if problem:
            builder.fail(ident, problem)
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

    rows: list[ObjectWrite] = field(default_factory=list)
    data: dict[str, DataWrites] = field(default_factory=dict)  # object id -> its data rows


def _resolve(store: BatchStore, plan: Plan, builder: SummaryBuilder) -> Writes:
    """Turn the plan into rows, reading the store only where the plan depends on it.

    Objects with data merge their data headers with the stored ones and `_merge` curves merge
    with the stored curve; top-level events need their object to exist. Those rows are locked
    (in `_id` order, like the upsert) and read first.
    """
    pending = plan.pending
    writes = Writes()
    if not plan.reads_store:
        # Plain objects only (the bulk of loads): rows straight from the plan, nothing to read.
        writes.rows = [ObjectWrite(w.id, w.doc, w.replace) for w in pending.values()]
        return writes
    ids = set(pending) | {e.object_id for e in plan.events}
    read = {w.id for w in pending.values() if w.data and not w.replace} | {e.object_id for e in plan.events}
    stored = store.lock_objects(ids, read)

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
        writes.rows.append(ObjectWrite(ident, doc, replace))
        if data:
            writes.data[ident] = data
    _merge_stored_curves(store, writes, replaced={w.id for w in pending.values() if w.replace})
    return writes


def _merge_stored_curves(store: BatchStore, writes: Writes, *, replaced: set[str]) -> None:
    """`_merge` curves of objects that keep their stored data merge their contracts into the
    stored curve of that date (incoming tenors win)."""
    wanted = []
    for object_id, data in writes.data.items():
        if object_id in replaced:
            continue
        wanted.extend((object_id, prop, day) for (prop, day), (_, merge) in data.curves.items() if merge)
    for (object_id, prop, day), curve in store.stored_curves(wanted).items():
        new, merge = writes.data[object_id].curves[(prop, day)]
        writes.data[object_id].curves[(prop, day)] = (merge_contracts(curve, new), merge)


def _record_data(builder: SummaryBuilder, writes: Writes, changes: DataChanges) -> None:
    """The summary's date maps: the dates of the data the batch changed (not what it left as stored)."""
    keeping = {object_id for kept in changes.kept.values() for object_id, _ in kept}
    docs = {row.id: row.doc for row in writes.rows} if keeping else {}
    for object_id, data in writes.data.items():
        dates = set(data.dates) if object_id not in keeping else _changed_dates(object_id, data, docs, changes.kept)
        for kind, day, prop in dates:  # a day of points names its series once
            builder.touched(kind, day, f"{object_id}:{prop}")


def _changed_dates(object_id: str, data: DataWrites, docs: dict, kept: dict[str, dict]) -> set[tuple[str, str, str]]:
    """(summary map, date, property) of the object's data items the store did not keep as they were.

    A series sent exactly as stored (the common re-send) is left out whole, one comparison of
    counts; only a series partly kept is looked at point by point."""
    dates = set()
    kept_points = kept["points"]
    sent = Counter(prop for prop, _ in data.points)
    partial = set()
    for prop, count in sent.items():
        same = len(kept_points.get((object_id, prop), ()))
        if same == 0:
            dates.update(date for date in data.dates if date[0] == "series" and date[2] == prop)
        elif same < count:
            partial.add(prop)
    if partial:
        zones = {prop: series_zone(docs.get(object_id, {}).get(prop) or {}) for prop in partial}
        for prop, instant in data.points:
            if prop in partial and micros(instant) not in kept_points[(object_id, prop)]:
                dates.add(("series", instant.astimezone(zones[prop]).date().isoformat(), prop))
    for kind, rows, summary_map in (("curves", data.curves, "curves"), ("matrices", data.matrices, "matrix")):
        for prop, day in rows:
            if day not in kept[kind].get((object_id, prop), ()):
                dates.add((summary_map, day.isoformat(), prop))
    for (prop, ident), (_, event) in data.events.items():
        if ident not in kept["events"].get((object_id, prop), ()):
            dates.add(("events", parse_time(event["eventtime"], "eventtime")[1], prop))
    return dates


def run_transaction(
    transaction: Callable[[], AbstractContextManager[BatchStore]],
    work: Callable[[BatchStore], T],
    *,
    what: str,
    attempts: int = 5,
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`work(store)` in one transaction, run again whole on deadlock, serialization failure or a
    lost connection (with backoff, at most `attempts` times), and at once on `Restart`.

    `transaction()` gives a BatchStore bound to one transaction and scope, committed when the
    block ends cleanly and rolled back otherwise. Every write of the service (batches,
    rollbacks, object deletes) runs through here; `work` must be safe to run again, which
    batches are because a batch id is claimed once (a retry replays what had landed).
    """
    failures = 0
    while True:
        try:
            with transaction() as store:
                return work(store)
        except Restart:
            continue
        except (Retryable, ConnectionLost) as exc:
            # A lost connection is retried too: the work is idempotent, so even a commit whose
            # outcome is unknown is safe to send again (it replays if it had landed).
            failures += 1
            if failures >= attempts:
                if isinstance(exc, ConnectionLost):
                    raise
                raise Busy(
                    f"{what} could not be applied: the database kept reporting conflicts; retry later",
                    retry_after=1,
                ) from None
            if on_retry is not None:
                on_retry(exc.cause if isinstance(exc, Retryable) else "connection_lost")
            # Jittered exponential backoff: the competing transaction usually ends within ms.
            sleep(min(2.0, 0.02 * 2 ** (failures - 1)) * (0.5 + random.random()))


class Restart(Exception):
    """Roll this attempt back and run it again at once: not a failure (no backoff, not counted)."""


def apply_batch(
    transaction: Callable[[], AbstractContextManager[BatchStore]],
    principal: Principal,
    batch: BatchRequest,
    *,
    max_elements: int,
    attempts: int = 5,
    clock: Callable[[], datetime] = utcnow,
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Apply a batch in one transaction, retried whole on deadlock, serialization failure or a lost connection.

    Per-element work stays in set-based statements; a new plain batch costs two round trips
    (BEGIN + id lock + objects + summary, then COMMIT); one with data or events claims first
    and reads what it merges with (BEGIN + claim, the reads, all writes + summary, COMMIT).
    `on_retry(cause)` hears of each retry.
    """
    principal.require(WRITE)
    if batch.size > max_elements:
        raise TooLarge(f"batch has {batch.size} elements; at most {max_elements} are allowed")
    plan = plan_elements(batch, principal)

    # A plain batch is written optimistically: objects and summary in one round trip, the
    # summary only where its id is new (or failed before). If the id is taken, that
    # transaction rolls back and the careful path claims the id first (replay or 409).
    optimistic = not plan.reads_store

    def attempt(store: BatchStore) -> Outcome:
        nonlocal optimistic
        try:
            return _apply_once(store, principal, batch, plan, clock, optimistic=optimistic)
        except _IdTaken:
            optimistic = False  # not a failure: the id is stored, so claim it (replay or 409)
            raise

    return run_transaction(
        transaction, attempt, what=f"batch {batch.id!r}", attempts=attempts, on_retry=on_retry, sleep=sleep
    )


class _IdTaken(Restart):
    """The optimistic write found the batch id stored by a batch that did not fail."""


def _apply_once(
    store: BatchStore, principal: Principal, batch: BatchRequest, plan: Plan, clock, *, optimistic: bool
) -> Outcome:
    if optimistic:
        store.lock_id(batch.id)
    else:
        existing = store.claim(batch.id)
        if existing is not None and existing.status != FAILED:
            if existing.body_hash == batch.body_hash:
                return Outcome(REPLAYED, existing.doc)
            raise Conflict(f"batch {batch.id!r} was already applied with a different body")
    builder = plan.builder.copy()
    writes = _resolve(store, plan, builder)
    atomic_abort = bool(builder.failures) and batch.atomic
    if atomic_abort:
        writes = Writes()
    started = clock()
    store.upsert_objects(writes.rows, user=principal.user, batch_id=batch.id, now=started, reason=batch.reason)
    changes = store.write_data(
        [row.id for row in writes.rows if row.replace], writes.data, batch_id=batch.id, now=started
    )
    _record_data(builder, writes, changes)
    builder.public = any(is_public(row.id) for row in writes.rows)
    finished = clock()
    doc = builder.render(
        batch=batch,
        principal=principal,
        scope=store.scope,
        finished=finished,
        written=len(writes.rows),
        atomic_abort=atomic_abort,
        counts=change_counts(data=changes),
    )
    # The summary statement fills in doc's object counts: what the upsert found in the database.
    if not optimistic:
        store.store_summary(doc, finished=finished, body_hash=batch.body_hash)
    elif not store.store_new_summary(doc, finished=finished, body_hash=batch.body_hash):
        raise _IdTaken()  # rolls this transaction back, objects included
    return Outcome(CREATED if writes.rows else REJECTED, doc)
