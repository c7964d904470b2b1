"""Object history (SPEC §12): versions and as-of reads, undoing a batch, deleting an object, retention.

An object's version is its document's: a batch that changes the document (properties or data
headers) makes one new version, whatever number of its elements folded into it; a batch that
leaves it as stored makes none. Data rows (observations, curves, matrices, events) are not
part of the object's version: their history is their own.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from batchsvc.core.batches import CREATED, REJECTED, Outcome, run_transaction, utcnow
from batchsvc.core.changes import DataChanges, DataItem
from batchsvc.core.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from batchsvc.core.identity import BATCH_ID_PATTERN, MAX_TEXT_LENGTH, WRITE, Principal, is_public, visible
from batchsvc.core.objects import render
from batchsvc.core.queries import parse_list_query
from batchsvc.core.summaries import FAILED, SummaryBuilder, change_counts
from batchsvc.core.times import iso, parse_instant

ROLLBACK_SERVICE, OBJECT_SERVICE = "rollback", "object"
VERSIONS = "*"  # the last path segment that lists an object's versions
MAX_LISTED_CONFLICTS = 100
_VERSION = re.compile(r"^[0-9]{1,9}$")
_BATCH_ID = re.compile(BATCH_ID_PATTERN)
OBJECTS = "objects"  # the change log's kind for objects (data kinds add their own)
# What a batch did to one item, as its change log says; what undoing it does.
WAS_CREATED, WAS_UPDATED, WAS_REMOVED = "created", "updated", "removed"
REMOVE, RESTORE, RECREATE = "remove", "restore", "recreate"


# --- Reading versions ----------------------------------------------------------------------------


class HistoryReader(Protocol):
    """What version reads need of the store (store.history.HistoryReader)."""

    def object(self, object_id: str): ...
    def archived_version(self, object_id: str, version: int): ...
    def archived_versions(self, object_id: str, below: int, *, limit: int, skip: int) -> tuple[int, list]: ...
    def archived_at(self, object_id: str, instant: datetime): ...
    def pruned_before(self) -> datetime | None: ...


@dataclass(frozen=True)
class Answer:
    """One object (`item`), or a page of its versions (`items`, of `total`)."""

    item: dict | None = None
    items: list[dict] | None = None
    total: int = 0


def current_since(obj) -> datetime:
    """When the object's current state became current: written at `updated`, or restored later."""
    return obj.restored_at or obj.updated


def state_at(archived, current, instant: datetime):
    """The state an object had at `instant`: its archived state current then, else its current
    state if that was current already (None: it did not exist then, or history was pruned)."""
    if archived is not None:
        return archived
    return current if current is not None and current_since(current) <= instant else None


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) != 1:
        raise InvalidInput(f"query parameter {name!r} given more than once")
    return values[0]


def parse_version(raw: str, what: str = "_version") -> int:
    if not _VERSION.match(raw.strip()) or int(raw) < 1:
        raise InvalidInput(f"{what} must be a whole number from 1 (the first version), got {raw[:40]!r}")
    return int(raw)


def parse_asof(raw: str) -> datetime:
    try:
        return parse_instant(raw)
    except ValueError:
        raise InvalidInput(f"_asof must be an ISO-8601 date or date-time, got {raw[:40]!r}") from None


