"""Submitting batches over HTTP: the OpenDataDSL examples, merge rules, failures, idempotency."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from conftest import SECRET, assert_error, auth, truncate

from batchsvc import create_app
from batchsvc.store.transaction import TransactionCursor

DOC_BATCH_ID = "00006d91-0fa0-481a-8118-7d6c1f4dba8f"
DOC_NAME = "AEMO_NEM_POWER_5MIN_PRICE_AND_DEMAND_EVENTS"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SUMMARY_KEYS = {
    "_id",
    "user",
    "environment",
    "timestamp",
    "service",
    "name",
    "reason",
    "loader",
    "correlationId",
    "description",
    "history",
    "source",
    "status",
    "message",
    "size",
    "summary",
    "counts",
}
WRITER = ("batch.write",)


def post(client, body, *, path="/api/batch", headers=None, query=""):
    """POST a raw JSON body exactly as the odsl SDK does: no Content-Type header."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path + query, data=data, headers=headers or auth())


def get_object(client, object_id, source="private", headers=None):
    return client.get(f"/api/object/v1/{source}/{object_id}", headers=headers or auth())


def summary_count(client, headers=None):
    response = client.get("/api/batch/v1", headers=headers or auth())
    assert response.status_code == 200
    return int(response.headers["x-total-count"])


# --- the OpenDataDSL documentation examples, in order -------------------------------------


def test_documentation_examples_in_order(client):
    # GET /api/batch: build information
    info = client.get("/api/batch", headers=auth())
    assert info.status_code == 200
    body = info.get_json()
    assert body["service"] == "batch" and body["release"] == "v1"
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["build"], str) and body["build"]

    # a couple of earlier loads, so that the list examples have something to show
    assert post(client, {"name": DOC_NAME, "elements": [{"_id": "NEM"}]}).status_code == 201
    assert post(client, {"name": "ANOTHER_LOADER", "elements": [{"_id": "OTHER"}]}).status_code == 201

    # GET /api/batch/v1: list summaries
    listed = client.get("/api/batch/v1", headers=auth())
    assert listed.status_code == 200
    assert listed.headers["x-total-count"] == "2"
    assert {s["name"] for s in listed.get_json()} == {DOC_NAME, "ANOTHER_LOADER"}

    # GET /api/batch/v1?name=...: list summaries of one loader
    named = client.get(f"/api/batch/v1?name={DOC_NAME}", headers=auth())
    assert named.status_code == 200
    assert named.headers["x-total-count"] == "1"
    assert [s["name"] for s in named.get_json()] == [DOC_NAME]

    # POST /api/batch with no Content-Type header
    batch = {"_id": DOC_BATCH_ID, "_type": "VarBatch", "elements": [{"_id": "AAA", "example": "property"}]}
    created = post(client, batch)
    assert not created.request.environ.get("CONTENT_TYPE")
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"/api/batch/v1/{DOC_BATCH_ID}")
    assert created.get_json()["_id"] == DOC_BATCH_ID

    # GET /api/batch/v1/{id}: the summary
    fetched = client.get(f"/api/batch/v1/{DOC_BATCH_ID}", headers=auth())
    assert fetched.status_code == 200
    summary = fetched.get_json()
    assert set(summary) == SUMMARY_KEYS
    assert summary["_id"] == DOC_BATCH_ID
    assert summary["user"] == "loader@example.com"
    assert summary["environment"] == "production"
    assert TIMESTAMP.match(summary["timestamp"]), summary["timestamp"]
    for absent in ("service", "name", "loader", "correlationId", "description", "history"):
        assert summary[absent] is None, absent
    assert summary["reason"] == "Update Batch"
    assert summary["source"] == "private"
    assert summary["status"] == "success"
    assert summary["message"] == "Completed Successfully"
    assert summary["size"] == 1
    assert summary["summary"] == {"curves": {}, "series": {}, "matrix": {}, "events": {}, "failures": {}}
    assert len(summary["summary"]) == 5
    assert summary["counts"]["objects"] == {"created": 1, "updated": 0, "unchanged": 0, "removed": 0}
    assert summary == created.get_json()
    # the same summary through the source route, and the object it wrote
    assert client.get(f"/api/batch/v1/private/{DOC_BATCH_ID}", headers=auth()).get_json() == summary
    obj = get_object(client, "AAA").get_json()
    assert obj["example"] == "property" and obj["_batch"] == DOC_BATCH_ID

    # DELETE /api/batch/v1/{id}, then the summary is gone (the object stays)
    deleted = client.delete(f"/api/batch/v1/{DOC_BATCH_ID}", headers=auth())
    assert deleted.status_code == 204
    assert deleted.get_data() == b""
    assert_error(client.get(f"/api/batch/v1/{DOC_BATCH_ID}", headers=auth()), 404)
    assert_error(client.delete(f"/api/batch/v1/{DOC_BATCH_ID}", headers=auth()), 404)
    assert get_object(client, "AAA").status_code == 200


