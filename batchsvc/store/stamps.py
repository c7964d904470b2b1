"""Batch stamps and the data change log of one transaction (SPEC §12).

Every transaction that writes data (a batch, a rollback, an object delete) takes a *stamp*: a
number from one sequence, recorded in `batch_stamps` with its batch id and time. Data rows carry
the stamp of the batch that wrote them as they are (`stamp` on curves, matrices and events, a
`stamps` array on series chunks); a state a batch replaces or removes is archived with the
stamp that made it and the one that ended it (`data_versions`, `series_versions`). So the store
can tell, for any item, which batch wrote it (rollback) and when it was current (as-of reads),
at the cost of a number per row, not a row per load. Stamp 0 has no row: data written before
history was kept.

The change log (`batch_changes`, one row per batch and kind) lists the keys each data kind's
writer changed; a data writer adds to the transaction's `DataLog`, which is written once, with
the summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from batchsvc.store.transaction import TransactionCursor, int_array, text_array

BEFORE_HISTORY = 0  # the stamp of data written before history was kept


@dataclass(frozen=True)
class Stamp:
    """The stamp of the transaction writing data: its number, batch id and time."""

    value: int
    batch: str
    at: datetime


_ALLOCATE = """
INSERT INTO batch_stamps (tenant, environment, batch, at) VALUES (%(tenant)s, %(environment)s, %(batch)s, %(at)s)
ON CONFLICT (tenant, environment, batch) DO UPDATE SET at = excluded.at
RETURNING stamp
"""


def allocate(cursor: TransactionCursor, scope: dict, batch_id: str, at: datetime) -> Stamp:
    """A stamp for `batch_id` (the one it has, if a failed attempt of the same id took one)."""
    cursor.execute(_ALLOCATE, {**scope, "batch": batch_id, "at": at})
    return Stamp(cursor.fetchone()[0], batch_id, at)


def release(cursor: TransactionCursor, scope: dict, stamp: Stamp) -> None:
    """Give back the stamp of a transaction whose data writes changed nothing: a load that
    changes nothing leaves no row behind (deferred)."""
    cursor.defer(
        "DELETE FROM batch_stamps WHERE tenant = %(tenant)s AND environment = %(environment)s AND stamp = %(stamp)s",
        {**scope, "stamp": stamp.value},
    )


def stamp_of(cursor: TransactionCursor, scope: dict, batch_id: str) -> int | None:
    """The stamp batch `batch_id` wrote its data with, if it wrote any (and it was not pruned)."""
    cursor.execute(
        "SELECT stamp FROM batch_stamps WHERE tenant = %(tenant)s AND environment = %(environment)s "
        "AND batch = %(batch)s",
        {**scope, "batch": batch_id},
    )
    row = cursor.fetchone()
    return row[0] if row else None


def batches_of(cursor, scope: dict, stamps: Iterable[int]) -> dict[int, tuple[str, datetime]]:
    """stamp -> (batch id, time) for the known stamps among `stamps` (0 and pruned ones are not).

    `cursor` is any DB-API cursor (reads use the session's connection)."""
    wanted = sorted({stamp for stamp in stamps if stamp != BEFORE_HISTORY})
    if not wanted:
        return {}
    cursor.execute(
        "SELECT stamp, batch, at FROM batch_stamps WHERE stamp = ANY(%(s)s::int8[])", {"s": int_array(wanted)}
    )
    return {stamp: (batch, at) for stamp, batch, at in cursor.fetchall()}


@dataclass
class DataLog:
    """The keys one transaction created, updated and removed, per kind, until it is written
    (one `batch_changes` row per kind)."""

    kinds: dict[str, tuple[set[str], set[str], set[str]]] = field(default_factory=dict)

    def add(
        self, kind: str, *, created: Iterable[str] = (), updated: Iterable[str] = (), removed: Iterable[str] = ()
    ) -> None:
        entry = self.kinds.setdefault(kind, (set(), set(), set()))
        entry[0].update(created)
        entry[1].update(updated)
        entry[2].update(removed)

    def __bool__(self) -> bool:
        """Whether anything was logged."""
        return any(any(keys) for keys in self.kinds.values())

    def flush(self, cursor: TransactionCursor, scope: dict, batch_id: str, now: datetime) -> None:
        """Write the log (deferred: it travels with the next statement) and start afresh."""
        for kind, (created, updated, removed) in sorted(self.kinds.items()):
            if not (created or updated or removed):
                continue
            cursor.defer(
                """INSERT INTO batch_changes (tenant, environment, batch, kind, timestamp, created, updated, removed)
                VALUES (%(tenant)s, %(environment)s, %(batch)s, %(kind)s, %(now)s,
                        %(created)s::text[], %(updated)s::text[], %(removed)s::text[])
                ON CONFLICT (tenant, environment, batch, kind) DO UPDATE SET timestamp = excluded.timestamp,
                    created = excluded.created, updated = excluded.updated, removed = excluded.removed""",
                {
                    **scope,
                    "batch": batch_id,
                    "kind": kind,
                    "now": now,
                    "created": text_array(sorted(created)),
                    "updated": text_array(sorted(updated)),
                    "removed": text_array(sorted(removed)),
                },
            )
        self.kinds.clear()