def read_object(reader: HistoryReader, source: str, path: str, params: dict[str, list[str]]) -> Answer:
    """GET /api/object/v1/{source}/{path}: the object, one of its versions, or its versions.

    A path whose whole remainder names a stored object is that object. Otherwise a last segment
    of digits selects that version of the object the rest names, and `*` lists its versions.
    `_version=N` and `_asof=instant` always take the whole path as the object's id."""
    asof, version = _single(params, "_asof"), _single(params, "_version")
    if asof is not None and version is not None:
        raise InvalidInput("_asof and _version cannot be combined: ask for a version or an instant")
    if asof is not None:
        return Answer(item=object_as_of(reader, source, path, parse_asof(asof)))
    if version is not None:
        return Answer(item=object_version(reader, source, path, parse_version(version)))
    obj = reader.object(path) if visible(source, path) else None
    if obj is not None:
        return Answer(item=render(obj))
    head, _, last = path.rpartition("/")
    if head and visible(source, head) and (last == VERSIONS or _VERSION.match(last)):
        obj = reader.object(head)
        if obj is not None:
            if last == VERSIONS:
                query = parse_list_query({k: v for k, v in params.items() if k in ("_limit", "_skip")})
                total, items = list_versions(reader, obj, limit=query.limit, skip=query.skip)
                return Answer(items=items, total=total)
            return Answer(item=_version_of(reader, obj, parse_version(last, "the version in the path")))
    raise NotFound(f"object {path!r} not found")


def _version_of(reader: HistoryReader, obj, version: int) -> dict:
    if version == obj.version:
        return render(obj)
    if version > obj.version:
        raise NotFound(f"object {obj.id!r} has no version {version}; its latest is {obj.version}")
    row = reader.archived_version(obj.id, version)
    if row is None:
        raise Gone(f"version {version} of object {obj.id!r} was pruned")
    return render(row)


def object_version(reader: HistoryReader, source: str, object_id: str, version: int) -> dict:
    """Version `version` of the object, as it was served then."""
    obj = reader.object(object_id) if visible(source, object_id) else None
    if obj is None:
        raise NotFound(f"object {object_id!r} not found")
    return _version_of(reader, obj, version)


def object_as_of(reader: HistoryReader, source: str, object_id: str, instant: datetime) -> dict:
    """The object as the store served it at `instant`."""
    if not visible(source, object_id):
        raise NotFound(f"object {object_id!r} not found")
    archived = reader.archived_at(object_id, instant)
    row = state_at(archived, reader.object(object_id) if archived is None else None, instant)
    if row is not None:
        return render(row)
    pruned = reader.pruned_before()
    if pruned is not None and instant < pruned:
        raise Gone(f"history before {iso(pruned)} was pruned: object {object_id!r} at {iso(instant)} is not known")
    raise NotFound(f"object {object_id!r} did not exist at {iso(instant)}")


def version_item(record) -> dict:
    return {
        "_id": record.id,
        "_version": record.version,
        "_timestamp": iso(record.updated),
        "_user": record.user,
        "_batch": record.batch,
        "reason": record.reason,
    }


def list_versions(reader: HistoryReader, obj, *, limit: int, skip: int) -> tuple[int, list[dict]]:
    """The object's versions, newest first: the current one, then its archived predecessors."""
    head = [obj] if skip == 0 else []
    archived_total, rows = reader.archived_versions(obj.id, obj.version, limit=limit - len(head), skip=max(0, skip - 1))
    return 1 + archived_total, [version_item(record) for record in head + list(rows)]


# --- Undoing a batch -----------------------------------------------------------------------------


class HistoryWrites(Protocol):
    """The history statements of one batch transaction (store.history.HistoryWrites)."""

    def lock_summary(self, batch_id: str): ...
    def mark_rolled_back(self, batch_id: str, by: str) -> None: ...
    def changes(self, batch_id: str) -> dict[str, tuple[list[str], list[str], list[str]]]: ...
    def log_changes(
        self, batch_id: str, kind: str, now: datetime, *, created: list[str], updated: list[str], removed: list[str]
    ) -> None: ...
    def pruned_before(self) -> datetime | None: ...
    def lock_current(self, ids: list[str]) -> dict[str, tuple[int, str, str | None]]: ...
    def states_before(self, ids: list[str], batch_id: str) -> dict[str, int]: ...
    def previous_version(self, object_id: str, version: int) -> int | None: ...
    def trails(self, ids: list[str]) -> dict[str, list]: ...
    def remove(self, ids: list[str], *, now: datetime, by: str) -> None: ...
    def restore(self, states: dict[str, int], *, now: datetime, by: str) -> None: ...
    def recreate(self, states: dict[str, int], *, now: datetime, by: str) -> None: ...