@pytest.mark.parametrize("path", ["/api/batch", "/api/batch/v1", "/api/batch/v1/private"])
def test_every_submit_route_accepts_a_batch(client, path):
    response = post(client, {"elements": [{"_id": "R"}]}, path=path)
    assert response.status_code == 201
    assert client.get(response.headers["Location"], headers=auth()).status_code == 200


def test_content_type_is_ignored(client):
    body = json.dumps({"elements": [{"_id": "CT", "v": 1}]})
    response = client.post("/api/batch", data=body, headers={**auth(), "Content-Type": "text/plain"})
    assert response.status_code == 201
    assert get_object(client, "CT").get_json()["v"] == 1


def test_generated_id_is_a_uuid4(client):
    response = post(client, {"elements": [{"_id": "G"}]})
    assert response.status_code == 201
    batch_id = response.get_json()["_id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", batch_id)
    assert response.headers["Location"].endswith(f"/api/batch/v1/{batch_id}")


def test_bare_array_body_is_the_elements(client):
    response = post(client, [{"_id": "A1", "x": 1}, {"_id": "A2", "x": 2}])
    assert response.status_code == 201
    summary = response.get_json()
    assert summary["size"] == 2 and summary["status"] == "success"
    assert get_object(client, "A2").get_json()["x"] == 2


def test_envelope_fields_are_copied_to_the_summary(client):
    fields = {
        "name": "N",
        "service": "S",
        "loader": "L",
        "correlationId": "C",
        "description": "D",
        "reason": "Nightly",
        "history": True,
    }
    batch = {"_id": "meta.batch:1", "elements": [{"_id": "M"}], **fields}
    summary = post(client, batch).get_json()
    assert {k: summary[k] for k in fields} == fields
    # the query's _reason wins over the body's reason
    overridden = post(client, {**batch, "_id": "meta.batch:2"}, query="?_reason=Backfill").get_json()
    assert overridden["reason"] == "Backfill"
    assert client.get("/api/batch/v1/meta.batch:1", headers=auth()).get_json()["reason"] == "Nightly"
    assert client.get("/api/batch/v1/private/meta.batch%3A2", headers=auth()).get_json()["reason"] == "Backfill"
    assert_error(post(client, {**batch, "_id": "meta.batch:3"}, query="?_reason=" + "r" * 257), 400)
    assert_error(post(client, {**batch, "_id": "meta.batch:4", "history": "yes"}), 400)


def test_gzip_request_body(client):
    body = gzip.compress(json.dumps({"_id": "zipped", "elements": [{"_id": "Z", "packed": True}]}).encode())
    response = client.post("/api/batch", data=body, headers={**auth(), "Content-Encoding": "gzip"})
    assert response.status_code == 201
    assert response.get_json()["_id"] == "zipped"
    assert get_object(client, "Z").get_json()["packed"] is True


def test_bad_gzip_is_400_and_writes_nothing(client):
    response = client.post(
        "/api/batch", data=b"\x1f\x8bnot really gzip", headers={**auth(), "Content-Encoding": "gzip"}
    )
    assert_error(response, 400)
    truncated = gzip.compress(json.dumps({"elements": [{"_id": "T"}]}).encode())[:-6]
    assert_error(client.post("/api/batch", data=truncated, headers={**auth(), "Content-Encoding": "gzip"}), 400)
    assert summary_count(client) == 0


