"""Unit tests of the batch use case (batchsvc.core.batches) on an in-memory store: no database, no app."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from batchsvc.core import batches
from batchsvc.core.batches import (
    CREATED,
    DEFAULT_REASON,
    REJECTED,
    REPLAYED,
    BatchRequest,
    apply_batch,
    read_batch_request,
)
from batchsvc.core.changes import DataChanges
from batchsvc.core.errors import Busy, Conflict, ConnectionLost, Forbidden, InvalidInput, Retryable, TooLarge
from batchsvc.core.identity import ADMIN, MAX_TEXT_LENGTH, READ, WRITE, Principal, Scope
from batchsvc.core.objects import ObjectWrite
from batchsvc.core.summaries import FAILED, Claimed
from batchsvc.core.times import micros
from batchsvc.core.typed import DataWrites

SCOPE = Scope("tenant-a", "production")
WRITER = Principal("loader@example.com", "tenant-a", frozenset({WRITE}))
ADMIN_USER = Principal("admin@example.com", "tenant-a", frozenset({ADMIN}))
START = datetime(2024, 1, 6, 16, 20, 27, 433000, tzinfo=UTC)


# --- The in-memory store ------------------------------------------------------------------------------


@dataclass
class Tables:
    """One scope's rows, shaped like the real tables."""

    objects: dict[str, dict] = field(default_factory=dict)  # id -> doc, version, created, updated, user, batch
    summaries: dict[str, dict] = field(default_factory=dict)  # id -> status, body_hash, doc, timestamp
    points: dict[tuple, dict] = field(default_factory=dict)  # (object, prop, instant) -> observation
    curves: dict[tuple, dict] = field(default_factory=dict)  # (object, prop, date) -> curve
    matrices: dict[tuple, dict] = field(default_factory=dict)  # (object, prop, date) -> matrix
    events: dict[tuple, tuple] = field(default_factory=dict)  # (object, prop, event id) -> (instant, event)


class FakeDB:
    """Committed state per scope, the transactions opened on it and the faults scripted for them.

    A transaction works on a deep copy of the committed state and swaps it in only when its
    block exits cleanly: an exception anywhere rolls the whole attempt back."""

    def __init__(self):
        self.tables: dict[Scope, Tables] = {}
        self.transactions: list[FakeStore] = []
        self.commits = 0
        self.faults: dict[tuple[int, str], BaseException] = {}

    def fail(self, number: int, at: str, error: BaseException) -> None:
        """Raise `error` in transaction `number` (1-based) at the call `at` (a store method,
        "begin", "commit" before the state lands, or "committed" after it landed)."""
        self.faults[(number, at)] = error

    def fail_every(self, at: str, error: BaseException, count: int = 50) -> None:
        for number in range(1, count + 1):
            self.fail(number, at, error)

    def at(self, scope: Scope = SCOPE) -> Tables:
        return self.tables.setdefault(scope, Tables())

    def transaction(self, scope: Scope = SCOPE):
        """The factory apply_batch calls once per attempt (like store.batch_transaction(scope))."""

        @contextmanager
        def begin():
            working = copy.deepcopy(self.tables)
            store = FakeStore(self, len(self.transactions) + 1, scope, working)
            self.transactions.append(store)
            store.hit("begin")
            yield store  # an exception raised in the block propagates: `working` is dropped
            store.hit("commit")
            self.tables = working
            self.commits += 1
            store.committed = True
            store.hit("committed")  # a lost connection after the commit landed: outcome unknown

        return begin


