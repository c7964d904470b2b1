"""Applying a batch: classify elements, fold them per object, write, summarise."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import psycopg2
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from batchsvc.core import summaries
from batchsvc.core.errors import Busy, Conflict, TooLarge
from batchsvc.core.identity import WRITE, Principal, Scope
from batchsvc.core.objects import PendingWrite, is_public, strip_server_fields, upsert_objects
from batchsvc.core.summaries import FAILED, SummaryBuilder

DEFAULT_REASON = "Update Batch"
# serialization_failure, deadlock_detected, lock_not_available: safe to retry the whole batch
RETRYABLE_CODES = frozenset({"40001", "40P01", "55P03"})

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
    return datetime.now(timezone.utc)


def plan_elements(batch: BatchRequest, principal: Principal, builder: SummaryBuilder) -> dict[str, PendingWrite]:
    """Validate each element and fold the valid ones per `_id`, in order (spec §3.1-2)."""
    pending: dict[str, PendingWrite] = {}
    for index, element in enumerate(batch.elements):
        if not isinstance(element, dict):
            builder.fail(f"#{index}", f"element #{index} is not a JSON object")
            continue
        ident = element.get("_id")
        if not isinstance(ident, str) or not ident:
            builder.fail(f"#{index}", f"element #{index} has no _id (a non-empty string is required)")
            continue
        if len(ident) > 256:
            builder.fail(f"#{index}", f"element #{index} has an _id of {len(ident)} characters (at most 256)")
            continue
        kind = element.get("_type")
        if kind is not None and not isinstance(kind, str):
            builder.fail(ident, "_type must be a string")
            continue
        if kind is not None and kind.startswith("Var"):
            builder.fail(ident, f"_type {kind[:64]!r} is not an object type")
            continue
        replace = element.get("_replace", False)
        if not isinstance(replace, bool):
            builder.fail(ident, "_replace must be true or false")
            continue
        if is_public(ident) and not principal.is_admin:
            builder.fail(ident, "only batch.admin may write public objects (ids starting with '#')")
            continue
        doc = strip_server_fields(element)
        replace = replace or batch.replace
        if ident in pending:
            pending[ident].fold(doc, replace)
        else:
            pending[ident] = PendingWrite(ident, doc, replace)
    return pending


def _lock_batch_id(session: Session, scope: Scope, batch_id: str) -> None:
    """Serialise concurrent posts of one batch id, so a retry waits and then replays."""
    key = func.hashtextextended(f"{scope.tenant}\x1f{scope.environment}\x1f{batch_id}", 0)
    session.execute(select(func.pg_advisory_xact_lock(key)))


def _retryable(exc: Exception) -> bool:
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, psycopg2.Error) and getattr(orig, "pgcode", None) in RETRYABLE_CODES


def apply_batch(
    session_factory: Callable[[], Session],
    scope: Scope,
    principal: Principal,
    batch: BatchRequest,
    *,
    max_elements: int,
    attempts: int = 5,
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    """Apply a batch in one transaction, retried whole on deadlock or serialization failure."""
    principal.require(WRITE)
    if batch.size > max_elements:
        raise TooLarge(f"batch has {batch.size} elements; at most {max_elements} are allowed")
    builder = SummaryBuilder()
    pending = plan_elements(batch, principal, builder)
    atomic_abort = bool(builder.failures) and batch.atomic
    writes = [] if atomic_abort else list(pending.values())
    builder.public = any(is_public(w.id) for w in writes)

    for attempt in range(attempts):
        try:
            with session_factory() as session, session.begin():
                _lock_batch_id(session, scope, batch.id)
                existing = summaries.find_for_update(session, scope, batch.id)
                if existing is not None and existing.status != FAILED:
                    if existing.body_hash == batch.body_hash:
                        return Outcome(REPLAYED, existing.doc)
                    raise Conflict(f"batch {batch.id!r} was already applied with a different body")
                started = clock()
                upsert_objects(session, scope, writes, user=principal.user, batch_id=batch.id, now=started)
                finished = clock()
                doc = builder.render(
                    batch=batch, principal=principal, scope=scope, finished=finished,
                    written=len(writes), atomic_abort=atomic_abort,
                )
                summaries.store(session, scope, doc, finished=finished, body_hash=batch.body_hash)
            return Outcome(CREATED if writes else REJECTED, doc)
        except (DBAPIError, psycopg2.Error) as exc:
            if not _retryable(exc):
                raise
            # Jittered exponential backoff: the competing transaction usually ends within ms.
            time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
    raise Busy(f"batch {batch.id!r} could not be applied: the database kept reporting conflicts; retry later", retry_after=1)