def test_gzip_response_for_a_big_list(client):
    for n in range(8):
        assert (
            post(
                client, {"name": f"gzip-list-{n}", "description": "x" * 100, "elements": [{"_id": f"G{n}"}]}
            ).status_code
            == 201
        )
    plain = client.get("/api/batch/v1", headers=auth())
    assert "Content-Encoding" not in plain.headers
    zipped = client.get("/api/batch/v1", headers={**auth(), "Accept-Encoding": "gzip, deflate"})
    assert zipped.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers.get("Vary", "")
    assert zipped.headers["x-total-count"] == "8"
    raw = zipped.get_data()
    assert len(raw) < len(plain.get_data())
    assert json.loads(gzip.decompress(raw)) == plain.get_json()


# --- merge, replace and server fields -------------------------------------------------------


def test_merge_keeps_stored_keys_and_versions_increment(client):
    assert post(client, [{"_id": "MRG", "a": 1, "b": 1, "nested": {"x": 1}}]).status_code == 201
    first = get_object(client, "MRG").get_json()
    assert first["_version"] == 1
    assert post(client, [{"_id": "MRG", "b": 2, "c": 3, "nested": {"y": 2}}]).status_code == 201
    second = get_object(client, "MRG").get_json()
    assert {k: second[k] for k in ("a", "b", "c", "nested")} == {"a": 1, "b": 2, "c": 3, "nested": {"y": 2}}
    assert second["_version"] == 2
    assert second["_created"] == first["_created"]
    assert second["_timestamp"] >= first["_timestamp"]


def test_element_replace_flag_replaces_and_is_not_stored(client):
    post(client, [{"_id": "REP", "a": 1, "b": 1, "_type": "Widget"}])
    response = post(client, [{"_id": "REP", "_replace": True, "c": 3}])
    assert response.status_code == 201
    obj = get_object(client, "REP").get_json()
    assert "a" not in obj and "b" not in obj and "_replace" not in obj
    assert obj["c"] == 3
    assert obj["_type"] == "#Object"  # the stored type went with the replaced document
    assert obj["_version"] == 2


def test_query_replace_flag_replaces_every_element(client):
    post(client, [{"_id": "Q1", "a": 1}, {"_id": "Q2", "a": 1}])
    assert post(client, [{"_id": "Q1", "b": 2}, {"_id": "Q2", "c": 3}], query="?_replace=true").status_code == 201
    q1, q2 = get_object(client, "Q1").get_json(), get_object(client, "Q2").get_json()
    assert "a" not in q1 and q1["b"] == 2
    assert "a" not in q2 and q2["c"] == 3
    assert_error(post(client, [{"_id": "Q1"}], query="?_replace=maybe"), 400)


def test_one_batch_merges_some_objects_and_replaces_others(client):
    post(client, [{"_id": "MX-R", "a": 1, "_type": "Widget"}, {"_id": "MX-M", "a": 1, "_type": "Widget"}])
    response = post(
        client,
        [
            {"_id": "MX-R", "_replace": True, "b": 2},
            {"_id": "MX-M", "b": 2},
            {"_id": "MX-NEW", "_replace": True, "c": 3},
            {"_id": "MX-NEW2", "d": 4},
        ],
    )
    assert response.status_code == 201 and response.get_json()["status"] == "success"
    replaced, merged = get_object(client, "MX-R").get_json(), get_object(client, "MX-M").get_json()
    assert "a" not in replaced and replaced["b"] == 2 and replaced["_type"] == "#Object" and replaced["_version"] == 2
    assert merged["a"] == 1 and merged["b"] == 2 and merged["_type"] == "Widget" and merged["_version"] == 2
    created, created2 = get_object(client, "MX-NEW").get_json(), get_object(client, "MX-NEW2").get_json()
    assert (created["c"], created["_version"], created2["d"], created2["_version"]) == (3, 1, 4, 1)


def test_same_id_twice_in_one_batch_merges_in_order(client):
    response = post(
        client,
        [
            {"_id": "DUP", "a": 1, "b": 1},
            {"_id": "DUP", "b": 2},
            {"_id": "DUP", "c": 3, "b": 4},
        ],
    )
    assert response.status_code == 201
    assert response.get_json()["status"] == "success"
    obj = get_object(client, "DUP").get_json()
    assert {k: obj[k] for k in ("a", "b", "c")} == {"a": 1, "b": 4, "c": 3}