class FakeStore:
    """One transaction's view of one scope, behaving like store.batches.BatchStore."""

    def __init__(self, db: FakeDB, number: int, scope: Scope, working: dict[Scope, Tables]):
        self._db = db
        self.number = number
        self.scope = scope
        self._t = working.setdefault(scope, Tables())
        self.calls: list[tuple[str, dict]] = []
        self.committed = False
        self.object_counts: dict[str, int] | None = None  # what upsert_objects did, for the summary

    def hit(self, name: str, **args) -> None:
        self.calls.append((name, args))
        error = self._db.faults.get((self.number, name))
        if error is not None:
            raise error

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> dict:
        (found,) = [args for called, args in self.calls if called == name]
        return found

    # summaries
    def lock_id(self, batch_id: str) -> None:
        self.hit("lock_id", batch_id=batch_id)

    def claim(self, batch_id: str) -> Claimed | None:
        self.hit("claim", batch_id=batch_id)
        self.lock_id(batch_id)
        row = self._t.summaries.get(batch_id)
        return Claimed(row["status"], row["body_hash"], copy.deepcopy(row["doc"])) if row else None

    def _fill_counts(self, doc: dict) -> None:
        if self.object_counts is not None:
            doc["counts"]["objects"].update(self.object_counts)

    def store_summary(self, doc: dict, *, finished: datetime, body_hash: str) -> None:
        self.hit("store_summary", doc=doc, finished=finished, body_hash=body_hash)
        self._fill_counts(doc)
        self._t.summaries[doc["_id"]] = {
            "status": doc["status"],
            "body_hash": body_hash,
            "doc": copy.deepcopy(doc),
            "timestamp": finished,
        }

    def store_new_summary(self, doc: dict, *, finished: datetime, body_hash: str) -> bool:
        self.hit("store_new_summary", doc=doc, finished=finished, body_hash=body_hash)
        held = self._t.summaries.get(doc["_id"])
        if held is not None and held["status"] != FAILED:
            return False
        self._fill_counts(doc)
        self._t.summaries[doc["_id"]] = {
            "status": doc["status"],
            "body_hash": body_hash,
            "doc": copy.deepcopy(doc),
            "timestamp": finished,
        }
        return True

    # objects
    def lock_objects(self, ids: set[str], read: set[str]) -> dict[str, dict | None]:
        self.hit("lock_objects", ids=set(ids), read=set(read))
        return {
            ident: copy.deepcopy(self._t.objects[ident]["doc"]) if ident in read else None
            for ident in sorted(ids)
            if ident in self._t.objects
        }

    def upsert_objects(self, rows: list[ObjectWrite], *, user: str, batch_id: str, now: datetime, reason: str) -> None:
        self.hit("upsert_objects", rows=list(rows), user=user, batch_id=batch_id, now=now, reason=reason)
        if not rows:
            return
        counts = dict(created=0, updated=0, unchanged=0)
        for row in sorted(rows, key=lambda r: r.id):
            doc = copy.deepcopy(row.doc)
            stored = self._t.objects.get(row.id)
            if stored is None:
                self._t.objects[row.id] = dict(doc=doc, version=1, created=now, updated=now, user=user, batch=batch_id)
                counts["created"] += 1
                continue
            new = doc if row.replace else {**stored["doc"], **doc}
            if new == stored["doc"]:  # a write that changes nothing is no version
                counts["unchanged"] += 1
                continue
            stored.update(doc=new, version=stored["version"] + 1, updated=now, user=user, batch=batch_id)
            counts["updated"] += 1
        self.object_counts = counts

    # typed data
    def stored_curves(self, keys: list[tuple]) -> dict[tuple, dict]:
        self.hit("stored_curves", keys=list(keys))
        return {key: copy.deepcopy(self._t.curves[key]) for key in keys if key in self._t.curves}

    def write_data(self, wiped_objects: list[str], writes: dict[str, DataWrites], *, batch_id: str, now) -> DataChanges:
        self.hit("write_data", wiped_objects=list(wiped_objects), writes=writes)
        t = self._t
        tables = {"points": t.points, "curves": t.curves, "matrices": t.matrices, "events": t.events}
        before = {kind: dict(table) for kind, table in tables.items()}
        for table in tables.values():
            for key in [key for key in table if key[0] in wiped_objects]:
                del table[key]
        for obj, data in writes.items():
            for key in [key for key in t.points if key[0] == obj and key[1] in data.wipe_props]:
                del t.points[key]
            for (prop, instant), observation in data.points.items():
                t.points[(obj, prop, instant)] = copy.deepcopy(observation)
            for (prop, day), (curve, _) in data.curves.items():
                t.curves[(obj, prop, day)] = copy.deepcopy(curve)
            for (prop, day), matrix in data.matrices.items():
                t.matrices[(obj, prop, day)] = copy.deepcopy(matrix)
            for (prop, ident), (instant, event) in data.events.items():
                t.events[(obj, prop, ident)] = (instant, copy.deepcopy(event))
        sent = {
            "points": {(o, p, i) for o, d in writes.items() for p, i in d.points},
            "curves": {(o, *k) for o, d in writes.items() for k in d.curves},
            "matrices": {(o, *k) for o, d in writes.items() for k in d.matrices},
            "events": {(o, *k) for o, d in writes.items() for k in d.events},
        }
        changes = DataChanges()
        for kind, table in tables.items():
            tally, old = changes.tallies[kind], before[kind]
            for key in sent[kind]:
                if key not in old:
                    tally.created += 1
                elif old[key] == table[key]:
                    tally.unchanged += 1
                    changes.keep(kind, key[0], key[1], [micros(key[2]) if kind == "points" else key[2]])
                else:
                    tally.updated += 1
            tally.removed += len(old.keys() - table.keys())
        return changes


# --- Helpers ------------------------------------------------------------------------------------------


def clock():
    """A clock that ticks one millisecond per reading, from START."""
    ticks = iter(range(1_000_000))
    return lambda: START + timedelta(milliseconds=next(ticks))


def request(elements, *, replace=None, atomic=None, reason=None, **envelope) -> BatchRequest:
    envelope.setdefault("_id", "b1")
    raw = json.dumps({**envelope, "elements": elements}).encode()
    return read_batch_request(raw, replace=replace, atomic=atomic, reason=reason)


@dataclass
class Run:
    """One apply_batch call's injected recorders."""

    sleeps: list[float] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)


