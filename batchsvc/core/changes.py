"""What a write did to the data of objects (SPEC §12): counts per kind, what was left as stored,
and, for undoing a batch, what the store knows of each data item the batch changed.

Data items are observations (`points`), curve dates (`curves`), matrix dates (`matrices`) and
events (`events`). A write reports only what it changed: an item written exactly as stored is
`unchanged`, and its date does not enter the summary's date maps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

DATA_KINDS = ("points", "curves", "matrices", "events")


@dataclass
class Tally:
    """How many items of one kind a write created, updated, left unchanged and removed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    def add(self, other: Tally) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.removed += other.removed

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed}


@dataclass
class DataChanges:
    """What one transaction did to data: a tally per kind, and the items it was sent but left
    as stored (`kept`: kind -> (object id, property) -> keys, the key an observation's time in
    microseconds since 1970 UTC, a curve's or matrix's date, an event's id), which core leaves
    out of the summary's date maps."""

    tallies: dict[str, Tally] = field(default_factory=lambda: {kind: Tally() for kind in DATA_KINDS})
    kept: dict[str, dict[tuple[str, str], set]] = field(default_factory=lambda: {kind: {} for kind in DATA_KINDS})

    def keep(self, kind: str, object_id: str, prop: str, keys: Iterable) -> None:
        """Record items of one data property that were written exactly as stored."""
        self.kept[kind].setdefault((object_id, prop), set()).update(keys)

    def add(self, other: DataChanges) -> None:
        for kind in DATA_KINDS:
            self.tallies[kind].add(other.tallies[kind])
            for (object_id, prop), keys in other.kept[kind].items():
                self.keep(kind, object_id, prop, keys)


@dataclass(frozen=True)
class DataItem:
    """One data item a batch changed, as a rollback of that batch finds it now.

    `key` is the store's own name of the item (handed back with the action to take); `label`
    is how people name it (OBJ:PROP:TIME for an observation, OBJ:PROP:DATE for a curve or a
    matrix, OBJ:LIST:EVENTID for an event); `object_id` the object it belongs to (which the
    rollback locks). `change` is what the batch did to it (created,
    updated or removed, as core.history names them); `present` whether the item exists now;
    `current_by` the batch whose write is its current state (None when absent, or written
    before history was kept); `before` whether its state before the batch is kept; `later` the
    batches that changed it after the batch did, oldest first."""

    kind: str
    key: object
    label: str
    object_id: str
    change: str
    present: bool
    current_by: str | None
    before: bool
    later: tuple[str, ...] = ()
