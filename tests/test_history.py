"""Object history (SPEC §12): versions, unchanged writes, as-of reads, rollbacks, object deletes, retention."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import quote

import orjson
import pytest
import requests
from conftest import SECRET, SERIES_POINTS, assert_error, auth, connect, db_rows, post_until_it_waits, start_live_server

from batchsvc import create_app

TENANT = "tenant-a"  # conftest's default token
READER, WRITER = ("batch.read",), ("batch.write",)
EMPTY = {"created": 0, "updated": 0, "unchanged": 0, "removed": 0}


def post(client, elements, batch_id=None, *, query="", headers=None, status=201):
    body = {"elements": elements, **({"_id": batch_id} if batch_id else {})}
    response = client.post("/api/batch" + query, data=json.dumps(body).encode(), headers=headers or auth())
    assert response.status_code == status, response.get_data(as_text=True)
    time.sleep(0.003)  # distinct millisecond timestamps between batches
    return response.get_json()


def get(client, path, status=200, headers=None):
    response = client.get(path, headers=headers or auth())
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def obj(client, object_id, query="", status=200):
    return get(client, f"/api/object/v1/private/{quote(object_id, safe='')}{query}", status)


def rollback(client, batch_id, query="", headers=None):
    response = client.post(f"/api/batch/v1/{batch_id}/rollback{query}", headers=headers or auth())
    time.sleep(0.003)
    return response


def delete(client, object_id, query="", headers=None, source="private"):
    response = client.delete(f"/api/object/v1/{source}/{quote(object_id, safe='')}{query}", headers=headers or auth())
    time.sleep(0.003)
    return response


def at(stamp: str, ms: int = 0) -> str:
    """A served timestamp moved by `ms` milliseconds, as an `_asof` query value."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(milliseconds=ms)
    return quote(moment.isoformat(), safe="")


def everything(client) -> tuple:
    """All the tenant's objects as the list and one by one return them (what a rollback must restore)."""
    listed = get(client, "/api/object/v1/all?_limit=1000")
    return listed, {o["_id"]: obj(client, o["_id"]) if not o["_id"].startswith("#") else None for o in listed}


def history_rows(db_url, tenant=TENANT) -> tuple[int, int]:
    """(archived versions, change logs) of the tenant."""
    return (
        db_rows(db_url, "SELECT count(*) FROM object_versions WHERE tenant = %s", (tenant,))[0][0],
        db_rows(db_url, "SELECT count(*) FROM batch_changes WHERE tenant = %s", (tenant,))[0][0],
    )


def tuples(db_url, tenant=TENANT) -> str:
    """A fingerprint of the tenant's object rows as stored (a rewritten row gets a new xmin)."""
    return db_rows(
        db_url,
        "SELECT md5(string_agg(id || ':' || xmin::text, ',' ORDER BY id)) FROM objects WHERE tenant = %s",
        (tenant,),
    )[0][0]


# --- versions ------------------------------------------------------------------------------------


def test_one_batch_makes_one_version_and_earlier_versions_are_served_as_they_were(client):
    first = post(client, [{"_id": "X", "a": 1}, {"_id": "X", "b": 1}], "v-1")
    assert first["counts"]["objects"] == {**EMPTY, "created": 1}
    served1 = obj(client, "X")
    assert served1["_version"] == 1 and (served1["a"], served1["b"]) == (1, 1)  # two elements, one version
    post(client, [{"_id": "X", "a": 2}], "v-2", query="?_reason=correction")
    served2 = obj(client, "X")
    post(client, [{"_id": "X", "_replace": True, "c": 3, "_type": "Widget"}], "v-3")
    served3 = obj(client, "X")
    assert served3["_version"] == 3 and "a" not in served3

    assert obj(client, "X/1") == served1
    assert obj(client, "X/2") == served2
    assert obj(client, "X/3") == served3 == obj(client, "X")
    assert obj(client, "X", "?_version=2") == served2
    response = client.get("/api/object/v1/private/X/*", headers=auth())
    assert response.status_code == 200 and response.headers["x-total-count"] == "3"
    assert response.get_json() == [
        {
            "_id": "X",
            "_version": version,
            "_timestamp": served["_timestamp"],
            "_user": "loader@example.com",
            "_batch": f"v-{version}",
            "reason": reason,
        }
        for version, served, reason in (
            (3, served3, "Update Batch"),
            (2, served2, "correction"),
            (1, served1, "Update Batch"),
        )
    ]
    paged = client.get("/api/object/v1/private/X/*?_limit=1&_skip=1", headers=auth())
    assert paged.headers["x-total-count"] == "3" and [v["_version"] for v in paged.get_json()] == [2]
    assert [v["_version"] for v in get(client, "/api/object/v1/private/X/*?_skip=2")] == [1]
    assert [v["_version"] for v in get(client, "/api/object/v1/private/X/*?_limit=2")] == [3, 2]


