"""Hostile request bodies and parameters: a 4xx that names the problem, nothing written, service healthy."""

from __future__ import annotations

import gzip
import socket
import time
from urllib.parse import quote

import orjson
import pytest
import requests
from conftest import SECRET, assert_error, auth, db_rows, start_live_server

from batchsvc import create_app

TENANT = "tenant-a"


def counts(db_url: str, tenant: str = TENANT) -> tuple[int, int]:
    """(objects, batch summaries) of a tenant, read directly from the database."""
    return db_rows(
        db_url,
        "SELECT (SELECT count(*) FROM objects WHERE tenant = %(t)s), (SELECT count(*) FROM batch_summaries WHERE tenant = %(t)s)",
        {"t": tenant},
    )[0]


def post(client, body, *, path="/api/batch/v1", headers=None, query=""):
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path + query, data=raw, headers={**auth(), **(headers or {})})


@pytest.fixture
def unchanged(client, db_url):
    """Asserts after the test that nothing was written and /healthz still answers."""
    before = counts(db_url)
    yield
    assert counts(db_url) == before
    assert client.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def small_app(db_url):
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, "max_body_bytes": 1000, "max_elements": 5})
    yield app
    app.extensions["batchsvc"].database.dispose()


def deep(levels: int) -> bytes:
    return b'{"elements":[{"_id":"deep","v":' + b"[" * levels + b"]" * levels + b"}]}"


