"""Reading objects back: one object with its server fields, lists per source, filters and sort."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

import pytest
from conftest import assert_error, auth

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def post(client, elements, batch_id=None, headers=None):
    body = {"elements": elements, **({"_id": batch_id} if batch_id else {})}
    response = client.post("/api/batch", data=json.dumps(body).encode(), headers=headers or auth())
    assert response.status_code == 201, response.get_data(as_text=True)
    time.sleep(0.003)  # distinct millisecond timestamps between batches
    return response.get_json()


def listing(client, source="private", query="", headers=None):
    response = client.get(f"/api/object/v1/{source}{query}", headers=headers or auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(response.headers["x-total-count"]), [o["_id"] for o in response.get_json()]


def ids(client, source="private", query=""):
    return listing(client, source, query)[1]


@pytest.fixture
def store(client):
    """Objects written oldest first: A1, A2, FOLDER/X:1, #P1 (public), then A1 again."""
    post(client, [{"_id": "A1", "_type": "Widget", "name": "Alpha", "region": "EU", "description": "first"}], "load-1")
    post(client, [{"_id": "A2", "name": "Beta", "region": "US"}], "load-2", auth(user="bob@example.com"))
    post(client, [{"_id": "FOLDER/X:1", "name": "Gamma", "region": "EU", "description": "nested path"}], "load-3")
    post(client, [{"_id": "#P1", "name": "Public one", "region": "EU"}], "load-4")
    post(client, [{"_id": "A1", "note": "second write"}], "load-5")
    return client


def test_get_one_object_with_server_fields(store):
    response = store.get("/api/object/v1/private/A1", headers=auth())
    assert response.status_code == 200
    obj = response.get_json()
    assert obj["_id"] == "A1" and obj["_type"] == "Widget"
    assert obj["name"] == "Alpha" and obj["note"] == "second write"
    assert obj["_version"] == 2
    assert obj["_batch"] == "load-5"
    assert obj["_user"] == "loader@example.com"
    assert TIMESTAMP.match(obj["_created"]) and TIMESTAMP.match(obj["_timestamp"])
    assert obj["_created"] < obj["_timestamp"]
    assert store.get("/api/object/v1/private/A2", headers=auth()).get_json()["_type"] == "#Object"


def test_ids_with_slash_colon_and_hash_route(store):
    encoded = quote("FOLDER/X:1", safe="")
    assert store.get(f"/api/object/v1/private/{encoded}", headers=auth()).get_json()["name"] == "Gamma"
    assert store.get("/api/object/v1/private/FOLDER/X:1", headers=auth()).get_json()["name"] == "Gamma"
    assert store.get("/api/object/v1/public/%23P1", headers=auth()).get_json()["name"] == "Public one"
    assert store.get("/api/object/v1/all/%23P1", headers=auth()).status_code == 200


def test_source_decides_what_is_visible(store):
    assert_error(store.get("/api/object/v1/private/%23P1", headers=auth()), 404)
    assert_error(store.get("/api/object/v1/public/A1", headers=auth()), 404)
    assert store.get("/api/object/v1/all/A1", headers=auth()).status_code == 200
    assert_error(store.get("/api/object/v1/private/NOPE", headers=auth()), 404)
    assert_error(store.get("/api/object/v1/elsewhere/A1", headers=auth()), 400)
    assert_error(store.get("/api/object/v1/elsewhere", headers=auth()), 400)


def test_lists_per_source_newest_first(store):
    assert listing(store, "private") == (3, ["A1", "FOLDER/X:1", "A2"])
    assert listing(store, "public") == (1, ["#P1"])
    assert listing(store, "all") == (4, ["A1", "#P1", "FOLDER/X:1", "A2"])
    first = store.get("/api/object/v1/private", headers=auth()).get_json()[0]
    assert first["_version"] == 2 and first["_batch"] == "load-5"