def apply(db: FakeDB, batch: BatchRequest, principal: Principal = WRITER, *, scope=SCOPE, run=None, **kwargs):
    run = run if run is not None else Run()
    kwargs.setdefault("max_elements", 1000)
    kwargs.setdefault("clock", clock())
    return apply_batch(
        db.transaction(scope), principal, batch, sleep=run.sleeps.append, on_retry=run.causes.append, **kwargs
    )


def series(*times: str) -> dict:
    return {"_type": "VarTimeSeries", "tenor": "1D", "data": [{"time": t, "value": i} for i, t in enumerate(times)]}


# --- The optimistic path, replays and conflicts ---------------------------------------------------------


def test_a_new_plain_batch_is_written_optimistically_in_one_transaction():
    db = FakeDB()
    batch = request([{"_id": "a", "x": 1}, {"_id": "b", "_type": "Price", "y": 2}], name="daily")
    outcome = apply(db, batch)

    assert outcome.kind == CREATED
    (tx,) = db.transactions
    assert tx.names == ["begin", "lock_id", "upsert_objects", "write_data", "store_new_summary", "commit", "committed"]
    assert "claim" not in tx.names and "lock_objects" not in tx.names
    assert tx.args("lock_id") == {"batch_id": "b1"}
    assert tx.args("store_new_summary")["body_hash"] == batch.body_hash

    doc = outcome.summary
    assert doc["_id"] == "b1" and doc["name"] == "daily" and doc["user"] == WRITER.user
    assert doc["environment"] == "production" and doc["source"] == "private"
    assert (doc["status"], doc["message"], doc["size"]) == ("success", "Completed Successfully", 2)
    assert doc["reason"] == DEFAULT_REASON
    assert doc["summary"] == {"curves": {}, "series": {}, "matrix": {}, "events": {}, "failures": {}}
    assert doc["timestamp"] == "2024-01-06T16:20:27.434Z"  # the second clock reading: when it finished

    t = db.at()
    assert t.summaries["b1"]["doc"] == doc and t.summaries["b1"]["body_hash"] == batch.body_hash
    assert t.objects["a"] == dict(doc={"x": 1}, version=1, created=START, updated=START, user=WRITER.user, batch="b1")
    assert t.objects["b"]["doc"] == {"_type": "Price", "y": 2}


def test_replaying_the_same_body_returns_the_stored_summary_and_applies_nothing_again():
    db = FakeDB()
    batch = request([{"_id": "a", "x": 1}])
    first = apply(db, batch)
    db.at().objects["a"]["doc"]["x"] = "changed since"  # a replay must not write the element again

    again = apply(db, request([{"_id": "a", "x": 1}]), clock=lambda: START + timedelta(days=1))

    assert again.kind == REPLAYED
    assert again.summary == first.summary  # the stored one, its timestamp included
    optimistic, careful = db.transactions[1:]
    assert "store_new_summary" in optimistic.names and not optimistic.committed  # id taken: rolled back
    assert careful.names == ["begin", "claim", "lock_id", "commit", "committed"]
    assert db.at().objects["a"]["doc"] == {"x": "changed since"} and db.at().objects["a"]["version"] == 1


def test_a_replay_finds_its_summary_in_its_own_scope_only():
    db = FakeDB()
    apply(db, request([{"_id": "a", "x": 1}]))
    staging = Scope("tenant-a", "staging")
    outcome = apply(db, request([{"_id": "a", "x": 1}]), scope=staging)
    assert outcome.kind == CREATED
    assert outcome.summary["environment"] == "staging"
    assert db.at(staging).objects["a"]["version"] == 1 and db.at().objects["a"]["version"] == 1


@pytest.mark.parametrize(
    "second",
    [
        lambda: request([{"_id": "a", "x": 2}, {"_id": "c", "z": 3}]),  # another body
        lambda: request([{"_id": "a", "x": 1}], atomic="true"),  # same body, another flag
        lambda: request([{"_id": "a", "x": 1}], reason="Backfill"),  # same body, another reason
    ],
    ids=["other-body", "other-flag", "other-reason"],
)
def test_the_same_id_with_another_body_is_a_conflict_and_writes_nothing(second):
    db = FakeDB()
    first = apply(db, request([{"_id": "a", "x": 1}]))
    before = copy.deepcopy(db.tables)

    with pytest.raises(Conflict) as raised:
        apply(db, second())

    assert "b1" in raised.value.message and "different body" in raised.value.message
    assert db.tables == before
    assert db.at().summaries["b1"]["doc"] == first.summary
    assert "c" not in db.at().objects and db.commits == 1


def test_a_conflict_on_the_careful_path_writes_nothing_either():
    db = FakeDB()
    apply(db, request([{"_id": "a", "close": series("2021-07-01")}]))
    before = copy.deepcopy(db.tables)
    with pytest.raises(Conflict):
        apply(db, request([{"_id": "a", "close": series("2021-07-02")}]))
    assert db.tables == before
    assert db.transactions[-1].names == ["begin", "claim", "lock_id"]  # refused before any write