def test_a_path_that_names_a_stored_object_is_that_object_else_a_version(client):
    post(client, [{"_id": "F", "v": 1}])
    post(client, [{"_id": "F", "v": 2}])
    post(client, [{"_id": "F/1", "own": True}, {"_id": "F/x/*", "star": True}])
    assert obj(client, "F/1")["own"] is True  # an object of that id wins
    assert get(client, "/api/object/v1/private/F/1")["own"] is True
    assert get(client, "/api/object/v1/private/F/2")["v"] == 2  # no object F/2: version 2 of F
    assert [v["_version"] for v in get(client, "/api/object/v1/private/F/*")] == [2, 1]
    assert get(client, "/api/object/v1/private/F/x/*")["star"] is True
    assert get(client, "/api/object/v1/private/F/x/1", status=404)["message"] == "object 'F/x/1' not found"
    assert_error(client.get("/api/object/v1/private/F/3", headers=auth()), 404)  # no version 3 yet
    assert_error(client.get("/api/object/v1/private/F/0", headers=auth()), 400)
    assert_error(client.get("/api/object/v1/private/NONE/1", headers=auth()), 404)
    assert_error(client.get("/api/object/v1/private/NONE/*", headers=auth()), 404)
    assert_error(client.get("/api/object/v1/public/F/1", headers=auth()), 404)  # F is private


# --- unchanged writes ----------------------------------------------------------------------------


def test_an_unchanged_resend_of_10000_elements_changes_and_stores_nothing(client, db_url):
    elements = [{"_id": f"U{i:05d}", "name": f"unit {i}", "n": i, "tags": ["a", "b"]} for i in range(10_000)]
    first = post(client, elements, "load-1")
    assert first["counts"]["objects"] == {**EMPTY, "created": 10_000}
    assert history_rows(db_url) == (0, 1)  # nothing archived; the creations are logged once
    before_rows, before_tuples = history_rows(db_url), tuples(db_url)
    before = obj(client, "U00042")

    again = post(client, elements, "load-1-again")  # the same file, under a new batch id
    assert again["status"] == "success" and again["size"] == 10_000
    assert again["counts"]["objects"] == {**EMPTY, "unchanged": 10_000}
    assert again["counts"]["points"] == EMPTY
    assert history_rows(db_url) == before_rows  # zero rows (so zero bytes) of history
    assert tuples(db_url) == before_tuples  # no object row rewritten
    assert obj(client, "U00042") == before  # _version, _timestamp, _batch all stay

    # key order is no change either; one changed element out of 10,000 is one version
    reordered = [dict(reversed(list(e.items()))) for e in elements]
    reordered[7] = {**reordered[7], "n": -7}
    third = post(client, reordered, "load-1-fix")
    assert third["counts"]["objects"] == {**EMPTY, "updated": 1, "unchanged": 9_999}
    assert history_rows(db_url) == (before_rows[0] + 1, before_rows[1] + 1)
    assert obj(client, "U00007")["_version"] == 2 and obj(client, "U00007")["_batch"] == "load-1-fix"
    assert obj(client, "U00042") == before


def test_unchanged_counts_with_merge_replace_and_data(client):
    post(client, [{"_id": "M", "a": 1}, {"_id": "R", "a": 1}], "c-1")
    summary = post(
        client,
        [
            {"_id": "M", "a": 1},  # merge, same value
            {"_id": "R", "_replace": True, "a": 1},  # replace with the same document
            {"_id": "N", "x": 1},
            {"_id": "M", "b": 2},  # folds into M: changed after all
            {"_id": "S", "P": {"_type": "VarTimeSeries", "data": [{"time": "2024-01-01", "value": 1}]}},
        ],
        "c-2",
    )
    assert summary["counts"]["objects"] == {**EMPTY, "created": 2, "updated": 1, "unchanged": 1}
    assert summary["counts"]["points"] == {**EMPTY, "created": 1}
    assert obj(client, "R")["_batch"] == "c-1" and obj(client, "M")["_version"] == 2
    failed = post(client, [{"no": "id"}], status=422)
    assert failed["counts"]["objects"] == EMPTY