# (raw body, extra headers, status, fragments the message must contain)
BAD_ENVELOPES = {
    "malformed JSON": (b'{"elements": [{"_id": "a"', {}, 400, ["not valid JSON"]),
    "empty body": (b"", {}, 400, ["not valid JSON"]),
    "truncated gzip": (gzip.compress(b'{"elements":[{"_id":"a"}]}')[:-12], {"Content-Encoding": "gzip"}, 400, ["gzip"]),
    "not gzip at all": (b'{"elements":[{"_id":"a"}]}', {"Content-Encoding": "gzip"}, 400, ["gzip"]),
    "unknown encoding": (b'{"elements":[{"_id":"a"}]}', {"Content-Encoding": "br"}, 400, ["Content-Encoding"]),
    "scalar body": (b"42", {}, 400, ["VarBatch"]),
    "elements not a list": (b'{"elements": {"_id": "a"}}', {}, 400, ["elements", "must be an array"]),
    "elements missing": (b'{"name": "x"}', {}, 400, ["elements", "missing"]),
    "elements empty": (b'{"elements": []}', {}, 400, ["elements", "at least one"]),
    "wrong _type": (b'{"_type": "VarThing", "elements": [{"_id": "a"}]}', {}, 400, ["_type"]),
    "batch _id of 1000 chars": (
        orjson.dumps({"_id": "b" * 1000, "elements": [{"_id": "a"}]}),
        {},
        400,
        ["_id", "1-128 characters"],
    ),
    "batch _id with SQL": (
        orjson.dumps({"_id": "x'; DROP TABLE objects;--", "elements": [{"_id": "a"}]}),
        {},
        400,
        ["_id"],
    ),
    "name of 300 chars": (orjson.dumps({"name": "n" * 300, "elements": [{"_id": "a"}]}), {}, 400, ["name", "256"]),
    "invalid UTF-8": (b'{"elements":[{"_id":"\xff"}]}', {}, 400, ["not valid JSON", "UTF-8"]),
    "NUL in a value": (b'{"elements":[{"_id":"ok"},{"_id":"nul","v":"a\\u0000b"}]}', {}, 400, ["\\u0000", "#1", "nul"]),
    "NUL in a key": (b'{"elements":[{"_id":"nulkey","a\\u0000b":1}]}', {}, 400, ["\\u0000", "#0", "nulkey"]),
    "NUL in an element _id": (b'{"elements":[{"_id":"a\\u0000"}]}', {}, 400, ["\\u0000", "#0"]),
    "lone surrogate": (b'{"elements":[{"_id":"ok"},{"_id":"sur","v":"\\ud800"}]}', {}, 400, ["surrogate", "#1", "sur"]),
    "lone low surrogate": (b'{"elements":[{"_id":"sur","v":"x\\udc00y"}]}', {}, 400, ["surrogate", "#0"]),
    "NaN": (b'{"elements":[{"_id":"nan","v":NaN}]}', {}, 400, ["NaN", "#0", "nan"]),
    "Infinity": (b'{"elements":[{"_id":"a"},{"_id":"inf","v":-Infinity}]}', {}, 400, ["Infinity", "#1", "inf"]),
    "1e999": (b'{"elements":[{"_id":"big","v":1e999}]}', {}, 400, ["double range", "#0", "big"]),
    "huge integer": (b'{"elements":[{"_id":"big","v":1' + b"0" * 400 + b"}]}", {}, 400, ["double range", "#0"]),
    "nesting 10,000 levels": (deep(10_000), {}, 400, ["nesting deeper than 64"]),
    "nesting 100 levels": (deep(100), {}, 400, ["nesting deeper than 64", "#0"]),
    "100,000 keys": (
        orjson.dumps({"elements": [{"_id": "ok"}, {"_id": "wide", **{f"k{i}": i for i in range(100_000)}}]}),
        {},
        400,
        ["100001 keys", "#1"],
    ),
    "\\u0000 900 levels deep": (
        b'{"elements":[{"_id":"deepnul","v":' + b"[" * 900 + b'"a\\u0000"' + b"]" * 900 + b"}]}",
        {},
        400,
        ["\\u0000", "#0", "deepnul"],
    ),
    "bad environment": (
        b'{"elements":[{"_id":"a"}]}',
        {"x-odsl-environment": "prod'; --"},
        400,
        ["x-odsl-environment"],
    ),
    "environment too long": (
        b'{"elements":[{"_id":"a"}]}',
        {"x-odsl-environment": "e" * 65},
        400,
        ["x-odsl-environment"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_ENVELOPES), ids=list(BAD_ENVELOPES))
def test_bad_envelope_is_refused_and_writes_nothing(client, unchanged, case):
    raw, headers, status, fragments = BAD_ENVELOPES[case]
    assert_error(post(client, raw, headers=headers), status, *fragments)


def test_bad_flags_are_refused(client, unchanged):
    assert_error(post(client, [{"_id": "a"}], query="?_atomic=maybe"), 400, "_atomic")
    assert_error(post(client, [{"_id": "a"}], query="?_reason=" + "r" * 300), 400, "_reason")


# Element-level problems: per SPEC §3.5 they are element failures, so the batch is
# stored as a `failed` summary (422 + summary, §3.7) and no object is written.
BAD_ELEMENTS = {
    "numbers": ([1, 2, 3], {"#0": "not a JSON object", "#1": "not a JSON object", "#2": "not a JSON object"}),
    "a string": (["abc"], {"#0": "not a JSON object"}),
    "null": ([None], {"#0": "not a JSON object"}),
    "nested array": ([[{"_id": "a"}]], {"#0": "not a JSON object"}),
    "missing _id": ([{"v": 1}], {"#0": "_id"}),
    "empty _id": ([{"_id": ""}], {"#0": "_id"}),
    "numeric _id": ([{"_id": 42}], {"#0": "_id"}),
    "object _id": ([{"_id": {"$ne": 1}}], {"#0": "_id"}),
    "1,000-char _id": ([{"_id": "i" * 1000}], {"#0": "1000 characters"}),
    "Var _type": ([{"_id": "x", "_type": "VarBatch"}], {"x": "not an object type"}),
}


@pytest.mark.parametrize("case", list(BAD_ELEMENTS), ids=list(BAD_ELEMENTS))
def test_bad_elements_fail_the_batch_and_write_no_object(client, db_url, case):
    elements, expected = BAD_ELEMENTS[case]
    objects_before, summaries_before = counts(db_url)
    response = post(client, {"_id": "bad-elements", "elements": elements})
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    summary = response.get_json()
    assert summary["status"] == "failed"
    assert summary["size"] == len(elements)
    failures = summary["summary"]["failures"]
    assert set(failures) == set(expected)
    for label, fragment in expected.items():
        assert fragment in failures[label] and (not label.startswith("#") or label in failures[label])
    # No object; the failed summary is stored (and does not hold its _id, §3.8).
    assert counts(db_url) == (objects_before, summaries_before + 1)
    assert client.get("/api/batch/v1/bad-elements", headers=auth()).get_json()["status"] == "failed"
    assert client.get("/healthz").status_code == 200


def test_atomic_batch_with_one_bad_element_writes_nothing(client, db_url):
    before = counts(db_url)
    response = post(client, [{"_id": "good"}, "oops", {"_id": "also-good"}], query="?_atomic=true")
    assert response.status_code == 422
    assert response.get_json()["summary"]["failures"] == {"#1": "element #1 is not a JSON object"}
    assert counts(db_url)[0] == before[0]


def test_body_over_the_limit_is_413(small_app, client, db_url):
    client = small_app.test_client()  # the `client` fixture above still truncates afterwards
    before = counts(db_url)
    big = orjson.dumps([{"_id": "a", "pad": "x" * 2000}])
    assert_error(post(client, big), 413, "over the limit of 1000 bytes")
    # The same body gzipped is small on the wire but over the limit decoded.
    assert_error(post(client, gzip.compress(big), headers={"Content-Encoding": "gzip"}), 413, "1000 bytes")
    # A gzip bomb: 153 bytes that would expand to 100 KB.
    bomb = gzip.compress(b"[" + b" " * 100_000 + b"]", compresslevel=9)
    assert len(bomb) < 1000
    assert_error(post(client, bomb, headers={"Content-Encoding": "gzip"}), 413, "1000 bytes")
    assert counts(db_url) == before
    assert client.get("/healthz").status_code == 200


def test_gzip_bomb_against_the_default_limit_is_413(client, app, unchanged):
    limit = app.extensions["batchsvc"].settings.max_body_bytes
    bomb = gzip.compress(b"[" + b"0," * (limit // 2 + 1024) + b"0]", compresslevel=9)
    assert len(bomb) < 1_000_000
    started = time.monotonic()
    assert_error(post(client, bomb, headers={"Content-Encoding": "gzip"}), 413, "over the limit")
    assert time.monotonic() - started < 10


def test_too_many_elements_is_413(small_app, client, db_url):
    client = small_app.test_client()  # the `client` fixture above still truncates afterwards
    before = counts(db_url)
    assert_error(post(client, [{"_id": str(i)} for i in range(6)]), 413, "6 elements", "at most 5")
    assert counts(db_url) == before
    assert post(client, [{"_id": str(i)} for i in range(5)]).status_code == 201


def test_sql_metacharacters_are_data(client, db_url):
    hostile = ["o'; DROP TABLE objects; --", 'q"uote', "back\\slash", "per%cent_under", "semi;colon", "#'pub'"]
    response = post(client, [{"_id": ident, "name": ident} for ident in hostile])
    assert response.status_code == 201, response.get_json()
    assert db_rows(db_url, "SELECT count(*) FROM objects WHERE tenant = %s", (TENANT,))[0][0] == len(hostile)
    for ident in hostile:
        got = client.get(f"/api/object/v1/all/{quote(ident, safe='')}", headers=auth())
        assert got.status_code == 200 and got.get_json()["_id"] == ident
    # Filters are bound values: a tautology matches nothing, a literal matches itself.
    lists = client.get("/api/object/v1/all", query_string={"name": "' OR '1'='1"}, headers=auth())
    assert lists.status_code == 200 and lists.get_json() == [] and lists.headers["x-total-count"] == "0"
    lists = client.get("/api/object/v1/all", query_string={"name": hostile[0]}, headers=auth())
    assert [o["_id"] for o in lists.get_json()] == [hostile[0]]
    # LIKE wildcards in _search are escaped.
    lists = client.get("/api/object/v1/all", query_string={"_search": "%"}, headers=auth())
    assert [o["_id"] for o in lists.get_json()] == ["per%cent_under"]
    lists = client.get(
        "/api/batch/v1", query_string={"name": "x' OR 1=1 --", "status": "in(success,' OR 1=1)"}, headers=auth()
    )
    assert lists.status_code == 200 and lists.get_json() == []
    bad_queries = [
        ("/api/object/v1/all", {"_sort": "name; DROP TABLE objects"}, "_sort"),
        ("/api/object/v1/all", {"_sort": '{"name\\" DESC; --": 1}'}, "cannot sort"),
        ("/api/object/v1/all", {"_sort": "-_id,(SELECT 1)"}, "_sort"),
        ("/api/object/v1/all", {"na'me": "x"}, "invalid filter field"),
        ("/api/object/v1/all", {"_limit": "1; DROP TABLE objects"}, "_limit"),
        ("/api/object/v1/all", {"_skip": "-1"}, "_skip"),
        ("/api/object/v1/all", {"_version": "gt(1 OR 1=1)"}, "whole number"),
        ("/api/batch/v1", {"_sort": "doc->>'x'"}, "_sort"),
        ("/api/batch/v1", {"timestamp": "gt(now())"}, "ISO-8601"),
        ("/api/batch/v1", {"doc": "x"}, "cannot filter"),
        ("/api/batch/v1", {"size": "range(1)"}, "range()"),
    ]
    for path, params, fragment in bad_queries:
        body = assert_error(client.get(path, query_string=params, headers=auth()), 400, fragment)
        assert "SELECT" not in body["message"] or "(SELECT 1)" in body["message"]
    assert db_rows(db_url, "SELECT count(*) FROM objects WHERE tenant = %s", (TENANT,))[0][0] == len(hostile)
    assert client.get("/healthz").status_code == 200


def test_another_tenant_sees_nothing(client):
    response = post(client, {"_id": "tenant-a-batch", "elements": [{"_id": "secret", "v": 1}, {"_id": "#pub", "v": 2}]})
    assert response.status_code == 201
    other = auth(tenant="tenant-b")
    for path in (
        "/api/object/v1/all",
        "/api/object/v1/private",
        "/api/object/v1/public",
        "/api/batch/v1",
        "/api/batch/v1/all",
    ):
        listed = client.get(path, headers=other)
        assert listed.status_code == 200 and listed.get_json() == [] and listed.headers["x-total-count"] == "0", path
    for path in ("/api/object/v1/all/secret", "/api/object/v1/public/%23pub", "/api/batch/v1/tenant-a-batch"):
        assert_error(client.get(path, headers=other), 404, "not found")
    assert_error(client.delete("/api/batch/v1/tenant-a-batch", headers=other), 404, "not found")
    # Same batch id under tenant b is a new batch, not a replay or conflict of tenant a's.
    again = client.post(
        "/api/batch/v1", data=orjson.dumps({"_id": "tenant-a-batch", "elements": [{"_id": "b"}]}), headers=other
    )
    assert again.status_code == 201
    assert client.get("/api/object/v1/all/secret", headers=auth()).get_json()["v"] == 1
    assert client.get("/api/batch/v1/tenant-a-batch", headers=auth()).get_json()["size"] == 2


@pytest.fixture(scope="module")
def small_live_server(db_url):
    server = start_live_server(db_url, workers=1, env={"BATCHSVC_MAX_BODY_BYTES": "1000"})
    yield server
    server.stop()


def _raw_request(port: int, head: bytes, body_chunks=(), timeout: float = 5) -> bytes:
    """Send a request by hand and return the start of the response (status line and headers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return received


def test_live_huge_content_length_is_refused_before_reading(small_live_server):
    token = auth()["Authorization"]
    head = (
        f"POST /api/batch/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {10**12}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    # Only 1 KB of the announced terabyte is ever sent: the answer must come without the rest.
    answer = _raw_request(small_live_server.port, head, [b"[" + b" " * 1023])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"x-odsl-error: [413]" in answer.lower()
    assert time.monotonic() - started < 5
    assert requests.get(small_live_server.url + "/healthz", timeout=5).status_code == 200


def test_live_chunked_body_over_the_limit_is_413(small_live_server):
    def chunks():
        yield b"["
        for _ in range(100):
            yield b'{"_id":"chunked","pad":"' + b"x" * 100 + b'"},'
        yield b'{"_id":"last"}]'

    response = requests.post(small_live_server.url + "/api/batch/v1", data=chunks(), headers=auth(), timeout=10)
    assert response.status_code == 413
    assert response.headers["x-odsl-error"].startswith("[413]")
    assert requests.get(small_live_server.url + "/healthz", timeout=5).status_code == 200


def test_percent_signs_in_tenant_and_user_are_data(client, db_url):
    """'%' in bound values once broke execute_values' statement (500); they are plain data."""
    for claims in ({"user": "a%b@example.com"}, {"tenant": "t%s"}, {"user": "x%(tenant)s", "tenant": "t%%"}):
        body = [{"_id": "pct%id", "_replace": True, "v": 1}, {"_id": "pct%other", "v": 2}]
        response = post(client, body, headers=auth(**claims))
        assert response.status_code == 201, (claims, response.get_data(as_text=True)[:300])
        assert response.get_json()["user"] == claims.get("user", "loader@example.com")
        tenant = claims.get("tenant", TENANT)
        stored = db_rows(db_url, "SELECT id, version FROM objects WHERE tenant = %s ORDER BY id", (tenant,))
        assert stored == [("pct%id", 1), ("pct%other", 1)]
        db_rows(db_url, "DELETE FROM objects WHERE tenant = %s", (tenant,))