def test_a_failed_summary_does_not_hold_its_id_on_the_optimistic_path():
    db = FakeDB()
    failed = apply(db, request([["not", "an", "object"]]))
    assert failed.kind == REJECTED and failed.summary["status"] == "failed"
    assert db.at().summaries["b1"]["status"] == "failed"

    retry = apply(db, request([{"_id": "a", "x": 1}]))

    assert retry.kind == CREATED and retry.summary["status"] == "success"
    assert "claim" not in db.transactions[-1].names and len(db.transactions) == 2  # no detour via the careful path
    assert db.at().summaries["b1"]["doc"] == retry.summary
    assert db.at().objects["a"]["version"] == 1


def test_a_failed_summary_does_not_hold_its_id_on_the_careful_path():
    db = FakeDB()
    apply(db, request([{"_id": "a", "close": {"_type": "VarTimeSeries", "data": [{"time": "never"}]}}]))
    assert db.at().summaries["b1"]["status"] == "failed" and "a" not in db.at().objects

    retry = apply(db, request([{"_id": "a", "close": series("2021-07-01")}]))

    assert retry.kind == CREATED and retry.summary["status"] == "success"
    assert "store_summary" in db.transactions[-1].names
    assert db.at().summaries["b1"]["doc"] == retry.summary
    assert len(db.at().points) == 1


# --- Retries -------------------------------------------------------------------------------------------


def test_retryable_errors_back_off_and_the_last_attempt_writes_exactly_once():
    db = FakeDB()
    db.fail(1, "upsert_objects", Retryable("deadlock"))
    db.fail(2, "store_new_summary", Retryable("serialization_failure"))
    db.fail(3, "commit", Retryable("deadlock"))
    db.fail(4, "lock_id", Retryable("lock_timeout"))
    run = Run()

    outcome = apply(db, request([{"_id": "a", "x": 1}]), run=run, attempts=5)

    assert outcome.kind == CREATED
    assert run.causes == ["deadlock", "serialization_failure", "deadlock", "lock_timeout"]
    assert len(run.sleeps) == 4
    for n, slept in enumerate(run.sleeps, start=1):
        base = 0.02 * 2 ** (n - 1)
        assert 0.5 * base <= slept <= 1.5 * base, (n, slept)
    assert run.sleeps[-1] > run.sleeps[0]  # 0.08 s at least against 0.03 s at most
    assert db.commits == 1 and [tx.committed for tx in db.transactions] == [False, False, False, False, True]
    assert db.at().objects["a"]["version"] == 1  # written once, not once per attempt
    assert list(db.at().summaries) == ["b1"]


def test_backoff_doubles_and_is_capped_at_two_seconds(monkeypatch):
    monkeypatch.setattr(batches.random, "random", lambda: 0.5)  # no jitter: the base delay itself
    db = FakeDB()
    db.fail_every("upsert_objects", Retryable("deadlock"), count=9)
    run = Run()
    assert apply(db, request([{"_id": "a"}]), run=run, attempts=10).kind == CREATED
    assert run.sleeps == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.0, 2.0])

    monkeypatch.setattr(batches.random, "random", lambda: 0.999999)  # the most jitter there is
    db = FakeDB()
    db.fail_every("upsert_objects", Retryable("deadlock"), count=9)
    run = Run()
    apply(db, request([{"_id": "a"}]), run=run, attempts=10)
    assert max(run.sleeps) <= 1.5 * 2.0


def test_exhausted_attempts_are_busy_and_nothing_is_written():
    db = FakeDB()
    db.fail_every("store_new_summary", Retryable("deadlock"))
    run = Run()

    with pytest.raises(Busy) as raised:
        apply(db, request([{"_id": "a", "x": 1}]), run=run, attempts=3)

    assert raised.value.retry_after == 1 and "b1" in raised.value.message
    assert len(db.transactions) == 3 and db.commits == 0
    assert run.causes == ["deadlock", "deadlock"] and len(run.sleeps) == 2  # no sleep after the last attempt
    assert db.at() == Tables()


def test_a_lost_connection_is_retried():
    db = FakeDB()
    db.fail(1, "upsert_objects", ConnectionLost("server closed the connection"))
    run = Run()
    outcome = apply(db, request([{"_id": "a", "x": 1}]), run=run)
    assert outcome.kind == CREATED
    assert run.causes == ["connection_lost"] and len(run.sleeps) == 1
    assert db.at().objects["a"]["version"] == 1


def test_a_commit_lost_after_it_landed_replays_on_retry():
    db = FakeDB()
    db.fail(1, "committed", ConnectionLost("connection lost during COMMIT"))
    run = Run()
    outcome = apply(db, request([{"_id": "a", "x": 1}]), run=run)
    assert outcome.kind == REPLAYED  # the first attempt had landed: its summary is answered
    assert outcome.summary == db.at().summaries["b1"]["doc"]
    assert run.causes == ["connection_lost"]
    assert db.at().objects["a"]["version"] == 1