def test_a_concurrent_batch_creating_the_same_object_is_merged_into_and_archived(db_url):
    """Another session inserts X (not committed) when the batch's upsert starts: the batch waits,
    then merges over the row it never saw and archives it as version 1, like any update."""
    app = create_app({"database_url": db_url, "jwt_secret": SECRET})
    client = app.test_client()
    tenant = "tenant-race"
    headers = {**auth(tenant=tenant), "Content-Type": "application/json"}
    other = connect(db_url)
    try:
        with other.cursor() as cur:
            cur.execute(
                """INSERT INTO objects (tenant, environment, id, doc, version, created, updated, "user", batch, reason)
                VALUES (%s, 'production', 'X', '{"theirs": 1}', 1, now(), now(), 'other', 'theirs', 'r')""",
                (tenant,),
            )
        body = orjson.dumps({"_id": "mine", "elements": [{"_id": "X", "mine": 1}]})
        sender, outcome, _ = post_until_it_waits(client, body, headers, db_url, "the other insert")
        other.commit()
        sender.join(30)
        response = outcome["response"]
        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json()["counts"]["objects"]["updated"] == 1
        stored = client.get("/api/object/v1/private/X", headers=headers).get_json()
        assert (stored["theirs"], stored["mine"], stored["_version"]) == (1, 1, 2)
        assert client.get("/api/object/v1/private/X/1", headers=headers).get_json()["_batch"] == "theirs"
    finally:
        other.close()
        for table in ("objects", "object_versions", "batch_changes", "batch_summaries"):
            db_rows(db_url, f"DELETE FROM {table} WHERE tenant = %s", (tenant,))
        app.extensions["batchsvc"].database.dispose()


# --- as-of reads and object deletes ------------------------------------------------------------


def test_as_of_reads_through_merge_replace_and_delete(client):
    post(client, [{"_id": "T", "a": 1}], "t-1")
    s1 = obj(client, "T")
    post(client, [{"_id": "T", "b": 2}], "t-2")
    s2 = obj(client, "T")
    post(client, [{"_id": "T", "c": 3}], "t-3", query="?_replace=true")
    s3 = obj(client, "T")
    assert (s1["_version"], s2["_version"], s3["_version"]) == (1, 2, 3)

    assert obj(client, "T", f"?_asof={at(s1['_timestamp'])}") == s1
    assert obj(client, "T", f"?_asof={at(s2['_timestamp'], -1)}") == s1
    assert obj(client, "T", f"?_asof={at(s2['_timestamp'])}") == s2
    assert obj(client, "T", f"?_asof={at(s3['_timestamp'], -1)}") == s2
    assert obj(client, "T", f"?_asof={at(s3['_timestamp'])}") == s3
    assert obj(client, "T", "?_asof=2999-01-01") == s3
    assert_error(client.get(f"/api/object/v1/private/T?_asof={at(s1['_timestamp'], -1)}", headers=auth()), 404)

    # DELETE: back to the previous version, exactly as it was served
    response = delete(client, "T", "?_reason=bad%20replace")
    assert response.status_code == 204 and response.get_data() == b""
    assert obj(client, "T") == s2
    deleted_at = get(client, "/api/batch/v1?service=object")[0]
    assert deleted_at["reason"] == "bad replace" and deleted_at["counts"]["objects"] == {**EMPTY, "updated": 1}
    assert obj(client, "T", f"?_asof={at(deleted_at['timestamp'], -1)}") == s3  # the store served s3 until then
    assert obj(client, "T", f"?_asof={at(deleted_at['timestamp'])}") == s2
    assert [v["_version"] for v in get(client, "/api/object/v1/private/T/*")] == [2, 1]

    assert delete(client, "T").status_code == 204
    assert obj(client, "T") == s1
    assert delete(client, "T").status_code == 204  # only one version: removed
    assert_error(client.get("/api/object/v1/private/T", headers=auth()), 404)
    assert_error(client.get("/api/object/v1/private/T/*", headers=auth()), 404)
    assert_error(client.get("/api/object/v1/private/T?_asof=2999-01-01", headers=auth()), 404)
    assert obj(client, "T", f"?_asof={at(s1['_timestamp'])}") == s1  # what was, still is known
    assert obj(client, "T", f"?_asof={at(s3['_timestamp'])}") == s3
    deletes = get(client, "/api/batch/v1?service=object")
    assert len(deletes) == 3 and deletes[0]["reason"] == "Delete object T"
    assert deletes[0]["counts"]["objects"] == {**EMPTY, "removed": 1} and deletes[0]["status"] == "success"
    assert_error(delete(client, "T"), 404)

    # a new object under the id starts again at version 1
    post(client, [{"_id": "T", "again": True}])
    assert obj(client, "T")["_version"] == 1 and [v["_version"] for v in get(client, "/api/object/v1/private/T/*")] == [
        1
    ]