def test_replace_then_merge_within_one_batch(client):
    post(client, [{"_id": "RM", "old": True}])
    post(client, [{"_id": "RM", "_replace": True, "z": 1}, {"_id": "RM", "y": 2}])
    obj = get_object(client, "RM").get_json()
    assert "old" not in obj and obj["z"] == 1 and obj["y"] == 2
    post(client, [{"_id": "RM", "w": 1}, {"_id": "RM", "_replace": True, "v": 1}])
    obj = get_object(client, "RM").get_json()
    assert "w" not in obj and "z" not in obj and obj["v"] == 1


def test_server_fields_in_input_are_ignored(client):
    forged = {
        "_id": "SRV",
        "v": 1,
        "_type": "Widget",
        "_version": 99,
        "_created": "2000-01-01T00:00:00.000Z",
        "_timestamp": "2000-01-01T00:00:00.000Z",
        "_user": "mallory@example.com",
        "_batch": "forged-batch",
        "_oid": "0123456789",
    }
    response = post(client, {"_id": "real-batch", "elements": [forged]})
    assert response.status_code == 201
    obj = get_object(client, "SRV").get_json()
    assert obj["_version"] == 1
    assert obj["_user"] == "loader@example.com"
    assert obj["_batch"] == "real-batch"
    assert not obj["_created"].startswith("2000") and not obj["_timestamp"].startswith("2000")
    assert TIMESTAMP.match(obj["_created"]) and TIMESTAMP.match(obj["_timestamp"])
    assert "_oid" not in obj
    assert obj["_type"] == "Widget" and obj["v"] == 1
    # forged server fields are no change: the same document again leaves the version as it is
    post(client, [{**forged, "_version": 1000}])
    assert get_object(client, "SRV").get_json()["_version"] == 1
    # a second write that changes it still just increments
    post(client, [{**forged, "_version": 1000, "v": 2}])
    assert get_object(client, "SRV").get_json()["_version"] == 2


# --- element failures, statuses, atomic ----------------------------------------------------


def test_element_failures_are_keyed_by_id_or_index(client):
    response = post(
        client,
        {
            "_id": "with-failures",
            "elements": [
                {"_id": "GOOD", "v": 1},
                42,
                {"no_id": True},
                {"_id": "NESTED", "_type": "VarBatch"},
                {"_id": "", "v": 2},
                {"_id": "L" * 257},
                {"_id": "L" * 256, "longest": True},
            ],
        },
    )
    assert response.status_code == 201
    summary = response.get_json()
    assert summary["status"] == "warning"
    assert summary["size"] == 7
    failures = summary["summary"]["failures"]
    assert set(failures) == {"#1", "#2", "NESTED", "#4", "#5"}
    assert all(isinstance(reason, str) and reason for reason in failures.values())
    assert "5 of 7" in summary["message"]
    assert get_object(client, "L" * 256).get_json()["longest"] is True
    assert get_object(client, "GOOD").status_code == 200
    assert get_object(client, "NESTED").status_code == 404
    assert client.get("/api/batch/v1/with-failures", headers=auth()).get_json() == summary


def test_status_success_warning_failed(client):
    ok = post(client, {"_id": "st-ok", "elements": [{"_id": "S1"}]})
    assert (ok.status_code, ok.get_json()["status"]) == (201, "success")
    warn = post(client, {"_id": "st-warn", "elements": [{"_id": "S2"}, "nope"]})
    assert (warn.status_code, warn.get_json()["status"]) == (201, "warning")
    assert "Location" in warn.headers
    failed = post(client, {"_id": "st-failed", "elements": ["nope", {"x": 1}]})
    assert failed.status_code == 422
    body = failed.get_json()
    assert body["status"] == "failed" and set(body["summary"]["failures"]) == {"#0", "#1"}
    assert "Location" not in failed.headers
    # a failed batch's summary is stored and listed
    assert client.get("/api/batch/v1/st-failed", headers=auth()).get_json()["status"] == "failed"
    assert summary_count(client) == 3