def test_a_lost_connection_propagates_when_attempts_run_out():
    db = FakeDB()
    db.fail_every("begin", ConnectionLost("no route to host"))
    run = Run()
    with pytest.raises(ConnectionLost):
        apply(db, request([{"_id": "a"}]), run=run, attempts=2)
    assert len(db.transactions) == 2 and run.causes == ["connection_lost"]
    assert db.tables == {}


# --- Element rules ----------------------------------------------------------------------------------


def test_atomic_with_one_bad_element_writes_nothing():
    db = FakeDB()
    batch = request([{"_id": "a", "x": 1}, {"x": 2}, {"_id": "c", "x": 3}], atomic="true")
    outcome = apply(db, batch)

    assert outcome.kind == REJECTED
    doc = outcome.summary
    assert doc["status"] == "failed"
    assert doc["message"] == "1 of 3 elements failed; nothing was written (_atomic)"
    assert doc["summary"]["failures"] == {"#1": "element #1 has no _id (a non-empty string is required)"}
    assert db.transactions[-1].args("upsert_objects")["rows"] == []
    assert db.at().objects == {} and db.at().summaries["b1"]["status"] == "failed"


def test_atomic_with_a_missing_event_object_writes_nothing():
    db = FakeDB()
    event = {"_type": "VarEvent", "_id": "e1", "event": "ghost:alerts", "eventtime": "2021-07-01T10:00:00Z"}
    outcome = apply(db, request([{"_id": "a", "close": series("2021-07-01")}, event], atomic="1"))
    assert outcome.kind == REJECTED
    assert db.at().objects == {} and db.at().points == {} and db.at().events == {}


@pytest.mark.parametrize(
    "element, label, reason",
    [
        (["not", "an", "object"], "#1", "element #1 is not a JSON object"),
        ({"x": 1}, "#1", "element #1 has no _id (a non-empty string is required)"),
        ({"_id": "", "x": 1}, "#1", "element #1 has no _id (a non-empty string is required)"),
        ({"_id": 7}, "#1", "element #1 has no _id (a non-empty string is required)"),
        ({"_id": "x" * 257}, "#1", "element #1 has an _id of 257 characters (at most 256)"),
        ({"_id": "bad", "_type": 5}, "bad", "_type must be a string"),
        ({"_id": "bad", "_type": None}, "bad", "_type must be a string"),
        ({"_id": "bad", "_type": "VarThing"}, "bad", "_type 'VarThing' is not an object type"),
        ({"_id": "bad", "_replace": "yes"}, "bad", "_replace must be true or false"),
        ({"_id": "#pub", "x": 1}, "#pub", "only batch.admin may write public objects (ids starting with '#')"),
        (
            {"_id": "bad", "close": {"_type": "VarTimeSeries", "data": [{"value": 1}]}},
            "bad",
            "property 'close': observation #0 has no time; values without a time need a regular calendar "
            "(DAILY, BUSINESS or an ISO-8601 duration such as PT5M, PT1H or P1D), this series has no calendar",
        ),
    ],
)
def test_element_failures_are_recorded_with_their_label_and_the_rest_is_written(element, label, reason):
    db = FakeDB()
    outcome = apply(db, request([{"_id": "a", "x": 1}, element, {"_id": "c", "x": 3}]))

    assert outcome.kind == CREATED
    doc = outcome.summary
    assert doc["summary"]["failures"] == {label: reason}
    assert (doc["status"], doc["message"]) == ("warning", "1 of 3 elements failed")
    assert sorted(db.at().objects) == ["a", "c"]


def test_a_batch_whose_every_element_fails_is_rejected_and_repeated_labels_stay_apart():
    db = FakeDB()
    outcome = apply(db, request([{"_id": "a", "_type": 5}, {"_id": "a", "_replace": "x"}]))
    assert outcome.kind == REJECTED
    assert outcome.summary["summary"]["failures"] == {
        "a": "_type must be a string",
        "a#1": "_replace must be true or false",
    }
    assert (outcome.summary["status"], outcome.summary["message"]) == ("failed", "2 of 2 elements failed")
    assert db.at().objects == {} and db.at().summaries["b1"]["status"] == "failed"


def test_an_admin_writes_public_objects_and_the_summary_says_so():
    db = FakeDB()
    outcome = apply(db, request([{"_id": "#pub", "x": 1}]), ADMIN_USER)
    assert outcome.summary["source"] == "public" and outcome.summary["summary"]["failures"] == {}
    assert db.at().objects["#pub"]["user"] == ADMIN_USER.user


def test_server_fields_are_never_stored():
    db = FakeDB()
    element = {"_id": "a", "_version": 99, "_user": "mallory", "_batch": "zz", "_oid": 1, "_created": "x", "x": 1}
    apply(db, request([element]))
    assert db.at().objects["a"]["doc"] == {"x": 1} and db.at().objects["a"]["version"] == 1