def test_deleting_an_object_with_one_version_removes_its_data(client, db_url):
    series = {
        "_type": "VarTimeSeries",
        "data": [{"time": "2024-01-01", "value": 1}, {"time": "2024-01-02", "value": 2}],
    }
    post(client, [{"_id": "D", "P": series, "E": [{"_type": "VarEvent", "_id": "e", "eventtime": "2024-01-01"}]}])
    assert get(client, "/api/data/v1/private/D:P")["data"][1]["value"] == 2
    assert delete(client, "D").status_code == 204
    assert_error(client.get("/api/data/v1/private/D:P", headers=auth()), 404)
    for table in (SERIES_POINTS, "events"):
        assert db_rows(db_url, f"SELECT count(*) FROM {table} WHERE object_id = 'D'") == [(0,)]


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_of_a_batch_mixing_created_merged_and_replaced_objects_restores_the_earlier_reads(client, db_url):
    post(client, [{"_id": "M", "a": 1, "_type": "Widget"}, {"_id": "R", "a": 1}, {"_id": "K", "k": 1}], "base")
    post(client, [{"_id": "M", "m": 1}], "base-2")
    before = everything(client)
    bad = post(
        client,
        [
            {"_id": "M", "a": 99, "extra": True},
            {"_id": "R", "_replace": True, "z": 1},
            {"_id": "K", "k": 1},  # unchanged: not part of the batch's changes
            {"_id": "NEW", "n": 1, "P": {"_type": "VarTimeSeries", "data": [{"time": "2024-01-01", "value": 1}]}},
            {"_id": "NEW2", "n": 2},
        ],
        "bad-load",
    )
    assert bad["counts"]["objects"] == {**EMPTY, "created": 2, "updated": 2, "unchanged": 1}
    assert everything(client) != before

    response = rollback(client, "bad-load", "?_reason=wrong%20file")
    assert response.status_code == 201, response.get_data(as_text=True)
    undo = response.get_json()
    assert response.headers["Location"] == f"/api/batch/v1/{undo['_id']}"
    assert undo["service"] == "rollback" and undo["rollbackOf"] == "bad-load" and undo["reason"] == "wrong file"
    assert undo["status"] == "success" and undo["summary"]["failures"] == {}
    assert undo["counts"]["objects"] == {**EMPTY, "updated": 2, "removed": 2}
    assert get(client, f"/api/batch/v1/{undo['_id']}") == undo
    assert get(client, "/api/batch/v1/bad-load")["rolledBackBy"] == undo["_id"]

    assert everything(client) == before  # the list and every object, server fields included
    assert_error(client.get("/api/data/v1/private/NEW:P", headers=auth()), 404)
    assert db_rows(db_url, f"SELECT count(*) FROM {SERIES_POINTS} WHERE object_id = 'NEW'") == [(0,)]
    assert_error(rollback(client, "bad-load"), 409)  # already rolled back
    assert get(client, "/api/batch/v1?service=rollback", headers=auth()) == [undo]
    default = rollback(client, "base-2").get_json()
    assert default["reason"] == "Rollback of batch base-2" and obj(client, "M")["_version"] == 1