def test_atomic_batch_writes_nothing_on_any_failure(client):
    response = post(client, {"_id": "atomic-1", "elements": [{"_id": "AT1"}, {"_id": "AT2"}, 7]}, query="?_atomic=true")
    assert response.status_code == 422
    summary = response.get_json()
    assert summary["status"] == "failed"
    assert set(summary["summary"]["failures"]) == {"#2"}
    assert get_object(client, "AT1").status_code == 404
    assert get_object(client, "AT2").status_code == 404
    # without failures an atomic batch is written as usual
    assert post(client, [{"_id": "AT1"}], query="?_atomic=true").status_code == 201
    assert get_object(client, "AT1").status_code == 200


def test_failed_batch_id_can_be_retried(client):
    bad = {"_id": "retry-me", "elements": [{"nothing": "here"}]}
    assert post(client, bad).status_code == 422
    # the same failing body runs again rather than replaying
    assert post(client, bad).status_code == 422
    fixed = post(client, {"_id": "retry-me", "elements": [{"_id": "RETRIED"}]})
    assert fixed.status_code == 201
    assert fixed.get_json()["status"] == "success"
    assert client.get("/api/batch/v1/retry-me", headers=auth()).get_json()["status"] == "success"
    assert summary_count(client) == 1


# --- idempotency ----------------------------------------------------------------------------


def test_reposting_the_same_batch_replays_the_summary(client):
    batch = {"_id": "idem-1", "elements": [{"_id": "IDEM", "v": 1}]}
    first = post(client, batch)
    assert first.status_code == 201
    again = post(client, batch)
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert get_object(client, "IDEM").get_json()["_version"] == 1
    assert summary_count(client) == 1


def test_a_new_plain_batch_goes_to_the_database_in_one_message_then_commit(client, monkeypatch):
    messages = []
    flush = TransactionCursor.flush

    def recording_flush(cursor):
        messages.append(b";".join(cursor._queued))
        flush(cursor)

    monkeypatch.setattr(TransactionCursor, "flush", recording_flush)
    assert post(client, {"_id": "one-trip", "elements": [{"_id": "OT", "v": 1}]}).status_code == 201
    sent = [m for m in messages if m]
    assert len(sent) == 1  # flush puts BEGIN in front; COMMIT follows alone
    assert sent[0].startswith(b"EXECUTE batchsvc_lock_batch_id(")
    assert b"EXECUTE batchsvc_upsert_objects(" in sent[0] and b"EXECUTE batchsvc_store_new_summary(" in sent[0]
    messages.clear()
    assert post(client, {"_id": "one-trip", "elements": [{"_id": "OT", "v": 1}]}).status_code == 200
    assert any(b"batchsvc_claim_summary" in m for m in messages)  # the taken id went the careful way


def test_replay_and_conflict_need_no_retry_attempt(db_url):
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, "retry_attempts": 1})
    client = app.test_client()
    try:
        batch = {"_id": "one-attempt", "elements": [{"_id": "OA", "v": 1}]}
        assert post(client, batch).status_code == 201
        assert post(client, batch).status_code == 200
        assert_error(post(client, {**batch, "elements": [{"_id": "OA", "v": 2}]}), 409)
    finally:
        app.extensions["batchsvc"].database.dispose()
        truncate(db_url)


def test_warning_batch_replays_too(client):
    batch = {"_id": "idem-warn", "elements": [{"_id": "IW"}, 1]}
    assert post(client, batch).status_code == 201
    assert post(client, batch).status_code == 200
    assert get_object(client, "IW").get_json()["_version"] == 1


def test_same_id_with_another_body_is_409(client):
    assert post(client, {"_id": "idem-2", "elements": [{"_id": "C1", "v": 1}]}).status_code == 201
    conflict = post(client, {"_id": "idem-2", "elements": [{"_id": "C1", "v": 2}]})
    assert_error(conflict, 409)
    obj = get_object(client, "C1").get_json()
    assert obj["v"] == 1 and obj["_version"] == 1


# --- public objects -------------------------------------------------------------------------