def test_elements_with_the_same_id_fold_into_one_row_and_one_version():
    db = FakeDB()
    db.at().objects["a"] = dict(doc={"kept": 0, "x": 0}, version=3, created=START, updated=START, user="u", batch="b0")

    apply(db, request([{"_id": "a", "x": 1, "y": 1}, {"_id": "b"}, {"_id": "a", "y": 2, "z": 2}]))

    rows = db.transactions[-1].args("upsert_objects")["rows"]
    assert rows == [
        ObjectWrite("a", {"x": 1, "y": 2, "z": 2}, replace=False),
        ObjectWrite("b", {}, replace=False),
    ]
    assert db.at().objects["a"]["doc"] == {"kept": 0, "x": 1, "y": 2, "z": 2}
    assert db.at().objects["a"]["version"] == 4  # one batch, one version (SPEC §12)
    counts = db.at().summaries[db.transactions[-1].args("store_new_summary")["doc"]["_id"]]["doc"]["counts"]
    assert counts["objects"] == {"created": 1, "updated": 1, "unchanged": 0, "removed": 0}


def test_a_later_replacing_element_replaces_the_earlier_ones():
    db = FakeDB()
    db.at().objects["a"] = dict(doc={"kept": 0}, version=1, created=START, updated=START, user="u", batch="b0")
    apply(db, request([{"_id": "a", "x": 1}, {"_id": "a", "_replace": True, "y": 2}]))
    (row,) = db.transactions[-1].args("upsert_objects")["rows"]
    assert row == ObjectWrite("a", {"y": 2}, replace=True)
    assert db.at().objects["a"]["doc"] == {"y": 2}


def test_the_replace_flag_replaces_every_object():
    db = FakeDB()
    db.at().objects["a"] = dict(doc={"kept": 0}, version=1, created=START, updated=START, user="u", batch="b0")
    apply(db, request([{"_id": "a", "x": 1}], replace="true"))
    assert db.at().objects["a"]["doc"] == {"x": 1} and db.at().objects["a"]["version"] == 2


# --- Data and events: the careful path ------------------------------------------------------------


def test_a_batch_with_data_claims_first_and_locks_what_it_reads():
    db = FakeDB()
    db.at().objects["a"] = dict(
        doc={"close": {"_type": "VarTimeSeries", "units": "EUR"}},
        version=1,
        created=START,
        updated=START,
        user="u",
        batch="b0",
    )
    elements = [
        {"_id": "a", "close": series("2021-07-01T10:00:00Z", "2021-07-01T11:00:00Z")},
        {"_id": "b", "_replace": True, "close": series("2021-07-02")},
        {"_id": "c", "plain": True},
    ]
    outcome = apply(db, request(elements))

    assert outcome.kind == CREATED
    tx = db.transactions[-1]
    assert len(db.transactions) == 1
    assert tx.names == [
        "begin",
        "claim",
        "lock_id",
        "lock_objects",
        "stored_curves",
        "upsert_objects",
        "write_data",
        "store_summary",
        "commit",
        "committed",
    ]
    # Every object is locked; only those whose stored headers merge are read (not the replaced one).
    assert tx.args("lock_objects") == {"ids": {"a", "b", "c"}, "read": {"a"}}
    assert tx.args("write_data")["wiped_objects"] == ["b"]

    t = db.at()
    assert t.objects["a"]["doc"] == {"close": {"_type": "VarTimeSeries", "units": "EUR", "tenor": "1D"}}
    assert t.objects["a"]["version"] == 2
    assert sorted((o, p, i.isoformat()) for o, p, i in t.points) == [
        ("a", "close", "2021-07-01T10:00:00+00:00"),
        ("a", "close", "2021-07-01T11:00:00+00:00"),
        ("b", "close", "2021-07-02T00:00:00+00:00"),
    ]
    doc = outcome.summary
    assert doc["summary"]["series"] == {"2021-07-01": ["a:close"], "2021-07-02": ["b:close"]}
    assert doc["message"] == "Updated 3 objects, 2 series for 2021-07-01 to 2021-07-02"
    assert t.summaries["b1"]["doc"] == doc


def test_merge_curves_merge_into_the_stored_curve():
    db = FakeDB()
    ondate = {"curveDate": "2021-07-01"}
    stored = {"_type": "VarCurve", "ondate": ondate, "contracts": [{"tenor": "M1", "v": 1}, {"tenor": "M2", "v": 2}]}
    apply(db, request([{"_id": "a", "fwd": stored}], _id="b0"))

    incoming = {"_type": "VarCurve", "_merge": True, "ondate": ondate, "contracts": [{"tenor": "M2", "v": 20}]}
    apply(db, request([{"_id": "a", "fwd": incoming}], _id="b1"))

    (key,) = db.at().curves
    assert db.transactions[-1].args("stored_curves")["keys"] == [key]
    assert db.at().curves[key]["contracts"] == [{"tenor": "M1", "v": 1}, {"tenor": "M2", "v": 20}]