def test_a_later_change_is_a_409_and_force_rolls_back_the_rest(client):
    post(client, [{"_id": "A", "v": 1}, {"_id": "B", "v": 1}, {"_id": "C", "v": 1}], "first")
    post(client, [{"_id": "A", "v": 2}], "second")
    post(client, [{"_id": "A", "v": 3}, {"_id": "B", "v": 1}], "third")  # B unchanged: not a change
    before = everything(client)

    body = assert_error(rollback(client, "first"), 409)
    assert body["errors"] == {
        "items": {"A": {"kind": "objects", "reason": "changed since", "batches": ["second", "third"]}},
        "count": 1,
    }
    assert "nothing was rolled back" in body["message"]
    assert everything(client) == before
    assert "rolledBackBy" not in get(client, "/api/batch/v1/first")
    assert get(client, "/api/batch/v1?service=rollback") == []

    forced = rollback(client, "first", "?_force=true")
    assert forced.status_code == 201 and forced.headers["x-odsl-failures"] == "1"
    summary = forced.get_json()
    assert summary["status"] == "warning" and summary["summary"]["failures"] == {
        "A": "changed since by batch second, third"
    }
    assert summary["counts"]["objects"] == {**EMPTY, "removed": 2}
    assert obj(client, "A")["v"] == 3
    assert_error(client.get("/api/object/v1/private/B", headers=auth()), 404)
    assert_error(client.get("/api/object/v1/private/C", headers=auth()), 404)
    assert get(client, "/api/batch/v1/first")["rolledBackBy"] == summary["_id"]

    # a batch whose every change was overtaken: 409, and forced a failed rollback (422) that marks nothing
    post(client, [{"_id": "A", "v": 4}], "fourth")
    assert_error(rollback(client, "third"), 409)
    nothing = rollback(client, "third", "?_force=1")
    assert nothing.status_code == 422 and nothing.get_json()["status"] == "failed"
    assert nothing.headers["x-odsl-error"].startswith("[422] ")
    assert "rolledBackBy" not in get(client, "/api/batch/v1/third") and obj(client, "A")["v"] == 4


def test_conflicts_list_at_most_100_items(client):
    post(client, [{"_id": f"O{i:03d}", "v": 0} for i in range(150)], "wide")
    post(client, [{"_id": f"O{i:03d}", "v": 1} for i in range(150)], "over")
    body = assert_error(rollback(client, "wide"), 409)
    assert body["errors"]["count"] == 150 and len(body["errors"]["items"]) == 100
    assert body["errors"]["items"]["O000"] == {"kind": "objects", "reason": "changed since", "batches": ["over"]}


def test_a_rollback_of_a_rollback_reapplies_the_batch(client):
    post(client, [{"_id": "A", "v": 1}, {"_id": "B", "v": 1}], "one")
    before = everything(client)
    post(client, [{"_id": "A", "v": 2}, {"_id": "B", "_replace": True, "w": 2}, {"_id": "C", "v": 2}], "two")
    after = everything(client)
    undo = rollback(client, "two").get_json()
    assert everything(client) == before
    redo = rollback(client, undo["_id"])
    assert redo.status_code == 201, redo.get_data(as_text=True)
    assert redo.get_json()["rollbackOf"] == undo["_id"]
    assert redo.get_json()["counts"]["objects"] == {**EMPTY, "created": 1, "updated": 2}
    assert everything(client) == after  # batch "two" is in effect again, exactly as it was served
    assert get(client, f"/api/batch/v1/{undo['_id']}")["rolledBackBy"] == redo.get_json()["_id"]
    assert rollback(client, redo.get_json()["_id"]).status_code == 201
    assert everything(client) == before
    # every state the store served is still readable as of its time
    assert [v["_version"] for v in get(client, "/api/object/v1/private/A/*")] == [1]
    assert obj(client, "A", f"?_asof={at(after[1]['A']['_timestamp'])}")["v"] == 2


