"""History of observations (SPEC §12): unchanged points are no change, corrections and removals
are archived point by point, as-of reads, and undoing a batch's observations.

Batches go through POST /api/batch (Flask test client); the chunk and archive rows are inspected
directly where storing nothing is the point; as-of reads call store.series.read_points (the data
route's `_asof` is wired in core/data.py); undo runs on the store like a rollback does
(raw_transaction + BatchStore, as tests/test_db.py).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import orjson
from conftest import auth, connect, db_rows

from batchsvc.core.history import RECREATE, REMOVE, RESTORE, WAS_CREATED, WAS_REMOVED, WAS_UPDATED
from batchsvc.core.identity import Scope
from batchsvc.core.typed import DataWrites
from batchsvc.store import series as series_store
from batchsvc.store import stamps
from batchsvc.store.batches import PREPARED, BatchStore
from batchsvc.store.transaction import raw_transaction

SCOPE = Scope("tenant-a", "production")
SCOPE_DICT = {"tenant": SCOPE.tenant, "environment": SCOPE.environment}
EMPTY = {"created": 0, "updated": 0, "unchanged": 0, "removed": 0}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------------


def post(client, elements, batch_id=None, *, status=201, query="") -> dict:
    body = {"elements": elements, **({"_id": batch_id} if batch_id else {})}
    response = client.post("/api/batch" + query, data=orjson.dumps(body), headers=auth())
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def series(data, **header) -> dict:
    return {"_type": "VarTimeSeries", **header, "data": data}


def minutes(day: date, values, step: int = 5) -> list[dict]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [
        {"time": (start + timedelta(minutes=n * step)).strftime("%Y-%m-%dT%H:%M:%SZ"), "value": value}
        for n, value in enumerate(values)
    ]


def read(client, ref: str, **params) -> list[dict]:
    response = client.get(f"/api/data/v1/private/{ref}", query_string=params, headers=auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["data"]


def read_at(db_url, ref: str, asof: datetime | None, *, start=None, end=None, last=None) -> list[dict]:
    """The observations of OBJ:PROP as store.series.read_points answers them (as of `asof`)."""
    object_id, prop = ref.split(":")
    connection = connect(db_url, autocommit=True)
    try:
        return series_store.read_points(
            connection, SCOPE_DICT, object_id, prop, start=start, end=end, last=last, asof=asof
        )
    finally:
        connection.close()


def instant() -> datetime:
    """A moment strictly between the batch that just finished and the next (batch times are in ms)."""
    time.sleep(0.003)
    moment = datetime.now(UTC)
    time.sleep(0.003)
    return moment


def chunks(db_url, object_id, prop="PRICE") -> list[tuple]:
    """(day, points, stamps, ctid, xmin) of each chunk of one series, in day order."""
    return db_rows(
        db_url,
        """SELECT c.day, cardinality(c.times), c.stamps, c.ctid::text, c.xmin::text
           FROM series_chunks c JOIN series s ON s.tenant_key = c.tenant_key AND s.id = c.series_id
           WHERE s.object_id = %s AND s.property = %s ORDER BY c.day""",
        (object_id, prop),
    )


def archived(db_url) -> list[tuple]:
    """(day, superseded stamp, times, vals, stamps) of every series_versions row."""
    return db_rows(
        db_url, "SELECT day, superseded, times, vals, stamps FROM series_versions ORDER BY series_id, day, superseded"
    )


def stamp_of(db_url, batch_id: str) -> int | None:
    """The stamp batch `batch_id` wrote its data with (None: it changed no data)."""
    rows = db_rows(db_url, "SELECT stamp FROM batch_stamps WHERE batch = %s", (batch_id,))
    return rows[0][0] if rows else None


def us(text: str) -> int:
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - EPOCH) // timedelta(microseconds=1)


# --- counts, and unchanged points store nothing ---------------------------------------------------------


def test_new_unchanged_and_corrected_points_are_counted_and_only_changed_dates_listed(client, db_url):
    day1, day2 = date(2024, 3, 4), date(2024, 3, 5)
    first = minutes(day1, [float(n) for n in range(288)]) + minutes(day2, [float(n) + 0.5 for n in range(288)])
    summary = post(client, [{"_id": "S", "PRICE": series(first)}], "load-1")
    assert summary["counts"]["points"] == {**EMPTY, "created": 576}
    assert summary["summary"]["series"] == {"2024-03-04": ["S:PRICE"], "2024-03-05": ["S:PRICE"]}

    again = post(client, [{"_id": "S", "PRICE": series(first)}], "load-1-again")
    assert again["counts"]["points"] == {**EMPTY, "unchanged": 576}
    assert again["summary"].get("series", {}) == {}  # nothing changed: no date listed

    # day 1 re-sent as it is, day 2 with two corrections, one new point after it
    fixed = [dict(p) for p in first]
    fixed[300]["value"], fixed[301]["value"] = -1.0, -2.0
    fixed.append({"time": "2024-03-06T00:00:00Z", "value": 9.0})
    third = post(client, [{"_id": "S", "PRICE": series(fixed)}], "load-2")
    assert third["counts"]["points"] == {**EMPTY, "created": 1, "updated": 2, "unchanged": 574}
    assert third["summary"]["series"] == {"2024-03-05": ["S:PRICE"], "2024-03-06": ["S:PRICE"]}
    assert read(client, "S:PRICE") == fixed

    # a value of another type, another time form or another field is a change too
    changes = [
        {"time": "2024-03-04T00:00:00Z", "value": 0},  # the integer 0, stored the float 0.0
        {"time": "2024-03-04T00:05:00+00:00", "value": 1.0},  # the same instant written otherwise
        {"time": "2024-03-04T00:10:00Z", "value": 2.0, "flag": "estimated"},
        {"time": "2024-03-04T00:15:00Z", "value": 3.0},  # as stored
    ]
    fourth = post(client, [{"_id": "S", "PRICE": series(changes)}], "load-3")
    assert fourth["counts"]["points"] == {**EMPTY, "updated": 3, "unchanged": 1}
    assert fourth["summary"]["series"] == {"2024-03-04": ["S:PRICE"]}


def test_signed_zero_and_booleans_are_not_the_numbers_they_equal(client):
    post(client, [{"_id": "Z", "P": series([{"time": "2024-01-01T00:00:00Z", "value": 0.0, "q": 1}])}])
    summary = post(client, [{"_id": "Z", "P": series([{"time": "2024-01-01T00:00:00Z", "value": -0.0, "q": 1}])}])
    assert summary["counts"]["points"] == {**EMPTY, "updated": 1}
    summary = post(client, [{"_id": "Z", "P": series([{"time": "2024-01-01T00:00:00Z", "value": -0.0, "q": True}])}])
    assert summary["counts"]["points"] == {**EMPTY, "updated": 1}
    summary = post(client, [{"_id": "Z", "P": series([{"time": "2024-01-01T00:00:00Z", "value": -0.0, "q": True}])}])
    assert summary["counts"]["points"] == {**EMPTY, "unchanged": 1}
    assert read(client, "Z:P") == [{"time": "2024-01-01T00:00:00Z", "value": -0.0, "q": True}]
    # the chunk rewritten for another point keeps -0.0 and the whole float as they were
    post(client, [{"_id": "Z", "P": series([{"time": "2024-01-01T00:05:00Z", "value": 2.0}])}])
    summary = post(client, [{"_id": "Z", "P": series([{"time": "2024-01-01T00:05:00Z", "value": 3.0}])}])
    assert summary["counts"]["points"] == {**EMPTY, "updated": 1}
    data = read(client, "Z:P")
    assert data == [
        {"time": "2024-01-01T00:00:00Z", "value": -0.0, "q": True},
        {"time": "2024-01-01T00:05:00Z", "value": 3.0},
    ]
    assert str(data[0]["value"]) == "-0.0" and type(data[1]["value"]) is float


def test_an_unchanged_resend_writes_no_tuple_and_appending_archives_nothing(client, db_url):
    days = [date(2024, 5, 1) + timedelta(days=d) for d in range(3)]
    data = [p for d, day in enumerate(days) for p in minutes(day, [d * 1000 + n / 4 for n in range(288)])]
    post(client, [{"_id": "U", "PRICE": series(data)}, {"_id": "U2", "PRICE": series(data[:288])}], "u-1")
    before = chunks(db_url, "U")
    assert [row[:2] for row in before] == [(day, 288) for day in days]
    count = db_rows(db_url, "SELECT count(*) FROM series_chunks")

    again = post(client, [{"_id": "U", "PRICE": series(data)}, {"_id": "U2", "PRICE": series(data[:288])}], "u-2")
    assert again["counts"]["points"] == {**EMPTY, "unchanged": 864 + 288}
    assert chunks(db_url, "U") == before  # same tuples (ctid) written by the same transaction (xmin)
    assert db_rows(db_url, "SELECT count(*) FROM series_chunks") == count
    assert archived(db_url) == []
    assert stamp_of(db_url, "u-2") is None  # a load that changed nothing leaves not even its stamp
    assert db_rows(db_url, "SELECT count(*) FROM batch_changes WHERE batch = 'u-2'") == [(0,)]

    # a new day: its own chunk, nothing stored before rewritten or archived
    new_day = date(2024, 5, 4)
    appended = post(client, [{"_id": "U", "PRICE": series(minutes(new_day, range(288)))}], "u-3")
    assert appended["counts"]["points"] == {**EMPTY, "created": 288}
    after = chunks(db_url, "U")
    assert after[:3] == before and after[3][:3] == (new_day, 288, [stamp_of(db_url, "u-3")])
    assert archived(db_url) == []
    assert before[0][2] == [stamp_of(db_url, "u-1")]  # one stamp for a chunk one batch wrote


def test_correcting_10_points_of_a_1440_point_day_archives_exactly_those_10(client, db_url):
    day = date(2024, 6, 1)
    data = minutes(day, [round(50 + n / 100, 2) for n in range(1440)], step=1)
    post(client, [{"_id": "M", "PRICE": series(data)}], "m-1")
    corrected_at = list(range(100, 1000, 90))  # 10 points
    fixed = [dict(p) for p in data]
    for n in corrected_at:
        fixed[n]["value"] = -fixed[n]["value"]
    summary = post(client, [{"_id": "M", "PRICE": series(fixed)}], "m-2")
    assert summary["counts"]["points"] == {**EMPTY, "updated": 10, "unchanged": 1430}

    [(archived_day, superseded, times, vals, made)] = archived(db_url)
    first, second = stamp_of(db_url, "m-1"), stamp_of(db_url, "m-2")
    assert (archived_day, superseded) == (day, second)
    assert times == [us(data[n]["time"]) for n in corrected_at]
    assert vals == [data[n]["value"] for n in corrected_at] and made == [first]
    [(_, count, chunk_stamps, _, _)] = chunks(db_url, "M")
    assert count == 1440 and len(chunk_stamps) == 1440
    assert [n for n, s in enumerate(chunk_stamps) if s == second] == corrected_at
    assert read(client, "M:PRICE") == fixed

    # the row holds 10 points' worth, not the day's
    [(stored_bytes,)] = db_rows(db_url, "SELECT pg_column_size(times) + pg_column_size(vals) FROM series_versions")
    assert stored_bytes < 300


# --- as-of reads ---------------------------------------------------------------------------------------------


def test_asof_before_and_after_a_correction_inside_a_stored_day(client, db_url):
    day = date(2024, 7, 1)
    original = minutes(day, [float(n) for n in range(288)])
    before_anything = instant()
    post(client, [{"_id": "A", "PRICE": series(original)}], "a-1")
    after_load = instant()
    fixed = [dict(p) for p in original]
    fixed[10]["value"], fixed[200]["value"] = 1000.0, 2000.0
    post(client, [{"_id": "A", "PRICE": series(fixed[:250] + minutes(day + timedelta(days=1), [7.0]))}], "a-2")
    after_fix = instant()
    added = minutes(day + timedelta(days=1), [7.0])

    assert read_at(db_url, "A:PRICE", before_anything) == []
    assert read_at(db_url, "A:PRICE", after_load) == original  # old values, the later point absent
    assert read_at(db_url, "A:PRICE", after_fix) == fixed + added
    for asof in (after_load, after_fix):  # whole floats stay floats (1.0, not 1)
        assert {type(p["value"]) for p in read_at(db_url, "A:PRICE", asof)} == {float}
    assert read_at(db_url, "A:PRICE", None) == fixed + added
    # every range form
    start, end = datetime(2024, 7, 1, 0, 45, tzinfo=UTC), datetime(2024, 7, 1, 17, 0, tzinfo=UTC)
    assert read_at(db_url, "A:PRICE", after_load, start=start, end=end) == original[9:204]
    assert read_at(db_url, "A:PRICE", after_fix, start=start, end=end) == fixed[9:204]
    assert read_at(db_url, "A:PRICE", after_load, last=3) == original[-3:]
    assert read_at(db_url, "A:PRICE", after_fix, last=3) == original[-2:] + added
    assert (
        read_at(db_url, "A:PRICE", after_load, end=datetime(2024, 7, 1, 0, 55, tzinfo=UTC), last=2) == (original[9:11])
    )
    assert read_at(db_url, "A:PRICE", after_fix, end=datetime(2024, 7, 1, 0, 55, tzinfo=UTC), last=2) == fixed[9:11]
    assert read_at(db_url, "A:PRICE", after_load, start=datetime(2024, 7, 2, tzinfo=UTC)) == []


def test_asof_last_walks_back_past_days_that_were_empty_then(client, db_url):
    days = [date(2024, 8, 1) + timedelta(days=d) for d in range(12)]
    post(client, [{"_id": "L", "PRICE": series(minutes(days[0], [1.0, 2.0]))}], "l-1")
    then = instant()
    for n, day in enumerate(days[1:], 2):  # eleven later days, one batch each
        post(client, [{"_id": "L", "PRICE": series(minutes(day, [float(n)]))}], f"l-{n}")
    assert read_at(db_url, "L:PRICE", then, last=5) == minutes(days[0], [1.0, 2.0])
    assert len(read_at(db_url, "L:PRICE", None, last=5)) == 5


def test_replace_removals_are_archived_and_read_as_of_before(client, db_url):
    first = minutes(date(2024, 9, 1), range(288)) + minutes(date(2024, 9, 2), range(288))
    post(client, [{"_id": "R", "PRICE": series(first), "OTHER": series(first[:5])}], "r-1")
    then = instant()
    kept = first[280:300]  # the last points of day 1, the first of day 2: re-sent as they are
    summary = post(client, [{"_id": "R", "PRICE": {**series(kept), "_replace": True}}], "r-2")
    assert summary["counts"]["points"] == {**EMPTY, "unchanged": 20, "removed": 556}
    assert read(client, "R:PRICE") == kept
    assert read_at(db_url, "R:PRICE", then) == first
    assert read_at(db_url, "R:PRICE", then, last=4) == first[-4:]
    assert read_at(db_url, "R:PRICE", instant()) == kept
    # one archive row per chunk for the replacing batch, holding only what it removed
    assert [(day, len(times)) for day, _, times, _, _ in archived(db_url)] == [
        (date(2024, 9, 1), 280),
        (date(2024, 9, 2), 276),
    ]

    # a replaced object: its series go (rows kept), readable as of before
    before_wipe = instant()
    summary = post(client, [{"_id": "R", "x": 1}], "r-3", query="?_replace=true")
    assert summary["counts"]["points"] == {**EMPTY, "removed": 25}
    assert db_rows(db_url, "SELECT count(*) FROM series_chunks") == [(0,)]
    assert read_at(db_url, "R:PRICE", before_wipe) == kept
    assert read_at(db_url, "R:OTHER", before_wipe) == first[:5]
    assert read_at(db_url, "R:OTHER", instant()) == []


# --- undoing a batch's observations ----------------------------------------------------------------------


def undo(database, batch_id: str, decide=None, *, as_batch: str) -> tuple[list, object]:
    """What a rollback of `batch_id` does to points: its items, then (unless `decide` returns
    no actions) the actions applied under a stamp of its own; the change log flushed."""
    now = datetime.now(UTC)
    with raw_transaction(database, PREPARED) as cursor:
        store = BatchStore(cursor, SCOPE)
        undone = stamps.stamp_of(cursor, SCOPE_DICT, batch_id)
        items = series_store.undo_items(cursor, SCOPE_DICT, undone, store.history.changes(batch_id))
        actions = (decide or default_actions)(items)
        changes = None
        if actions:
            stamp = store.stamp(as_batch, now)
            changes = series_store.apply_undo(cursor, SCOPE_DICT, actions, stamp=stamp, log=store.log)
            store.log.flush(cursor, SCOPE_DICT, as_batch, now)
    return items, changes


def default_actions(items) -> list:
    action = {WAS_CREATED: REMOVE, WAS_UPDATED: RESTORE, WAS_REMOVED: RECREATE}
    return [(item, action[item.change]) for item in items]


def test_undo_removes_created_points_restores_corrected_ones_and_undoing_that_reapplies(client, db_url, database):
    day = date(2024, 10, 1)
    original = minutes(day, [float(n) for n in range(10)])
    post(client, [{"_id": "B", "PRICE": series(original)}], "b-1")
    fixed = [dict(p) for p in original]
    fixed[1]["value"], fixed[2]["value"] = 100.0, 200.0
    fixed += [{"time": "2024-10-01T01:00:00Z", "value": 10.0}, {"time": "2024-10-01T01:05:00Z", "value": 11.0}]
    post(client, [{"_id": "B", "PRICE": series(fixed)}], "b-2")
    after_b2 = read(client, "B:PRICE")

    items, changes = undo(database, "b-2", as_batch="undo-b-2")
    assert [(item.label, item.change, item.present, item.current_by, item.before, item.later) for item in items] == [
        ("B:PRICE:2024-10-01T00:05:00Z", WAS_UPDATED, True, "b-2", True, ()),
        ("B:PRICE:2024-10-01T00:10:00Z", WAS_UPDATED, True, "b-2", True, ()),
        ("B:PRICE:2024-10-01T01:00:00Z", WAS_CREATED, True, "b-2", False, ()),
        ("B:PRICE:2024-10-01T01:05:00Z", WAS_CREATED, True, "b-2", False, ()),
    ]
    assert changes.tallies["points"].as_dict() == {**EMPTY, "updated": 2, "removed": 2}
    assert read(client, "B:PRICE") == original
    logged = db_rows(db_url, "SELECT updated FROM batch_changes WHERE batch = 'undo-b-2' AND kind = 'points'")
    assert len(logged) == 1 and len(logged[0][0]) == 1  # the one chunk it changed

    # the rollback of the rollback puts b-2's points back, through the same code
    items, changes = undo(database, "undo-b-2", as_batch="undo-undo-b-2")
    assert sorted((item.label[-9:], item.change, item.current_by) for item in items) == [
        ("00:05:00Z", WAS_UPDATED, "undo-b-2"),
        ("00:10:00Z", WAS_UPDATED, "undo-b-2"),
        ("01:00:00Z", WAS_REMOVED, None),
        ("01:05:00Z", WAS_REMOVED, None),
    ]
    assert changes.tallies["points"].as_dict() == {**EMPTY, "created": 2, "updated": 2}
    assert read(client, "B:PRICE") == after_b2


def test_undo_reports_a_later_correction_with_the_batch_that_made_it(client, db_url, database):
    day = date(2024, 11, 1)
    post(client, [{"_id": "C", "PRICE": series(minutes(day, [1.0, 2.0, 3.0]))}], "c-1")
    post(client, [{"_id": "C", "PRICE": series(minutes(day, [1.0, 20.0, 30.0]))}], "c-2")
    post(client, [{"_id": "C", "PRICE": series([{"time": "2024-11-01T00:05:00Z", "value": 200.0}])}], "c-3")
    post(client, [{"_id": "C", "PRICE": series([{"time": "2024-11-01T00:05:00Z", "value": 2000.0}])}], "c-4")
    versions = len(archived(db_url))

    items, changes = undo(database, "c-2", lambda items: [], as_batch="never")
    assert changes is None
    by_time = {item.label.rsplit("T", 1)[1]: item for item in items}
    assert set(by_time) == {"00:05:00Z", "00:10:00Z"}  # 00:00 was sent as stored: no change
    conflict, clean = by_time["00:05:00Z"], by_time["00:10:00Z"]
    assert (conflict.change, conflict.present, conflict.current_by, conflict.later) == (
        WAS_UPDATED,
        True,
        "c-4",
        ("c-3", "c-4"),
    )
    assert (clean.change, clean.current_by, clean.later) == (WAS_UPDATED, "c-2", ())

    # forced: the rest is undone, the conflicting point left as the later batches made it
    items, changes = undo(database, "c-2", lambda items: [(clean, RESTORE)], as_batch="undo-c-2")
    assert changes.tallies["points"].as_dict() == {**EMPTY, "updated": 1}
    assert read(client, "C:PRICE") == minutes(day, [1.0, 2000.0, 3.0])
    assert len(archived(db_url)) == versions + 1


def test_undo_of_a_replace_brings_removed_points_back_and_data_writers_names_the_stamps(client, db_url, database):
    first = minutes(date(2024, 12, 1), range(6)) + minutes(date(2024, 12, 2), range(3))
    post(client, [{"_id": "W", "PRICE": series(first)}], "w-1")
    post(client, [{"_id": "W", "PRICE": {**series(first[4:7]), "_replace": True}}], "w-2")
    assert read(client, "W:PRICE") == first[4:7]

    items, changes = undo(database, "w-2", as_batch="undo-w-2")
    assert {item.change for item in items} == {WAS_REMOVED} and len(items) == 6
    assert changes.tallies["points"].as_dict() == {**EMPTY, "created": 6}
    assert read(client, "W:PRICE") == first

    with raw_transaction(database, PREPARED) as cursor:
        writers = series_store.data_writers(cursor, SCOPE_DICT, ["W", "NONE"])
    assert writers == {"W": {stamp_of(db_url, "w-1"), stamp_of(db_url, "undo-w-2")}}


def test_one_transaction_archiving_a_chunk_twice_keeps_the_state_before_it(client, db_url, database):
    """A rollback may restore points and remove the same object's data in one transaction (one
    stamp): the chunk's archived points merge into one row, the state before the transaction winning."""
    original = minutes(date(2025, 1, 1), [1.0, 2.0, 3.0])
    post(client, [{"_id": "T", "PRICE": series(original)}], "t-1")
    then = instant()
    corrected = DataWrites(points={("PRICE", datetime(2025, 1, 1, 0, 5, tzinfo=UTC)): {"value": 20.0}})
    now = datetime.now(UTC)
    with raw_transaction(database, PREPARED) as cursor:
        store = BatchStore(cursor, SCOPE)
        first = store.write_data([], {"T": corrected}, batch_id="t-2", now=now)
        second = store.write_data(["T"], {}, batch_id="t-2", now=now)  # the object's data removed
        store.log.flush(cursor, SCOPE_DICT, "t-2", now)
    assert first.tallies["points"].as_dict() == {**EMPTY, "updated": 1}
    assert second.tallies["points"].as_dict() == {**EMPTY, "removed": 3}
    [(_, superseded, times, vals, made)] = archived(db_url)
    assert superseded == stamp_of(db_url, "t-2")
    assert times == [us(p["time"]) for p in original] and vals == [1.0, 2.0, 3.0]
    assert made == [stamp_of(db_url, "t-1")] * 3  # merged rows keep a stamp per point
    assert read_at(db_url, "T:PRICE", then) == original
    assert read_at(db_url, "T:PRICE", instant()) == []


def test_asof_on_the_data_route(client, db_url):
    original = minutes(date(2025, 2, 1), [1.0, 2.0])
    post(client, [{"_id": "D", "PRICE": series(original)}], "d-1")
    then = instant()
    post(client, [{"_id": "D", "PRICE": series(minutes(date(2025, 2, 1), [5.0, 2.0, 3.0]))}], "d-2")
    response = client.get("/api/data/v1/private/D:PRICE", query_string={"_asof": then.isoformat()}, headers=auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"] == original
    assert read(client, "D:PRICE") == minutes(date(2025, 2, 1), [5.0, 2.0, 3.0])