def test_a_top_level_event_needs_its_object():
    db = FakeDB()
    db.at().objects["known"] = dict(doc={"x": 1}, version=1, created=START, updated=START, user="u", batch="b0")
    ghost = {"_type": "VarEvent", "_id": "e1", "event": "ghost:alerts", "eventtime": "2021-07-01T10:00:00Z"}
    known = {"_type": "VarEvent", "_id": "e2", "event": "known:alerts", "eventtime": "2021-07-01T10:00:00Z"}
    fresh = {"_type": "VarEvent", "_id": "e3", "event": "new:alerts", "eventtime": "2021-07-02T10:00:00Z"}

    outcome = apply(db, request([ghost, known, {"_id": "new"}, fresh]))

    tx = db.transactions[-1]
    assert tx.names[:4] == ["begin", "claim", "lock_id", "lock_objects"]
    assert tx.args("lock_objects") == {"ids": {"ghost", "known", "new"}, "read": {"ghost", "known", "new"}}
    doc = outcome.summary
    assert doc["summary"]["failures"] == {"e1": "event object 'ghost' does not exist"}
    assert doc["status"] == "warning"
    assert doc["summary"]["events"] == {"2021-07-01": ["known:alerts"], "2021-07-02": ["new:alerts"]}
    t = db.at()
    assert "ghost" not in t.objects
    assert t.objects["known"]["doc"] == {"x": 1, "alerts": {"_type": "VarEventList"}}
    assert t.objects["known"]["version"] == 2
    assert t.objects["new"]["version"] == 1  # its element and its event: one batch, one version
    assert sorted(t.events) == [("known", "alerts", "e2"), ("new", "alerts", "e3")]
    assert t.events[("known", "alerts", "e2")][1]["eventtype"] == "#Event"


@pytest.mark.parametrize(
    "event, reason",
    [
        ({"event": "no-colon"}, "event must be 'OBJECT:LIST' (the object id and its event-list property)"),
        ({"event": 5}, "event must be 'OBJECT:LIST' (the object id and its event-list property)"),
        ({"event": "#pub:alerts"}, "only batch.admin may write public objects (ids starting with '#')"),
        ({"event": "a:alerts", "eventtime": None}, "property 'alerts': event 'e1' eventtime must be an ISO-8601"),
    ],
)
def test_bad_event_elements_fail_before_any_read(event, reason):
    db = FakeDB()
    element = {"_type": "VarEvent", "_id": "e1", "eventtime": "2021-07-01T10:00:00Z", **event}
    outcome = apply(db, request([{"_id": "a"}, element]))
    assert outcome.summary["summary"]["failures"]["e1"].startswith(reason)
    assert "lock_objects" not in db.transactions[-1].names  # nothing left to read: the plain path
    assert sorted(db.at().objects) == ["a"]


def test_retries_of_the_careful_path_do_not_repeat_failures_or_data():
    db = FakeDB()
    db.fail(1, "write_data", Retryable("deadlock"))
    ghost = {"_type": "VarEvent", "_id": "e1", "event": "ghost:alerts", "eventtime": "2021-07-01T10:00:00Z"}
    outcome = apply(db, request([{"_id": "a", "close": series("2021-07-01")}, ghost]))
    assert outcome.summary["summary"]["failures"] == {"e1": "event object 'ghost' does not exist"}
    assert outcome.summary["summary"]["series"] == {"2021-07-01": ["a:close"]}
    assert db.at().objects["a"]["version"] == 1 and len(db.at().points) == 1


# --- Limits and rights --------------------------------------------------------------------------------


def test_more_elements_than_allowed_is_too_large_before_any_transaction():
    db = FakeDB()
    with pytest.raises(TooLarge) as raised:
        apply(db, request([{"_id": "a"}, {"_id": "b"}, {"_id": "c"}]), max_elements=2)
    assert raised.value.message == "batch has 3 elements; at most 2 are allowed"
    assert db.transactions == []
    assert apply(FakeDB(), request([{"_id": "a"}, {"_id": "b"}]), max_elements=2).kind == CREATED


def test_a_reader_may_not_write_a_batch():
    db = FakeDB()
    reader = Principal("reader@example.com", "tenant-a", frozenset({READ}))
    with pytest.raises(Forbidden) as raised:
        apply(db, request([{"_id": "a"}]), reader)
    assert WRITE in raised.value.message
    assert db.transactions == []


# --- read_batch_request ---------------------------------------------------------------------------


def test_a_bare_array_is_a_batch_with_a_fresh_id():
    first = read_batch_request(b'[{"_id": "a"}]')
    second = read_batch_request(b'[{"_id": "a"}]')
    assert first.elements == [{"_id": "a"}] and first.size == 1
    assert first.id != second.id and len(first.id) == 36  # a uuid each time
    assert first.reason == DEFAULT_REASON and not first.replace and not first.atomic
    assert first.body_hash == second.body_hash