class HistoryStore(Protocol):
    """A batch transaction's store with its history statements (store.batches.BatchStore)."""

    scope: object
    history: HistoryWrites

    def lock_id(self, batch_id: str) -> None: ...
    def claim(self, batch_id: str): ...
    def remove_data(self, object_ids: list[str], *, batch_id: str, now: datetime) -> DataChanges: ...
    def data_items(self, batch_id: str, log: dict) -> list[DataItem]: ...
    def undo_data(self, actions: list[tuple[DataItem, str]], *, batch_id: str, now: datetime) -> DataChanges: ...
    def data_writers(self, object_ids: list[str]) -> dict[str, set[str]]: ...
    def store_summary(self, doc: dict, *, finished: datetime, body_hash: str) -> None: ...


@dataclass(frozen=True)
class HistoryBatch:
    """A batch the service makes itself (a rollback, an object delete), as summaries read it."""

    id: str
    service: str
    reason: str
    size: int
    name: str | None = None
    loader: str | None = None
    correlation_id: str | None = None
    description: str | None = None
    history: bool | None = None

    @property
    def body_hash(self) -> str:
        return hashlib.sha256(f"{self.service}\x1f{self.id}\x1f{self.reason}".encode()).hexdigest()


def undo(change: str, batch_id: str, current: tuple | None, before: int | None) -> tuple[str | None, str]:
    """The conflict rule: what undoing `batch_id`'s change of one item does (action, or None and
    why not). `current` is the item's current (version, batch that wrote it, rollback or delete
    that restored it), `before` whether its state before the batch is kept (archived).

    The item is still as the batch left it when its current state is the one the batch wrote
    (even if a rollback of a later batch brought it back), or the one the batch restored."""
    if change == WAS_REMOVED:
        if current is not None:
            return None, "created again since"
    elif current is None:
        return None, "removed since"
    elif batch_id not in current[1:]:
        return None, "changed since"
    elif change == WAS_CREATED:
        return REMOVE, ""
    if before is None:
        return None, "its state before the batch was pruned"
    return (RESTORE if change == WAS_UPDATED else RECREATE), ""


def later_batches(batch_id: str, trail: list, current_by: str | None) -> list[str]:
    """The batches that changed an item after `batch_id` did, oldest first, from its archived
    states (`trail`, by seq) and the batch that made its current state current."""
    anchor = max((state.seq for state in trail if state.superseded_by == batch_id), default=None)
    if anchor is None:  # the batch created it: its own state is where the trail starts
        own = [state.seq for state in trail if state.made_by == batch_id]
        anchor = min(own) - 1 if own else None
    names = []
    if anchor is not None:
        for state in trail:
            if state.seq > anchor:
                names += [state.made_by, state.superseded_by]
    if current_by is not None:
        names.append(current_by)
    return list(dict.fromkeys(name for name in names if name != batch_id))