def test_rollback_rights_and_bad_input_change_nothing(client, db_url):
    post(client, [{"_id": "W", "v": 1}], "writer-batch", headers=auth(roles=WRITER))
    post(client, [{"_id": "#PUB", "v": 1}], "admin-batch")
    post(client, [{"_id": "W", "v": 2}], "admin-change")
    failed = post(client, [{"_id": ""}], "failed-batch", status=422)
    assert failed["status"] == "failed"
    state = (everything(client), history_rows(db_url), get(client, "/api/batch/v1"))

    for method, path in (
        ("post", "/api/batch/v1/admin-change/rollback"),
        ("delete", "/api/object/v1/private/W"),
        ("get", "/api/object/v1/private/W/*"),
        ("get", "/api/object/v1/private/W/1"),
        ("get", "/api/object/v1/private/W?_asof=2024-01-01"),
    ):
        assert_error(getattr(client, method)(path), 401)
        assert_error(getattr(client, method)(path, headers={"Authorization": "Bearer nonsense"}), 401)
    nobody = auth(roles=())  # a valid token without batch.read
    for path in ("/api/object/v1/private/W/*", "/api/object/v1/private/W/1", "/api/object/v1/private/W?_asof=2024"):
        assert_error(client.get(path, headers=nobody), 403)
    assert_error(rollback(client, "admin-change", headers=auth(roles=READER)), 403)
    assert_error(delete(client, "W", headers=auth(roles=READER)), 403)
    other_writer = auth(user="someone@example.com", roles=WRITER)
    assert_error(rollback(client, "admin-change", headers=other_writer), 403)  # not theirs
    assert_error(rollback(client, "writer-batch", headers=other_writer), 403)
    assert_error(delete(client, "#PUB", headers=auth(roles=WRITER), source="public"), 403)
    assert_error(rollback(client, "no-such-batch"), 404)
    assert_error(rollback(client, "bad id!"), 404)
    assert_error(rollback(client, "admin-change", headers=auth(tenant="tenant-b")), 404)
    assert_error(rollback(client, "admin-change", headers=auth(environment="staging")), 404)
    assert_error(delete(client, "W", headers=auth(tenant="tenant-b")), 404)
    assert_error(delete(client, "NOPE"), 404)
    assert_error(delete(client, "W", source="public"), 404)
    assert_error(delete(client, "W", source="elsewhere"), 400)
    assert_error(rollback(client, "failed-batch"), 409)
    assert_error(rollback(client, "admin-change", "?_force=maybe"), 400)
    assert_error(rollback(client, "admin-change", "?_reason=" + "x" * 300), 400)
    assert_error(delete(client, "W", "?_reason=" + "x" * 300), 400)
    for query in (
        "?_version=0",
        "?_version=abc",
        "?_version=-1",
        "?_asof=yesterday",
        "?_asof=2024-13-01",
        "?_asof=2024-01-01&_version=1",
        "?_asof=1&_asof=2",
    ):
        assert_error(client.get(f"/api/object/v1/private/W{query}", headers=auth()), 400)
    assert_error(client.get("/api/object/v1/private/W/*?_limit=0", headers=auth()), 400)
    assert_error(client.get("/api/object/v1/private/W?_version=3", headers=auth()), 404)
    assert_error(client.get("/api/object/v1/private/W/1", headers=auth(tenant="tenant-b")), 404)
    assert (everything(client), history_rows(db_url), get(client, "/api/batch/v1")) == state

    # the writer who submitted a batch may undo it, once nothing later is in the way
    assert rollback(client, "admin-change").status_code == 201
    assert rollback(client, "writer-batch", headers=auth(roles=WRITER)).status_code == 201
    assert_error(client.get("/api/object/v1/private/W", headers=auth()), 404)