def test_the_envelope_fields_are_read():
    body = {
        "_id": "b-1.x:y",
        "_type": "VarBatch",
        "name": "n",
        "service": "s",
        "loader": "l",
        "correlationId": "c",
        "description": "d",
        "reason": "r",
        "history": True,
        "elements": [{"_id": "a"}],
    }
    batch = read_batch_request(json.dumps(body).encode())
    assert (batch.id, batch.name, batch.service, batch.loader) == ("b-1.x:y", "n", "s", "l")
    assert (batch.correlation_id, batch.description, batch.reason, batch.history) == ("c", "d", "r", True)


@pytest.mark.parametrize(
    "body, field_name",
    [
        ({"_id": "has space", "elements": [{}]}, "_id"),
        ({"_id": "x" * 129, "elements": [{}]}, "_id"),
        ({"_id": 12, "elements": [{}]}, "_id"),
        ({"_type": "VarObject", "elements": [{}]}, "_type"),
        ({"name": "n"}, "elements"),
        ({"elements": []}, "elements"),
        ({"elements": {"_id": "a"}}, "elements"),
        ({"name": "n" * (MAX_TEXT_LENGTH + 1), "elements": [{}]}, "name"),
        ({"service": 5, "elements": [{}]}, "service"),
        ({"correlationId": ["c"], "elements": [{}]}, "correlationId"),
        ({"reason": "r" * (MAX_TEXT_LENGTH + 1), "elements": [{}]}, "reason"),
        ({"history": "yes", "elements": [{}]}, "history"),
        ({"history": 1, "elements": [{}]}, "history"),
    ],
)
def test_envelope_errors_name_the_field(body, field_name):
    with pytest.raises(InvalidInput) as raised:
        read_batch_request(json.dumps(body).encode())
    assert list(raised.value.errors["json"]) == [field_name]
    assert f"{field_name}: " in raised.value.message


def test_every_envelope_problem_is_named_at_once():
    with pytest.raises(InvalidInput) as raised:
        read_batch_request(json.dumps({"_id": "bad id", "_type": "X", "history": "no"}).encode())
    assert set(raised.value.errors["json"]) == {"_id", "_type", "elements", "history"}


@pytest.mark.parametrize("raw", [b'"text"', b"42", b"null", b"{not json"])
def test_a_body_that_is_no_batch_is_invalid(raw):
    with pytest.raises(InvalidInput):
        read_batch_request(raw)


def test_the_body_hash_covers_the_flags_and_the_reason():
    raw = b'{"_id": "b1", "elements": [{"_id": "a"}]}'
    plain = read_batch_request(raw).body_hash
    assert read_batch_request(raw).body_hash == plain
    assert read_batch_request(raw, replace="false", atomic="0", reason=DEFAULT_REASON).body_hash == plain
    assert read_batch_request(raw, replace="TRUE").body_hash == read_batch_request(raw, replace="1").body_hash
    variants = {
        read_batch_request(raw, replace="true").body_hash,
        read_batch_request(raw, atomic="true").body_hash,
        read_batch_request(raw, replace="true", atomic="true").body_hash,
        read_batch_request(raw, reason="Backfill").body_hash,
        read_batch_request(b'{"_id": "b1", "elements": [{"_id": "b"}]}').body_hash,
    }
    assert len(variants) == 5 and plain not in variants


def test_the_query_reason_wins_over_the_body_reason():
    raw = b'{"reason": "from body", "elements": [{"_id": "a"}]}'
    assert read_batch_request(raw).reason == "from body"
    assert read_batch_request(raw, reason="from query").reason == "from query"
    with pytest.raises(InvalidInput) as raised:
        read_batch_request(raw, reason="q" * (MAX_TEXT_LENGTH + 1))
    assert "_reason" in raised.value.message


@pytest.mark.parametrize("flag", ["_replace", "_atomic"])
@pytest.mark.parametrize("value", ["yes", "2", "truee", "on"])
def test_bad_flag_values_are_invalid(flag, value):
    with pytest.raises(InvalidInput) as raised:
        read_batch_request(b'[{"_id": "a"}]', **{flag.lstrip("_"): value})
    assert raised.value.message.startswith(f"{flag} must be true or false")


@pytest.mark.parametrize("value, expected", [("true", True), (" True ", True), ("1", True), ("0", False), ("", False)])
def test_flag_values(value, expected):
    batch = read_batch_request(b'[{"_id": "a"}]', replace=value, atomic=value)
    assert batch.replace is expected and batch.atomic is expected


# --- Layering -----------------------------------------------------------------------------------------


def test_the_use_case_imports_no_web_framework_driver_or_store():
    script = (
        "import sys, batchsvc.core.batches; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'sqlalchemy', 'psycopg2') "
        "or m == 'batchsvc.db' or m.startswith(('batchsvc.store', 'batchsvc.models', 'batchsvc.api')))))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
