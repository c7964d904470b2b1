"""`_filter` (MongoDB-style JSON filters) and `_project` on summary, object and event lists (SPEC §4)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from conftest import ERROR_KEYS, SECRET, auth, db_rows, make_token, sdk_client
from sqlalchemy import event
from sqlalchemy.dialects import postgresql

from batchsvc import create_app
from batchsvc.core.queries import AllOf, AnyOf, Condition, Not, parse_list_query, parse_projection, parse_where, project
from batchsvc.store import reads
from batchsvc.store.lists import where_clause

DROP = "x'; DROP TABLE objects;--"
OBJECTS = [
    {
        "_id": "P1",
        "MID_PRICE": 60,
        "name": "Alpha",
        "grade": "B",
        "loc": {"lat": 51.5, "lon": -0.1},
        "tags": ["x", "y"],
        "flag": True,
        "note": None,
        "code": DROP,
    },
    {"_id": "P2", "MID_PRICE": "70", "name": "beta", "grade": "C", "loc": {"lat": 40.7}, "size": 5},
    {"_id": "P3", "MID_PRICE": 45.5, "name": "Gamma", "grade": "A", "loc": {"lat": -33.9, "lon": 151.2}, "flag": False},
    {"_id": "P4", "MID_PRICE": 50, "name": "ALPHA-2", "grade": 5, "nested": {"a": {"b": {"c": 1}}}},
    {"_id": "P5", "_type": "Price", "other": 1},
]


def get(client, path, headers=None, **params):
    return client.get(
        path + ("?" + "&".join(f"{k}={quote(str(v))}" for k, v in params.items()) if params else ""),
        headers=headers or auth(),
    )


def listing(client, path, where=None, **params):
    if where is not None:
        params["_filter"] = json.dumps(where)
    response = get(client, path, **params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(response.headers["x-total-count"]), response.get_json()


def ids(client, path, where=None, **params) -> list[str]:
    total, items = listing(client, path, where, **params)
    assert total == len(items) or "_limit" in params or "_skip" in params
    return sorted(item["_id"] for item in items)


def assert_bad_request(response, mentions="_filter"):
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == 400 and mentions in body["message"]
    assert response.headers["x-odsl-error"].startswith("[400] ")
    return body["message"]


def post(client, body, headers=None):
    response = client.post("/api/batch", data=json.dumps(body).encode(), headers=headers or auth())
    assert response.status_code in (201, 422), response.get_data(as_text=True)
    time.sleep(0.003)  # distinct millisecond timestamps
    return response.get_json()


@pytest.fixture
def objects(client):
    post(client, {"_id": "objects-1", "elements": OBJECTS})
    post(client, {"_id": "objects-2", "elements": [{"_id": "#PUB", "MID_PRICE": 99, "name": "Public"}]})
    return client


@pytest.fixture
def summaries(client):
    """b1 success (alice), b2 warning (bob, size 2), b3 failed (alice), b4 success (bob); oldest first."""
    alice, bob = auth(user="alice@example.com"), auth(user="bob@example.com")
    loads = [
        ({"_id": "b1", "name": "AEMO_NEM", "service": "loader-x", "elements": [{"_id": "O1"}]}, alice),
        ({"_id": "b2", "name": "ECB_FX", "service": "loader-y", "elements": [{"_id": "O2"}, 5]}, bob),
        ({"_id": "b3", "name": "ICE", "service": "loader-x", "elements": [5]}, alice),
        ({"_id": "b4", "name": "AEMO_PV", "reason": "backfill", "elements": [{"_id": "O4"}]}, bob),
    ]
    return {body["_id"]: post(client, body, headers)["timestamp"] for body, headers in loads}


# --- parsing and SQL, without HTTP ----------------------------------------------------------


def test_filter_parses_into_a_typed_tree():
    assert parse_where("{}") is None
    assert parse_where('{"a":1}') == Condition(("a",), "eq", 1)
    assert parse_where('{"status":"warning","size":{"$gte":100,"$lt":500}}') == AllOf(
        (
            Condition(("status",), "eq", "warning"),
            AllOf((Condition(("size",), "gte", 100), Condition(("size",), "lt", 500))),
        )
    )
    assert parse_where('{"loc.lat":{"$ne":null},"t":{"$nin":[1,"x"]},"e":{"$exists":false}}') == AllOf(
        (
            Not(Condition(("loc", "lat"), "eq", None)),
            Not(Condition(("t",), "in", (1, "x"))),
            Not(Condition(("e",), "exists")),
        )
    )
    assert parse_where('{"$or":[{"a":1},{"$not":{"b":{"$regex":"^x","$options":"i"}}}]}') == AnyOf(
        (Condition(("a",), "eq", 1), Not(Condition(("b",), "regex", "^x", "i")))
    )
    assert parse_where('{"a":{"$not":{"$gt":5}}}') == Not(Condition(("a",), "gt", 5))
    query = parse_list_query({"_filter": ['{"a":1}'], "_project": ["b,c.d"], "name": ["x"]})
    assert query.where == Condition(("a",), "eq", 1) and query.project == (("b",), ("c", "d"))


def test_projection_keeps_nesting_and_drops_what_is_missing():
    doc = {"_id": "X", "a": 1, "b": {"c": 2, "d": 3}, "s": "text", "n": None}
    assert project(doc, parse_projection("a,b.c,s.x,zz,n")) == {"_id": "X", "a": 1, "b": {"c": 2}, "n": None}
    assert project(doc, parse_projection("b.c,b")) == {"_id": "X", "b": {"c": 2, "d": 3}}
    assert project(doc, parse_projection("b.d,b.c")) == {"_id": "X", "b": {"d": 3, "c": 2}}
    assert doc == {"_id": "X", "a": 1, "b": {"c": 2, "d": 3}, "s": "text", "n": None}  # left as it was


def test_filter_sql_binds_every_path_and_value():
    where = parse_where(json.dumps({"a": DROP, "b.c": {"$in": [DROP]}, "d": {"$regex": DROP}}))
    for documents in (reads._OBJECT_DOCUMENTS, reads._SUMMARY_DOCUMENTS, reads._EVENT_DOCUMENTS):
        compiled = where_clause(where, documents).compile(dialect=postgresql.dialect())
        assert "DROP" not in str(compiled) and "'" not in str(compiled)
        assert DROP in json.dumps(compiled.params)
    compiled = where_clause(parse_where('{"status":"x","name":{"$regex":"y"}}'), reads._SUMMARY_DOCUMENTS)
    sql = str(compiled.compile(dialect=postgresql.dialect()))
    assert "batch_summaries.status = " in sql and "batch_summaries.name ~ " in sql  # the columns, not the document


OBJECT_CASES = [
    # $eq, by JSON type
    ({"name": "Alpha"}, ["P1"]),
    ({"MID_PRICE": 60}, ["P1"]),
    ({"MID_PRICE": 50.0}, ["P4"]),
    ({"MID_PRICE": "70"}, ["P2"]),
    ({"MID_PRICE": 70}, []),
    ({"MID_PRICE": {"$eq": 45.5}}, ["P3"]),
    ({"flag": True}, ["P1"]),
    ({"flag": False}, ["P3"]),
    ({"flag": "true"}, []),
    ({"note": None}, ["P1", "P2", "P3", "P4", "P5"]),  # null, or missing
    ({"flag": None}, ["P2", "P4", "P5"]),
    ({"loc": {"lat": 40.7}}, ["P2"]),  # an object compares whole
    ({"loc": {"lat": 51.5}}, []),
    ({"tags": ["x", "y"]}, ["P1"]),
    ({"tags": ["x"]}, []),
    ({"tags": "x"}, []),
    ({"code": DROP}, ["P1"]),  # SQL metacharacters are data
    ({"name": "Alpha' OR '1'='1"}, []),
    # $ne also matches a missing field
    ({"MID_PRICE": {"$ne": 60}}, ["P2", "P3", "P4", "P5"]),
    ({"flag": {"$ne": None}}, ["P1", "P3"]),
    # comparisons: numbers with numbers, strings with strings
    ({"MID_PRICE": {"$gt": 50}}, ["P1"]),
    ({"MID_PRICE": {"$gte": 50}}, ["P1", "P4"]),
    ({"MID_PRICE": {"$lt": 50}}, ["P3"]),
    ({"MID_PRICE": {"$lte": 50}}, ["P3", "P4"]),
    ({"MID_PRICE": {"$gt": 40, "$lt": 55}}, ["P3", "P4"]),
    ({"MID_PRICE": {"$gt": "50"}}, ["P2"]),
    ({"MID_PRICE": {"$gt": 1e308}}, []),
    ({"MID_PRICE": {"$lt": 18446744073709551615}}, ["P1", "P3", "P4"]),
    ({"grade": {"$gt": "A"}}, ["P1", "P2"]),
    ({"grade": {"$gte": 5}}, ["P4"]),
    # $in / $nin
    ({"MID_PRICE": {"$in": [60, "70"]}}, ["P1", "P2"]),
    ({"MID_PRICE": {"$in": [70, "60"]}}, []),
    ({"MID_PRICE": {"$in": [None, 45.5]}}, ["P3", "P5"]),
    ({"loc": {"$in": [{"lat": 40.7}, 1]}}, ["P2"]),
    ({"MID_PRICE": {"$in": []}}, []),
    ({"MID_PRICE": {"$nin": [60, "70"]}}, ["P3", "P4", "P5"]),
    ({"MID_PRICE": {"$nin": []}}, ["P1", "P2", "P3", "P4", "P5"]),
    # $exists (null exists)
    ({"loc.lon": {"$exists": True}}, ["P1", "P3"]),
    ({"loc.lon": {"$exists": False}}, ["P2", "P4", "P5"]),
    ({"note": {"$exists": True}}, ["P1"]),
    # $regex on strings only
    ({"name": {"$regex": "^A"}}, ["P1", "P4"]),
    ({"name": {"$regex": "^alpha"}}, []),
    ({"name": {"$regex": "^alpha", "$options": "i"}}, ["P1", "P4"]),
    ({"name": {"$regex": "^alpha", "$options": ""}}, []),
    ({"MID_PRICE": {"$regex": "^[0-9]+$"}}, ["P2"]),
    ({"code": {"$regex": "DROP TABLE"}}, ["P1"]),
    # dotted paths into nested properties
    ({"loc.lat": {"$gt": 0}}, ["P1", "P2"]),
    ({"loc.lat": -33.9}, ["P3"]),
    ({"nested.a.b.c": 1}, ["P4"]),
    ({"nested.a.b": {"c": 1}}, ["P4"]),
    ({"nested.a.x": {"$exists": True}}, []),
    ({"name.first": {"$exists": True}}, []),
    ({"tags.x": "x"}, []),
    # $and, $or, $not (and $not on a field)
    ({"$or": [{"name": "Alpha"}, {"MID_PRICE": {"$lt": 50}}]}, ["P1", "P3"]),
    ({"$and": [{"MID_PRICE": {"$gte": 50}}, {"MID_PRICE": {"$lte": 60}}]}, ["P1", "P4"]),
    ({"$not": {"MID_PRICE": {"$gt": 50}}}, ["P2", "P3", "P4", "P5"]),
    ({"MID_PRICE": {"$not": {"$gt": 50}}}, ["P2", "P3", "P4", "P5"]),
    ({"name": {"$not": {"$regex": "a", "$options": "i"}}}, ["P5"]),
    ({"$or": [{"$and": [{"flag": True}, {"grade": "B"}]}, {"$not": {"loc": {"$exists": True}}}]}, ["P1", "P4", "P5"]),
    ({"$and": [{"name": {"$regex": "^A"}}], "MID_PRICE": {"$gte": 55}}, ["P1"]),
    ({}, ["P1", "P2", "P3", "P4", "P5"]),
    ({"$and": [{}]}, ["P1", "P2", "P3", "P4", "P5"]),
    ({"$not": {}}, []),
    # server fields, on their columns
    ({"_id": "P1"}, ["P1"]),
    ({"_id": {"$in": ["P1", "P3", "NOPE"]}}, ["P1", "P3"]),
    ({"_id": {"$regex": "^P[12]$"}}, ["P1", "P2"]),
    ({"_id": {"$gt": "P3"}}, ["P4", "P5"]),
    ({"_id": 1}, []),
    ({"_version": 1}, ["P1", "P2", "P3", "P4", "P5"]),
    ({"_version": {"$gt": 1}}, []),
    ({"_version": "1"}, []),
    ({"_version": {"$in": [1.0, "2"]}}, ["P1", "P2", "P3", "P4", "P5"]),
    ({"_type": "Price"}, ["P5"]),
    ({"_type": {"$ne": "Price"}}, ["P1", "P2", "P3", "P4"]),
    ({"_batch": "objects-1", "_user": "loader@example.com"}, ["P1", "P2", "P3", "P4", "P5"]),
    ({"_created": {"$lt": "2000-01-01"}}, []),
    ({"_timestamp": {"$gte": "2000-01-01T00:00:00Z"}}, ["P1", "P2", "P3", "P4", "P5"]),
    ({"_timestamp": {"$exists": False}}, []),
    ({"_created": 5}, []),
]


@pytest.mark.parametrize("where, expected", OBJECT_CASES, ids=[json.dumps(w) for w, _ in OBJECT_CASES])
def test_object_filters(objects, where, expected):
    assert ids(objects, "/api/object/v1/private", where) == expected


def test_object_filter_per_source_total_and_paging(objects):
    expensive = {"MID_PRICE": {"$gt": 50}}
    assert ids(objects, "/api/object/v1/private", expensive) == ["P1"]
    assert ids(objects, "/api/object/v1/public", expensive) == ["#PUB"]
    assert ids(objects, "/api/object/v1/all", expensive) == ["#PUB", "P1"]
    total, page = listing(objects, "/api/object/v1/all", {"MID_PRICE": {"$gte": 50}}, _limit=2, _sort="_id")
    assert total == 3 and [o["_id"] for o in page] == ["#PUB", "P1"]
    total, page = listing(objects, "/api/object/v1/all", {"MID_PRICE": {"$gte": 50}}, _skip=2, _sort="_id")
    assert total == 3 and [o["_id"] for o in page] == ["P4"]


def test_filter_combines_with_plain_filters_and_search(objects):
    path = "/api/object/v1/private"
    assert ids(objects, path, {"MID_PRICE": {"$gt": 50}}, name="Alpha") == ["P1"]
    assert ids(objects, path, {"MID_PRICE": {"$gt": 50}}, name="Gamma") == []
    assert ids(objects, path, {"MID_PRICE": {"$gte": 50}}, _search="alpha") == ["P1", "P4"]
    assert ids(objects, path, {"MID_PRICE": 60}, _search="alpha") == ["P1"]
    assert ids(objects, path, {"MID_PRICE": {"$lt": 50}}, _search="alpha") == []
    assert ids(objects, path, {"loc.lat": {"$gt": 0}}, _id="in(P2,P3)") == ["P2"]


def test_filter_matches_the_served_document_not_another_tenants(objects):
    other = auth(tenant="tenant-b")
    response = objects.get("/api/object/v1/private?_filter=" + quote('{"name":"Alpha"}'), headers=other)
    assert response.status_code == 200 and response.get_json() == []
    assert response.headers["x-total-count"] == "0"


SUMMARY_CASES = [
    ({"status": "warning"}, ["b2"]),
    ({"status": {"$in": ["warning", "failed"]}}, ["b2", "b3"]),
    ({"status": {"$ne": "success"}}, ["b2", "b3"]),
    ({"status": {"$nin": ["success", 7]}}, ["b2", "b3"]),
    ({"status": {"$regex": "^(warn|fail)"}}, ["b2", "b3"]),
    ({"status": 1}, []),
    ({"size": {"$gte": 2}}, ["b2"]),
    ({"size": {"$gt": "1"}}, []),  # a string never compares with a number
    ({"size": 1, "status": "success"}, ["b1", "b4"]),
    ({"user": "alice@example.com"}, ["b1", "b3"]),
    ({"user": {"$regex": "^BOB@", "$options": "i"}}, ["b2", "b4"]),
    ({"name": {"$regex": "^aemo", "$options": "i"}}, ["b1", "b4"]),
    ({"name": {"$in": ["ICE", None]}}, ["b3"]),
    ({"name": None}, []),
    ({"name": {"$ne": "ICE"}}, ["b1", "b2", "b4"]),
    ({"name": {"$gt": "E"}}, ["b2", "b3"]),
    ({"name": {"$exists": True}}, ["b1", "b2", "b3", "b4"]),
    ({"service": "loader-x"}, ["b1", "b3"]),
    ({"service": None}, ["b4"]),
    ({"reason": "backfill"}, ["b4"]),
    ({"source": "private", "_id": {"$in": ["b1", "b3"]}}, ["b1", "b3"]),
    ({"summary.failures": {}}, ["b1", "b4"]),
    ({"summary.failures": {"$ne": {}}}, ["b2", "b3"]),
    ({"$or": [{"status": "failed"}, {"user": "bob@example.com", "status": "success"}]}, ["b3", "b4"]),
    ({"timestamp": 5}, []),
    ({"timestamp": {"$exists": True}}, ["b1", "b2", "b3", "b4"]),
]


@pytest.mark.parametrize("where, expected", SUMMARY_CASES, ids=[json.dumps(w) for w, _ in SUMMARY_CASES])
def test_summary_filters(client, summaries, where, expected):
    assert ids(client, "/api/batch/v1", where) == expected


def test_summary_timestamps_compare_as_instants(client, summaries):
    b2, b4 = summaries["b2"], summaries["b4"]
    assert ids(client, "/api/batch/v1", {"timestamp": {"$gt": b2}}) == ["b3", "b4"]
    assert ids(client, "/api/batch/v1", {"timestamp": {"$gte": b2, "$lt": b4}}) == ["b2", "b3"]
    assert ids(client, "/api/batch/v1", {"timestamp": b4}) == ["b4"]
    # the same instant written with an offset
    assert ids(client, "/api/batch/v1", {"timestamp": b4.replace("Z", "+00:00")}) == ["b4"]
    assert ids(client, "/api/batch/v1", {"timestamp": {"$lt": "2000-01-01"}}) == []
    assert_bad_request(get(client, "/api/batch/v1", _filter='{"timestamp":{"$gt":"yesterday"}}'))
    assert_bad_request(get(client, "/api/batch/v1", _filter='{"timestamp":{"$regex":"^2"}}'))


def test_summary_filter_on_every_list_route(client, summaries):
    where = {"status": "success"}
    assert ids(client, "/api/batch/v1", where) == ["b1", "b4"]
    assert ids(client, "/api/batch/v1/all", where) == ["b1", "b4"]
    assert ids(client, "/api/batch/v1/private", where) == ["b1", "b4"]
    assert ids(client, "/api/batch/v1/public", where) == []
    # newest first, as without a filter; with plain filters and _search
    assert [s["_id"] for s in listing(client, "/api/batch/v1", where)[1]] == ["b4", "b1"]
    assert ids(client, "/api/batch/v1", {"user": "bob@example.com"}, status="success") == ["b4"]
    assert ids(client, "/api/batch/v1", {"status": "success"}, _search="aemo_p") == ["b4"]
    assert ids(client, "/api/batch/v1", {"status": "failed"}, _search="aemo") == []
    # on a batch id the list parameters are checked, not applied
    response = get(client, "/api/batch/v1/b1", _filter='{"status":"failed"}')
    assert response.status_code == 200 and response.get_json()["_id"] == "b1"
    assert_bad_request(get(client, "/api/batch/v1/b1", _filter='{"status":{"$bad":1}}'))


@pytest.fixture
def events(client):
    post(
        client,
        {
            "_id": "events-1",
            "elements": [
                {
                    "_id": "PWR",
                    "outages": [
                        {"_type": "VarEvent", "_id": "o-1", "eventtime": "2021-07-01T06:00:00Z", "mw": 400},
                        {"_type": "VarEvent", "_id": "o-2", "eventtime": "2021-07-02T09:30:00Z", "mw": 250},
                        {"_type": "VarEvent", "_id": "o-3", "eventtime": "2021-07-03T00:00:00Z", "mw": "n/a"},
                    ],
                }
            ],
        },
    )
    return client


def test_event_list_filter_and_project(events):
    path = "/api/event/v1/private/PWR:outages"
    assert ids(events, path, {"mw": {"$gt": 300}}) == ["o-1"]
    assert ids(events, path, {"mw": {"$lt": 300}}) == ["o-2"]
    assert ids(events, path, {"eventtime": {"$gte": "2021-07-02"}}) == ["o-2", "o-3"]
    assert ids(events, path, {"_id": {"$in": ["o-1", "o-3"]}, "mw": {"$exists": True}}) == ["o-1", "o-3"]
    assert ids(events, path, {"eventtype": "#Event", "mw": {"$exists": True}}) == ["o-1", "o-2", "o-3"]
    total, items = listing(events, path, {"mw": {"$gte": 0}}, _project="mw")
    assert total == 2 and items == [{"_id": "o-2", "mw": 250}, {"_id": "o-1", "mw": 400}]
    assert_bad_request(get(events, path, _filter='{"mw":{"$gt":[1]}}'))


# --- _project -----------------------------------------------------------------------------


def test_project_objects(objects):
    path = "/api/object/v1/private"
    total, items = listing(objects, path, _project="name,loc.lat", _sort="_id")
    assert total == 5
    assert items == [
        {"_id": "P1", "name": "Alpha", "loc": {"lat": 51.5}},
        {"_id": "P2", "name": "beta", "loc": {"lat": 40.7}},
        {"_id": "P3", "name": "Gamma", "loc": {"lat": -33.9}},
        {"_id": "P4", "name": "ALPHA-2"},
        {"_id": "P5"},
    ]
    _, items = listing(objects, path, {"_id": "P4"}, _project="nested.a.b")
    assert items == [{"_id": "P4", "nested": {"a": {"b": {"c": 1}}}}]
    _, items = listing(objects, path, {"_id": "P1"}, _project="loc,loc.lat, tags ,name.first,_version,_type")
    assert items == [
        {"_id": "P1", "loc": {"lat": 51.5, "lon": -0.1}, "tags": ["x", "y"], "_version": 1, "_type": "#Object"}
    ]
    _, items = listing(objects, path, {"_id": "P1"}, _project="_id")
    assert items == [{"_id": "P1"}]
    _, items = listing(objects, path, {"_id": "P1"}, _project="note,missing")
    assert items == [{"_id": "P1", "note": None}]


def test_project_summaries(client, summaries):
    total, items = listing(client, "/api/batch/v1", {"status": {"$ne": "success"}}, _project="status,summary.failures")
    assert total == 2
    assert items == [
        {"_id": "b3", "status": "failed", "summary": {"failures": {"#0": items[0]["summary"]["failures"]["#0"]}}},
        {"_id": "b2", "status": "warning", "summary": {"failures": {"#1": items[1]["summary"]["failures"]["#1"]}}},
    ]
    assert all(set(item) == {"_id", "status", "summary"} for item in items)
    names = ",".join(f"f{n}" for n in range(50))
    assert listing(client, "/api/batch/v1", _project=names)[1] == [{"_id": b} for b in ("b4", "b3", "b2", "b1")]


@pytest.mark.parametrize(
    "project",
    [
        "",
        " ",
        "a,,b",
        "a,",
        "1a",
        "-a",
        "a;b",
        "a b",
        "a..b",
        ".a",
        "a.",
        "$a",
        "x" * 65,
        ",".join(f"f{n}" for n in range(51)),
        "'; DROP TABLE batch_summaries;--",
        ".".join(["a"] * 17),
    ],
)
def test_bad_project_is_400(client, project):
    assert_bad_request(get(client, "/api/batch/v1", _project=project), mentions="_project")
    assert_bad_request(get(client, "/api/object/v1/all", _project=project), mentions="_project")


def test_api_key_lists_take_no_filter_or_projection(client):
    for params in ({"_filter": '{"user":"a@b.c"}'}, {"_project": "user"}):
        message = assert_bad_request(get(client, "/api/apikey/v1", **params), mentions="API key lists")
        assert "only _limit and _skip" in message


# --- hostile input ----------------------------------------------------------------------------


def nested_nots(levels: int) -> str:
    """A filter of `levels` nested objects: $not ... $not {"MID_PRICE": 60}."""
    return '{"$not":' * (levels - 1) + '{"MID_PRICE":60}' + "}" * (levels - 1)


HOSTILE = [
    # not JSON, not an object
    "{status:1}",
    '{"status":',
    "",
    "[]",
    '"status"',
    "5",
    "null",
    "NaN",
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":1e400}',
    '{"a":"\\ud800"}',
    '{"a":1} {"b":2}',
    # unknown operators
    '{"a":{"$foo":1}}',
    '{"$where":"sleep(10)"}',
    '{"a":{"$where":"1"}}',
    '{"$nor":[{"a":1}]}',
    '{"$expr":{"$gt":["$a",1]}}',
    '{"a":{"$elemMatch":{"b":1}}}',
    '{"a":{"$type":"string"}}',
    '{"$gt":1}',
    # wrong operand types
    '{"a":{"$in":5}}',
    '{"a":{"$nin":"x"}}',
    '{"a":{"$exists":"yes"}}',
    '{"a":{"$exists":1}}',
    '{"a":{"$gt":[1]}}',
    '{"a":{"$gt":null}}',
    '{"a":{"$lte":true}}',
    '{"a":{"$lt":{"b":1}}}',
    '{"a":{"$regex":5}}',
    '{"a":{"$regex":"x","$options":"g"}}',
    '{"a":{"$regex":"x","$options":1}}',
    '{"a":{"$options":"i"}}',
    '{"$and":{"a":1}}',
    '{"$and":[]}',
    '{"$or":[1]}',
    '{"$or":[{"a":1},"b"]}',
    '{"$not":[{"a":1}]}',
    '{"a":{"$not":5}}',
    '{"a":{"$not":{"b":1}}}',
    '{"a":{"$not":{}}}',
    '{"a":{"$gt":1,"b":2}}',
    # regexes PostgreSQL refuses
    '{"name":{"$regex":"("}}',
    '{"name":{"$regex":"[z-a]"}}',
    '{"_id":{"$regex":"a{2,1}"}}',
    # over the limits
    nested_nots(17),
    nested_nots(2000),
    '{"$and":[' * 9 + '{"a":1}' + "]}" * 9,
    json.dumps({"a": {"$in": list(range(1001))}}),
    json.dumps({"a": {"$nin": ["x"] * 1001}}),
    json.dumps({"a": {"$in": list(range(1000))}, "b": {"$in": list(range(1000))}, "c": {"$in": [1]}}),
    json.dumps({"a": {"$regex": "a" * 257}}),
    json.dumps({"a": "x" * 70_000}),
    # field paths: SQL metacharacters, empty names, array indexes, too long
    json.dumps({DROP: 1}),
    '{"a\\"b":1}',
    '{"a b":1}',
    '{"a;b":1}',
    '{"a\')--":1}',
    '{"":1}',
    '{"a..b":1}',
    '{".a":1}',
    '{"a.":1}',
    '{"tags.0":"x"}',
    '{"a.$gt":1}',
    '{"a\\u0000b":1}',
    json.dumps({".".join(["a"] * 17): 1}),
    json.dumps({"x" * 65: 1}),
    # text PostgreSQL cannot hold
    '{"name":"a\\u0000b"}',
    '{"name":{"$regex":"\\u0000"}}',
    '{"name":{"$in":["ok","\\u0000"]}}',
]


@pytest.mark.parametrize("raw", HOSTILE, ids=[h[:60] for h in HOSTILE])
def test_hostile_filters_are_400_and_change_nothing(objects, db_url, raw):
    before = db_rows(db_url, "SELECT count(*) FROM objects")[0][0]
    for path in ("/api/object/v1/all", "/api/batch/v1", "/api/batch/v1/private"):
        assert_bad_request(get(objects, path, _filter=raw))
    assert db_rows(db_url, "SELECT count(*) FROM objects")[0][0] == before == 6
    assert objects.get("/healthz").status_code == 200


def test_filters_at_the_limits_are_accepted(objects):
    path = "/api/object/v1/private"
    assert ids(objects, path, _filter=nested_nots(16)) == ["P2", "P3", "P4", "P5"]  # 15 $not: odd
    assert ids(objects, path, _filter=nested_nots(15)) == ["P1"]
    deep_and = '{"$and":[' * 7 + '{"MID_PRICE":60}' + "]}" * 7  # 15 levels
    assert ids(objects, path, _filter=deep_and) == ["P1"]
    assert ids(objects, path, {"MID_PRICE": {"$in": [*range(1000, 1999), 60]}}) == ["P1"]
    longest = "^" + "(A|a)?" * 41 + "(l)pha.*$"
    assert len(longest) == 256 and ids(objects, path, {"name": {"$regex": longest}}) == ["P1"]
    assert ids(objects, path, {"_id": {"$in": [f"P{n}" for n in range(1000)]}}) == ["P1", "P2", "P3", "P4", "P5"]
    assert ids(objects, path, {".".join(["a"] * 16): 1, "x" * 64: {"$exists": False}}) == []


def test_message_says_what_is_wrong(objects):
    def message(raw):
        return assert_bad_request(get(objects, "/api/object/v1/all", _filter=raw))

    assert "not valid JSON" in message("{status:1}")
    assert "JSON object" in message("[1]")
    assert "unknown operator '$where'" in message('{"$where":"1"}')
    assert "unknown operator '$foo' on 'a'" in message('{"a":{"$foo":1}}')
    assert "$in on 'a' needs an array" in message('{"a":{"$in":1}}')
    assert "$gt on 'a' needs a number or a string" in message('{"a":{"$gt":true}}')
    assert "deeper than 16 levels" in message(nested_nots(17))
    assert "deeper than 16 levels" in message(nested_nots(5000))
    assert "1001 values (at most 1000)" in message(json.dumps({"a": {"$in": [0] * 1001}}))
    assert "257 characters long (at most 256)" in message(json.dumps({"a": {"$regex": "a" * 257}}))
    assert "not a valid PostgreSQL regular expression" in message('{"a":{"$regex":"("}}')
    assert "invalid field path" in message(json.dumps({DROP: 1}))
    assert "\\u0000" in message('{"a":"\\u0000"}')


def test_nul_in_the_query_text_is_refused_at_the_edge(objects):
    response = objects.get("/api/object/v1/all?_filter=" + quote('{"name":"a') + "%00" + quote('"}'), headers=auth())
    assert "query parameter '_filter'" in assert_bad_request(response, mentions="_filter")


def test_backtracking_bomb_regex_finishes_within_the_statement_timeout(db_url):
    """`(a+)+$` on a long run of a's is exponential in a backtracking engine; PostgreSQL's is not,
    and the statement timeout bounds anything that is slow."""
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, "db_statement_timeout_ms": 3000})
    client = app.test_client()
    try:
        long = "a" * 50_000 + "!"
        body = {"_id": "bomb", "elements": [{"_id": f"R{n}", "text": long} for n in range(20)]}
        assert client.post("/api/batch", data=json.dumps(body), headers=auth(tenant="bomb")).status_code == 201
        for pattern in ("(a+)+$", "(a|aa)+$", "(a*)*b", "^(([a-z])+.)+[A-Z]([a-z])+$", "(.*a){12}$", "^(a+)+\\1$"):
            started = time.monotonic()
            response = get(
                client, "/api/object/v1/all", auth(tenant="bomb"), _filter=json.dumps({"text": {"$regex": pattern}})
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 200, (pattern, response.get_data(as_text=True))
            assert response.get_json() == [] and elapsed < 3.0, (pattern, elapsed)
    finally:
        db_rows(db_url, "DELETE FROM objects WHERE tenant = 'bomb'")
        db_rows(db_url, "DELETE FROM batch_summaries WHERE tenant = 'bomb'")
        app.extensions["batchsvc"].database.dispose()


def test_status_filter_uses_the_status_index(app, client, db_url):
    """A page of `{"status":"warning"}` among many successes reads ix_batch_summaries_status_newest."""
    db_rows(
        db_url,
        """INSERT INTO batch_summaries (tenant, environment, id, timestamp, name, "user", status, source, body_hash, doc)
           SELECT 'tenant-a', 'production', 'bulk-' || n, now() - n * interval '1 second', 'N' || mod(n, 50), 'u@x',
                  CASE WHEN mod(n, 500) = 0 THEN 'warning' ELSE 'success' END, 'private', '', '{}'
           FROM generate_series(1, 20000) AS n""",
    )
    db_rows(db_url, "ANALYZE batch_summaries")
    statements = []
    engine = app.extensions["batchsvc"].database.engine

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "batch_summaries" in statement and "LIMIT" in statement:
            statements.append(cursor.mogrify(statement, parameters).decode())

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert listing(client, "/api/batch/v1", {"status": "warning"}, _limit=5)[0] == 40
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(statements) == 1
    plan = "\n".join(row[0] for row in db_rows(db_url, "EXPLAIN " + statements[0]))
    assert "ix_batch_summaries_status_newest" in plan, plan


def test_odsl_sdk_list_with_a_filter(odsl_sdk, live_server, db_url):
    client = sdk_client(odsl_sdk, live_server, make_token(tenant="sdk-filter", user="sdk@example.com"))
    try:
        client.update("batch", "private", {"_id": "sdk-filter-1", "elements": OBJECTS})
        found = client.list("object", "private", {"_filter": '{"MID_PRICE":{"$gt":50}}'})
        assert [o["_id"] for o in found] == ["P1"] and found[0]["MID_PRICE"] == 60
        found = client.list(
            "object", "private", {"_filter": '{"loc.lat":{"$gt":0}}', "_project": "loc.lat", "_sort": "_id"}
        )
        assert found == [{"_id": "P1", "loc": {"lat": 51.5}}, {"_id": "P2", "loc": {"lat": 40.7}}]
        summaries = client.list("batch", "private", {"_filter": '{"status":"success"}', "_project": "status"})
        assert summaries == [{"_id": "sdk-filter-1", "status": "success"}]
        refused = client.list("object", "private", {"_filter": '{"MID_PRICE":{"$where":1}}'})
        assert isinstance(refused, str) and "unknown operator" in refused
    finally:
        db_rows(db_url, "DELETE FROM objects WHERE tenant = 'sdk-filter'")
        db_rows(db_url, "DELETE FROM batch_summaries WHERE tenant = 'sdk-filter'")