def test_paging(store):
    assert listing(store, "all", "?_limit=2") == (4, ["A1", "#P1"])
    assert listing(store, "all", "?_limit=2&_skip=2") == (4, ["FOLDER/X:1", "A2"])
    assert listing(store, "all", "?_skip=4") == (4, [])


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?region=EU", ["A1", "#P1", "FOLDER/X:1"]),
        ("?region=US", ["A2"]),
        ("?region=eu", []),
        ("?region=ne(EU)", ["A2"]),
        ("?region=in(US,XX)", ["A2"]),
        ("?name=Beta", ["A2"]),
        ("?name=beta", []),
        ("?_type=Widget", ["A1"]),
        ("?_type=%23Object", ["#P1", "FOLDER/X:1", "A2"]),
        ("?_id=in(A1,A2)", ["A1", "A2"]),
        ("?_version=2", ["A1"]),
        ("?_version=gt(1)", ["A1"]),
        ("?_version=lte(1)", ["#P1", "FOLDER/X:1", "A2"]),
        ("?_batch=load-3", ["FOLDER/X:1"]),
        ("?_user=bob@example.com", ["A2"]),
        ("?region=EU&name=Gamma", ["FOLDER/X:1"]),
        ("?nosuchproperty=1", []),
    ],
)
def test_filters(store, query, expected):
    assert listing(store, "all", query) == (len(expected), expected)


def test_timestamp_filters(store):
    a2 = store.get("/api/object/v1/private/A2", headers=auth()).get_json()
    stamp = quote(a2["_timestamp"])
    assert ids(store, "all", f"?_timestamp={stamp}") == ["A2"]
    assert ids(store, "all", f"?_timestamp=gt({stamp})") == ["A1", "#P1", "FOLDER/X:1"]
    assert ids(store, "all", f"?_timestamp=lte({stamp})") == ["A2"]
    assert ids(store, "all", f"?_created=lte({stamp})") == ["A1", "A2"]
    assert ids(store, "all", f"?_created=range({stamp},{stamp})") == ["A2"]


def test_sort(store):
    # (orders chosen to be the same under C and natural-language collations)
    assert ids(store, "private", "?_sort=_id") == ["A1", "A2", "FOLDER/X:1"]
    assert ids(store, "private", "?_sort=-_id") == ["FOLDER/X:1", "A2", "A1"]
    assert ids(store, "private", "?_sort=" + quote('{"_id":-1}')) == ["FOLDER/X:1", "A2", "A1"]
    assert ids(store, "all", "?_sort=name") == ["A1", "A2", "FOLDER/X:1", "#P1"]  # Alpha, Beta, Gamma, Public
    assert ids(store, "all", "?_sort=-name") == ["#P1", "FOLDER/X:1", "A2", "A1"]
    assert ids(store, "private", "?_sort=_version,_id") == ["A2", "FOLDER/X:1", "A1"]
    assert ids(store, "private", "?_sort=-_version,-_id") == ["A1", "FOLDER/X:1", "A2"]
    assert ids(store, "all", "?_sort=_timestamp") == ["A2", "FOLDER/X:1", "#P1", "A1"]
    assert ids(store, "all", "?_sort=_created") == ["A1", "A2", "FOLDER/X:1", "#P1"]


def test_search_over_id_name_description(store):
    assert ids(store, "all", "?_search=folder") == ["FOLDER/X:1"]
    assert ids(store, "all", "?_search=ALPHA") == ["A1"]
    assert ids(store, "all", "?_search=nested%20PATH") == ["FOLDER/X:1"]
    assert ids(store, "all", "?_search=1") == ["A1", "#P1", "FOLDER/X:1"]
    assert ids(store, "all", "?_search=second") == []  # only _id, name and description are searched
    assert ids(store, "all", "?_search=%25") == []


@pytest.mark.parametrize(
    "query",
    [
        "_limit=0",
        "_limit=5000",
        "_skip=-3",
        "_sort=no_such_field",
        "_sort=name;select",
        "_sort=" + quote('{"_id":0}'),
        "_version=abc",
        "_version=range(1)",
        "_timestamp=gt(soon)",
        "_timestamp=" + quote("2024' OR 1=1--"),
        "_whatever=1",
        "region=a&region=b",
    ],
)
def test_bad_object_list_parameters_are_400(store, query):
    assert_error(store.get(f"/api/object/v1/all?{query}", headers=auth()), 400)


def test_sql_metacharacters_in_property_filters(store):
    assert listing(store, "all", "?region=" + quote("EU' OR '1'='1")) == (0, [])
    assert listing(store, "all", "?region=in(" + quote("EU') OR ('1'='1") + ")") == (0, [])
    assert_error(store.get("/api/object/v1/all?" + quote("region'); --") + "=EU", headers=auth()), 400)
    assert listing(store, "all")[0] == 4