def test_public_ids_need_admin(client):
    writer = auth(roles=WRITER)
    response = post(
        client, {"_id": "pub-writer", "elements": [{"_id": "#PUB", "v": 1}, {"_id": "PRIV"}]}, headers=writer
    )
    assert response.status_code == 201
    summary = response.get_json()
    assert summary["status"] == "warning"
    assert set(summary["summary"]["failures"]) == {"#PUB"}
    assert summary["source"] == "private"
    assert get_object(client, "%23PUB", "public").status_code == 404
    only_public = post(client, [{"_id": "#PUB2"}], headers=writer)
    assert only_public.status_code == 422

    admin = post(client, {"_id": "pub-admin", "elements": [{"_id": "#PUB", "v": 1}]})
    assert admin.status_code == 201
    assert admin.get_json()["source"] == "public"
    assert get_object(client, "%23PUB", "public").get_json()["v"] == 1


# --- invalid envelopes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"this is not json",
        b"",
        b"42",
        b'"a string"',
        b'{"_type": "VarBatch"}',
        b'{"elements": []}',
        b'{"elements": {"_id": "A"}}',
        b'{"_id": "bad id!", "elements": [{"_id": "A"}]}',
        b'{"_id": "' + b"x" * 129 + b'", "elements": [{"_id": "A"}]}',
        b'{"_type": "VarObject", "elements": [{"_id": "A"}]}',
        b'{"name": "' + b"n" * 257 + b'", "elements": [{"_id": "A"}]}',
        b'{"elements": [{"_id": "A", "v": NaN}]}',
        b'{"elements": [{"_id": "A", "v": "\\u0000"}]}',
    ],
    ids=[
        "not-json",
        "empty",
        "number",
        "string",
        "no-elements",
        "empty-elements",
        "elements-object",
        "bad-id",
        "long-id",
        "bad-type",
        "long-name",
        "nan",
        "nul",
    ],
)
def test_invalid_envelope_is_400_and_writes_nothing(client, body):
    assert_error(post(client, body), 400)
    assert summary_count(client) == 0
    assert get_object(client, "A").status_code == 404


def test_limits_are_413(db_url):
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, "max_elements": 2, "max_body_bytes": 2000})
    client = app.test_client()
    try:
        assert_error(post(client, [{"_id": "L1"}, {"_id": "L2"}, {"_id": "L3"}]), 413)
        assert_error(post(client, [{"_id": "L1", "pad": "p" * 3000}]), 413)
        bomb = gzip.compress(json.dumps([{"_id": "L1", "pad": "p" * 100_000}]).encode())
        assert len(bomb) < 2000
        assert_error(client.post("/api/batch", data=bomb, headers={**auth(), "Content-Encoding": "gzip"}), 413)
        assert summary_count(client) == 0
        assert post(client, [{"_id": "L1"}, {"_id": "L2"}]).status_code == 201
    finally:
        app.extensions["batchsvc"].database.dispose()
        truncate(db_url)


# --- errors, probes and docs ----------------------------------------------------------------


def test_unknown_route_is_json_404(client):
    body = assert_error(client.get("/api/nothing/here", headers=auth()), 404)
    assert "<html" not in body["message"].lower()


def test_wrong_method_is_json_405(client):
    response = client.put("/api/batch/v1", data=b"{}", headers=auth())
    assert_error(response, 405)
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert_error(client.patch("/api/batch", headers=auth()), 405)


def test_bad_source_is_400(client):
    assert_error(client.get("/api/batch/v1/nowhere/some-id", headers=auth()), 400)
    assert_error(client.delete("/api/batch/v1/nowhere/some-id", headers=auth()), 400)


def test_probes_and_docs_need_no_token(client):
    health = client.get("/healthz")
    assert (health.status_code, health.get_json()) == (200, {"status": "ok"})
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (200, {"status": "ok"})
    spec = client.get("/api/batch/openapi.json")
    assert spec.status_code == 200
    document = spec.get_json()
    assert document["openapi"].startswith("3.")
    assert "/api/batch/v1" in document["paths"] and "post" in document["paths"]["/api/batch"]
    docs = client.get("/api/batch/docs")
    assert docs.status_code == 200
    assert docs.mimetype == "text/html"
    assert b"swagger" in docs.get_data().lower()


def test_database_outage_is_503():
    app = create_app({"database_url": "postgresql://root@127.0.0.1:1/nowhere", "jwt_secret": SECRET})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert_error(client.get("/readyz"), 503)
    assert_error(client.get("/api/batch/v1", headers=auth()), 503)
    assert_error(post(client, [{"_id": "DOWN"}]), 503)