def rollbacks_at_once(url: str, batch_id: str, headers: dict, count: int = 4) -> tuple[list, dict]:
    """`count` rollbacks of one batch sent at the same moment to a live server: (the responses,
    the summary of the one that applied). Exactly one applies; the others answer 409."""
    start = threading.Barrier(count)

    def run(_):
        start.wait(timeout=30)
        return requests.post(f"{url}/api/batch/v1/{batch_id}/rollback", headers=headers, timeout=60)

    with ThreadPoolExecutor(count) as pool:
        responses = list(pool.map(run, range(count)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * (count - 1), [r.text for r in responses]
    (applied,) = [r.json() for r in responses if r.status_code == 201]
    return responses, applied


def test_two_concurrent_rollbacks_of_one_batch_apply_once(db_url):
    tenant = "tenant-rollbacks"
    headers = {**auth(tenant=tenant), "Content-Type": "application/json"}
    server = start_live_server(db_url, workers=2)
    try:
        url = server.url
        seed = [{"_id": f"S{i:03d}", "v": 0} for i in range(200)]
        change = [{"_id": f"S{i:03d}", "v": 1} for i in range(0, 200, 2)] + [{"_id": f"N{i:03d}"} for i in range(100)]
        for batch_id, elements in (("seed", seed), ("change", change)):
            body = orjson.dumps({"_id": batch_id, "elements": elements})
            assert requests.post(url + "/api/batch/v1", data=body, headers=headers, timeout=60).status_code == 201
        archived = db_rows(db_url, "SELECT count(*) FROM object_versions WHERE tenant = %s", (tenant,))[0][0]
        responses, applied = rollbacks_at_once(url, "change", headers)
        for refused in (r for r in responses if r.status_code == 409):
            assert refused.json()["message"] == f"batch 'change' was already rolled back by batch '{applied['_id']}'"
        assert applied["counts"]["objects"] == {**EMPTY, "updated": 100, "removed": 100}
        listed = requests.get(url + "/api/object/v1/private", params={"_limit": 1000}, headers=headers, timeout=30)
        assert listed.headers["x-total-count"] == "200"
        assert {(o["_id"], o["v"], o["_version"], o["_batch"]) for o in listed.json()} == {
            (f"S{i:03d}", 0, 1, "seed") for i in range(200)
        }
        # applied once: 100 restored states archived their successors, 100 removed objects archived once
        assert db_rows(db_url, "SELECT count(*) FROM object_versions WHERE tenant = %s", (tenant,))[0][0] == (
            archived + 200
        )
        rollbacks = requests.get(url + "/api/batch/v1", params={"service": "rollback"}, headers=headers, timeout=30)
        assert rollbacks.headers["x-total-count"] == "1"
    finally:
        server.stop()
        for table in ("objects", "object_versions", "batch_changes", "batch_summaries"):
            db_rows(db_url, f"DELETE FROM {table} WHERE tenant = %s", (tenant,))


# --- retention -----------------------------------------------------------------------------------


def prune(app, before: str):
    return app.test_cli_runner().invoke(args=["history", "prune", "--before", before])


def test_prune_drops_old_versions_and_as_of_reads_before_it_answer_410(app, client, db_url):
    post(client, [{"_id": "Y", "kept": True}], "p-0")  # never changed: its current state covers all time
    post(client, [{"_id": "P", "v": 1}], "p-1")
    s1 = obj(client, "P")
    post(client, [{"_id": "P", "v": 2}], "p-2")
    s2 = obj(client, "P")
    post(client, [{"_id": "P", "v": 3}], "p-3")
    s3 = obj(client, "P")
    assert obj(client, "P/1") == s1

    result = prune(app, s3["_timestamp"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"versions": 1, "dataVersions": 0, "seriesVersions": 0, "changeLogs": 3}
    assert obj(client, "P") == s3  # current state never touched
    assert obj(client, "P/2") == s2  # superseded at the prune date: kept
    assert_error(client.get("/api/object/v1/private/P/1", headers=auth()), 410)
    assert [v["_version"] for v in get(client, "/api/object/v1/private/P/*")] == [3, 2]
    assert_error(client.get(f"/api/object/v1/private/P?_asof={at(s1['_timestamp'])}", headers=auth()), 410)
    assert obj(client, "P", f"?_asof={at(s2['_timestamp'])}") == s2
    assert obj(client, "Y", f"?_asof={at(s1['_timestamp'])}")["kept"] is True
    assert_error(client.get(f"/api/object/v1/private/NEVER?_asof={at(s1['_timestamp'])}", headers=auth()), 410)
    assert_error(client.get("/api/object/v1/private/NEVER?_asof=2999-01-01", headers=auth()), 404)
    assert_error(rollback(client, "p-1"), 410)  # its change log is gone
    assert rollback(client, "p-3").status_code == 201  # newer than the prune date
    assert obj(client, "P") == s2
    assert delete(client, "P").status_code == 409  # version 1 was pruned: nowhere to go back to
    assert obj(client, "P") == s2

    bad = prune(app, "not-a-date")
    assert bad.exit_code != 0 and "--before must be an ISO-8601" in bad.output
    assert prune(app, "2000-01-01").exit_code == 0  # an earlier date moves no watermark back
    assert_error(client.get(f"/api/object/v1/private/P?_asof={at(s1['_timestamp'])}", headers=auth()), 410)


@pytest.mark.parametrize("path", ["/api/batch/v1/x/rollback", "/api/object/v1/private/x/*"])
def test_history_routes_are_documented(app, path):
    spec = app.test_client().get("/api/batch/openapi.json").get_json()
    documented = {
        "/api/batch/v1/x/rollback": ("/api/batch/v1/{batch_id}/rollback", "post"),
        "/api/object/v1/private/x/*": ("/api/object/v1/{source}/{object_id}", "get"),
    }[path]
    operation = spec["paths"][documented[0]][documented[1]]
    assert "410" in operation["responses"] and "401" in operation["responses"]