def _check_reason(reason: str) -> str:
    if len(reason) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"_reason must be at most {MAX_TEXT_LENGTH} characters")
    return reason


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def rollback_batch(
    transaction: Callable[[], AbstractContextManager[HistoryStore]],
    principal: Principal,
    batch_id: str,
    *,
    force: bool = False,
    reason: str | None = None,
    attempts: int = 5,
    clock: Callable[[], datetime] = utcnow,
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Undo what batch `batch_id` changed, as a batch of its own (service "rollback").

    Every object, observation, curve date, matrix and event the batch changed returns to its
    state before the batch; what it created is removed, what it removed comes back. If a later
    batch has changed any of them since, nothing is changed (Conflict listing them) unless
    `force`, which undoes the rest and reports those as failures. The batch's summary is locked
    first, so concurrent rollbacks of one batch apply once; objects (those changed, and those
    whose data changed) are locked in `_id` order like every batch's."""
    principal.require(WRITE)
    if not _BATCH_ID.match(batch_id):
        raise NotFound(f"batch {batch_id[:128]!r} not found")
    batch = HistoryBatch(
        id=str(uuid.uuid4()),
        service=ROLLBACK_SERVICE,
        reason=_check_reason(reason or f"Rollback of batch {batch_id}"),
        size=0,
    )

    def attempt(store: HistoryStore) -> Outcome:
        replay = store.claim(batch.id)  # our own commit, landed before a lost connection
        if replay is not None:
            return Outcome(CREATED, replay.doc)
        store.lock_id(batch_id)  # a replay of the batch itself waits for us
        history = store.history
        target = history.lock_summary(batch_id)
        if target is None:
            raise NotFound(f"batch {batch_id!r} not found")
        if not principal.is_admin and target.user != principal.user:
            raise Forbidden("only batch.admin may roll back a batch submitted by another user")
        if target.doc.get("rolledBackBy"):
            raise Conflict(f"batch {batch_id!r} was already rolled back by batch {target.doc['rolledBackBy']!r}")
        if target.status == FAILED:
            raise Conflict(f"batch {batch_id!r} failed: it changed nothing to roll back")
        log = history.changes(batch_id)
        if not log:
            pruned = history.pruned_before()
            if pruned is not None and target.timestamp < pruned:
                raise Gone(f"the history of batch {batch_id!r} was pruned (before {iso(pruned)}): it cannot be undone")
        created, updated, removed = log.get(OBJECTS, ([], [], []))
        changes = {
            **dict.fromkeys(created, WAS_CREATED),
            **dict.fromkeys(updated, WAS_UPDATED),
            **dict.fromkeys(removed, WAS_REMOVED),
        }
        ids = sorted(changes)
        # The objects the batch's data belongs to are locked with its objects (in `_id` order),
        # then the data is looked at again: what was found before the locks may have moved on.
        items = store.data_items(batch_id, log)
        owners = sorted({item.object_id for item in items} - set(ids))
        if not principal.is_admin and any(is_public(ident) for ident in [*ids, *owners]):
            raise Forbidden("only batch.admin may roll back changes of public objects (ids starting with '#')")
        current = history.lock_current(ids + owners)
        if owners:
            items = store.data_items(batch_id, log)
        before = history.states_before([i for i in ids if changes[i] != WAS_CREATED], batch_id)
        actions: dict[str, dict[str, int | None]] = {REMOVE: {}, RESTORE: {}, RECREATE: {}}
        refused: dict[str, Refusal] = {}
        for ident in ids:
            action, why = undo(changes[ident], batch_id, current.get(ident), before.get(ident))
            if action is None:
                refused[ident] = Refusal(OBJECTS, why)
            else:
                actions[action][ident] = before.get(ident)
        # An object the batch created goes with all its data: not when another batch wrote some since.
        writers = store.data_writers(sorted(actions[REMOVE]))
        for ident, batches in sorted(writers.items()):
            others = sorted(batches - {batch_id})
            if others:
                del actions[REMOVE][ident]
                refused[ident] = Refusal(OBJECTS, "its data was changed since", tuple(others))
        removing = set(actions[REMOVE])
        undone: list[tuple[DataItem, str]] = []
        for item in items:
            if item.object_id in removing:
                continue  # removed with its object
            action, why = undo_item(item, batch_id)
            if action is None:
                refused[item.label] = Refusal(item.kind, why, item.later)
            else:
                undone.append((item, action))
        later = _later(history, batch_id, refused, current)
        if refused and not force:
            raise Conflict(
                f"{_plural(len(refused), 'item')} that batch {batch_id!r} changed "
                f"{'was' if len(refused) == 1 else 'were'} changed since (or {'its' if len(refused) == 1 else 'their'}"
                " earlier state pruned): nothing was rolled back; _force=true rolls back the rest",
                errors={"items": later, "count": len(refused)},
            )
        now = clock()
        data = store.remove_data(sorted(removing), batch_id=batch.id, now=now)  # with its objects
        history.remove(sorted(removing), now=now, by=batch.id)
        history.restore(actions[RESTORE], now=now, by=batch.id)
        history.recreate(actions[RECREATE], now=now, by=batch.id)
        data.add(store.undo_data(undone, batch_id=batch.id, now=now))
        history.log_changes(
            batch.id,
            OBJECTS,
            now,
            created=list(actions[RECREATE]),
            updated=list(actions[RESTORE]),
            removed=list(removing),
        )
        builder = SummaryBuilder()
        for label, refusal in refused.items():
            names = later.get(label, {}).get("batches") or []
            builder.fail(label, refusal.reason + (f" by batch {', '.join(names)}" if names else ""))
        done = sorted({*removing, *actions[RESTORE], *actions[RECREATE]})
        builder.public = any(is_public(ident) for ident in done) or any(is_public(i.object_id) for i, _ in undone)
        doc = builder.render(
            batch=HistoryBatch(batch.id, batch.service, batch.reason, size=len(ids) + len(items)),
            principal=principal,
            scope=store.scope,
            finished=now,
            written=len(done) + len(undone),
            atomic_abort=False,
            counts=change_counts(
                objects={
                    "created": len(actions[RECREATE]),
                    "updated": len(actions[RESTORE]),
                    "removed": len(removing),
                },
                data=data,
            ),
        )
        doc["rollbackOf"] = batch_id
        doc["message"] = _rollback_message(batch_id, actions, data, refused)
        applied = bool(done or undone) or not refused
        if applied:
            history.mark_rolled_back(batch_id, batch.id)
        store.store_summary(doc, finished=now, body_hash=batch.body_hash)
        return Outcome(CREATED if applied else REJECTED, doc)

    return run_transaction(
        transaction, attempt, what=f"rollback of batch {batch_id!r}", attempts=attempts, on_retry=on_retry, sleep=sleep
    )


@dataclass(frozen=True)
class Refusal:
    """Why one item a batch changed cannot be undone: its kind, the reason, and (for data
    items and objects refused for their data) the later batches already known."""

    kind: str
    reason: str
    batches: tuple[str, ...] = ()


def undo_item(item: DataItem, batch_id: str) -> tuple[str | None, str]:
    """The conflict rule for a data item: as for objects, undone only while its current state is
    the one the batch left (written by it, or still absent where it removed the item)."""
    current = (None, item.current_by, None) if item.present else None
    return undo(item.change, batch_id, current, 1 if item.before else None)


def _later(history: HistoryWrites, batch_id: str, refused: dict[str, Refusal], current) -> dict[str, dict]:
    """The refused items (the first MAX_LISTED_CONFLICTS by label) with the batches that changed them."""
    listed = sorted(refused)[:MAX_LISTED_CONFLICTS]
    trails = history.trails([label for label in listed if refused[label].kind == OBJECTS])
    out = {}
    for label in listed:
        refusal = refused[label]
        if refusal.kind == OBJECTS and not refusal.batches:
            names = later_batches(batch_id, trails.get(label, []), _made_by(current.get(label)))
        else:
            names = [name for name in refusal.batches if name != batch_id]
        out[label] = {"kind": refusal.kind, "reason": refusal.reason, "batches": names}
    return out


def _made_by(current: tuple | None) -> str | None:
    """The batch that made the current state current: its restorer, else its writer."""
    return None if current is None else current[2] or current[1]


_DATA_NAMES = {
    "points": ("observation", "observations"),
    "curves": ("curve date", "curve dates"),
    "matrices": ("matrix", "matrices"),
    "events": ("event", "events"),
}


def _rollback_message(batch_id: str, actions: dict, data: DataChanges, refused: dict) -> str:
    done = []
    if actions[RESTORE]:
        done.append(f"{_plural(len(actions[RESTORE]), 'object')} restored")
    if actions[REMOVE]:
        done.append(f"{len(actions[REMOVE])} removed")
    if actions[RECREATE]:
        done.append(f"{len(actions[RECREATE])} brought back")
    for kind, (one, many) in _DATA_NAMES.items():
        tally = data.tallies[kind]
        count = tally.created + tally.updated + tally.removed
        if count:
            done.append(f"{count} {one if count == 1 else many} undone")
    text = f"Rolled back batch {batch_id}: " + (", ".join(done) if done else "nothing to change")
    if refused:
        text += f"; {_plural(len(refused), 'item')} could not be rolled back (changed since)"
    return text


# --- Deleting an object (ODSL: back to its previous version) -------------------------------------


def delete_object(
    transaction: Callable[[], AbstractContextManager[HistoryStore]],
    principal: Principal,
    source: str,
    object_id: str,
    *,
    reason: str | None = None,
    attempts: int = 5,
    clock: Callable[[], datetime] = utcnow,
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """The object returns to its previous version, or is removed with its data when it has only
    one; recorded as a batch of service "object" (which a rollback can undo)."""
    principal.require(WRITE)
    if not visible(source, object_id):
        raise NotFound(f"object {object_id!r} not found")
    if is_public(object_id) and not principal.is_admin:
        raise Forbidden("only batch.admin may write public objects (ids starting with '#')")
    batch = HistoryBatch(
        id=str(uuid.uuid4()),
        service=OBJECT_SERVICE,
        reason=_check_reason(reason or f"Delete object {object_id}"[:MAX_TEXT_LENGTH]),
        size=1,
    )

    def attempt(store: HistoryStore) -> Outcome:
        replay = store.claim(batch.id)
        if replay is not None:
            return Outcome(CREATED, replay.doc)
        history = store.history
        found = history.lock_current([object_id]).get(object_id)
        if found is None:
            raise NotFound(f"object {object_id!r} not found")
        version = found[0]
        now = clock()
        data = None
        if version <= 1:
            data = store.remove_data([object_id], batch_id=batch.id, now=now)
            history.remove([object_id], now=now, by=batch.id)
            counts, message = {"removed": 1}, f"Removed object {object_id}"
        else:
            seq = history.previous_version(object_id, version - 1)
            if seq is None:
                raise Conflict(f"version {version - 1} of object {object_id!r} was pruned: it cannot go back to it")
            history.restore({object_id: seq}, now=now, by=batch.id)
            counts, message = {"updated": 1}, f"Rolled object {object_id} back to version {version - 1}"
        history.log_changes(
            batch.id,
            OBJECTS,
            now,
            created=[],
            updated=[object_id] if "updated" in counts else [],
            removed=[object_id] if "removed" in counts else [],
        )
        builder = SummaryBuilder()
        builder.public = is_public(object_id)
        doc = builder.render(
            batch=batch,
            principal=principal,
            scope=store.scope,
            finished=now,
            written=1,
            atomic_abort=False,
            counts=change_counts(objects=counts, data=data),
        )
        doc["message"] = message
        store.store_summary(doc, finished=now, body_hash=batch.body_hash)
        return Outcome(CREATED, doc)

    return run_transaction(
        transaction, attempt, what=f"delete of object {object_id!r}", attempts=attempts, on_retry=on_retry, sleep=sleep
    )


# --- Retention -----------------------------------------------------------------------------------


def parse_prune_date(raw: str) -> datetime:
    try:
        return parse_instant(raw)
    except ValueError:
        raise InvalidInput(f"--before must be an ISO-8601 date or date-time, got {raw[:40]!r}") from None
