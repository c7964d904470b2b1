"""Listing batch summaries: paging, exact and function filters, sorting, search, bad parameters."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from conftest import ERROR_KEYS, auth

NEM = "AEMO_NEM_POWER_5MIN_PRICE_AND_DEMAND_EVENTS"


def post(client, body, headers=None):
    response = client.post("/api/batch", data=json.dumps(body).encode(), headers=headers or auth())
    assert response.status_code in (201, 422), response.get_data(as_text=True)
    return response.get_json()


def listing(client, query="", path="/api/batch/v1", headers=None):
    response = client.get(path + query, headers=headers or auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(response.headers["x-total-count"]), [s["_id"] for s in response.get_json()]


def ids(client, query, **kwargs):
    return listing(client, query, **kwargs)[1]


def assert_bad_request(response):
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == 400 and body["message"]
    assert response.headers["x-odsl-error"].startswith("[400] ")


@pytest.fixture
def loads(client):
    """Four summaries, oldest first, with distinct timestamps, users, names and statuses."""
    alice, bob = auth(user="alice@example.com"), auth(user="bob@example.com")
    batches = [
        ({"_id": "b1", "name": NEM, "service": "loader-x", "correlationId": "c-1", "elements": [{"_id": "O1"}]}, alice),
        (
            {
                "_id": "b2",
                "name": "ECB_FX",
                "service": "loader-y",
                "correlationId": "c-2",
                "elements": [{"_id": "O2"}, 5],
            },
            bob,
        ),
        ({"_id": "b3", "name": "ICE_FUTURES", "service": "loader-x", "elements": [5]}, alice),
        (
            {
                "_id": "b4",
                "name": "AEMO_ROOFTOP_PV",
                "service": "loader-z",
                "reason": "backfill",
                "elements": [{"_id": "O4"}],
            },
            bob,
        ),
    ]
    stamps = {}
    for body, headers in batches:
        stamps[body["_id"]] = post(client, body, headers)["timestamp"]
        time.sleep(0.005)  # distinct millisecond timestamps
    assert sorted(stamps.values()) == [stamps[b] for b in ("b1", "b2", "b3", "b4")]
    assert len(set(stamps.values())) == 4
    return stamps


def test_default_order_is_newest_first(client, loads):
    assert listing(client) == (4, ["b4", "b3", "b2", "b1"])
    assert ids(client, "", path="/api/batch/v1/all") == ["b4", "b3", "b2", "b1"]


def test_limit_and_skip_with_total_count(client, loads):
    assert listing(client, "?_limit=2") == (4, ["b4", "b3"])
    assert listing(client, "?_limit=2&_skip=2") == (4, ["b2", "b1"])
    assert listing(client, "?_skip=3") == (4, ["b1"])
    assert listing(client, "?_skip=10") == (4, [])
    assert listing(client, "?_limit=1000") == (4, ["b4", "b3", "b2", "b1"])
    assert listing(client, "?status=success&_limit=1") == (2, ["b4"])


def test_default_limit_is_100(client):
    for n in range(101):
        post(client, {"_id": f"many-{n}", "elements": [{"_id": "X"}]})
    total, page = listing(client)
    assert total == 101 and len(page) == 100
    last = listing(client, "?_skip=100")
    assert last[0] == 101 and len(last[1]) == 1 and last[1][0] not in page


@pytest.mark.parametrize(
    "query, expected",
    [
        (f"?name={NEM}", ["b1"]),
        ("?name=ECB_FX", ["b2"]),
        ("?name=ecb_fx", []),
        ("?status=warning", ["b2"]),
        ("?status=failed", ["b3"]),
        ("?status=success", ["b4", "b1"]),
        ("?user=alice@example.com", ["b3", "b1"]),
        ("?user=bob@example.com", ["b4", "b2"]),
        ("?service=loader-x", ["b3", "b1"]),
        ("?correlationId=c-1", ["b1"]),
        ("?reason=backfill", ["b4"]),
        ("?reason=Update%20Batch", ["b3", "b2", "b1"]),
        ("?service=loader-x&status=success", ["b1"]),
        ("?_id=b2", ["b2"]),
        ("?_id=in(b1,b3)", ["b3", "b1"]),
        ("?status=in(warning,failed)", ["b3", "b2"]),
        ("?status=ne(success)", ["b3", "b2"]),
        ("?size=2", ["b2"]),
        ("?size=gt(1)", ["b2"]),
        ("?name=nobody", []),
    ],
)
def test_exact_and_function_filters(client, loads, query, expected):
    total, page = listing(client, query)
    assert page == expected
    assert total == len(expected)


def test_timestamp_functions(client, loads):
    t = {k: quote(v) for k, v in loads.items()}
    assert ids(client, f"?timestamp={t['b2']}") == ["b2"]
    assert ids(client, f"?timestamp=gt({t['b2']})") == ["b4", "b3"]
    assert ids(client, f"?timestamp=gte({t['b2']})") == ["b4", "b3", "b2"]
    assert ids(client, f"?timestamp=lt({t['b2']})") == ["b1"]
    assert ids(client, f"?timestamp=lte({t['b2']})") == ["b2", "b1"]
    assert ids(client, f"?timestamp=range({t['b2']},{t['b3']})") == ["b3", "b2"]
    assert ids(client, f"?timestamp=ne({t['b2']})") == ["b4", "b3", "b1"]
    assert ids(client, f"?timestamp=in({t['b1']},{t['b4']})") == ["b4", "b1"]
    assert ids(client, "?timestamp=gt(2000-01-01)") == ["b4", "b3", "b2", "b1"]
    assert ids(client, "?timestamp=lt(2000-01-01T00:00:00Z)") == []
    total, page = listing(client, f"?timestamp=gte({t['b2']})&_limit=1&_skip=1")
    assert (total, page) == (3, ["b3"])


def test_sort_both_syntaxes(client, loads):
    by_name = ["b1", "b4", "b2", "b3"]  # AEMO_NEM… < AEMO_ROOFTOP… < ECB_FX < ICE_FUTURES
    assert ids(client, "?_sort=name") == by_name
    assert ids(client, "?_sort=-name") == list(reversed(by_name))
    assert ids(client, "?_sort=" + quote('{"name":1}')) == by_name
    assert ids(client, "?_sort=" + quote('{"name":-1}')) == list(reversed(by_name))
    assert ids(client, "?_sort=timestamp") == ["b1", "b2", "b3", "b4"]
    assert ids(client, "?_sort=-timestamp") == ["b4", "b3", "b2", "b1"]
    assert ids(client, "?_sort=service,-timestamp") == ["b3", "b1", "b2", "b4"]
    assert ids(client, "?_sort=" + quote('{"user":1,"timestamp":-1}')) == ["b3", "b1", "b4", "b2"]
    assert ids(client, "?_sort=user,timestamp") == ["b1", "b3", "b2", "b4"]
    assert ids(client, "?_sort=status,_id") == ["b3", "b1", "b4", "b2"]
    assert ids(client, "?_sort=-size,_id") == ["b2", "b1", "b3", "b4"]
    # sorting composes with filters and paging
    assert listing(client, "?_sort=name&service=loader-x&_limit=1&_skip=1") == (2, ["b3"])


def test_search_is_case_insensitive_substring(client, loads):
    assert ids(client, "?_search=aemo") == ["b4", "b1"]
    assert ids(client, "?_search=AEMO") == ["b4", "b1"]
    assert ids(client, "?_search=LOADER-") == ["b4", "b3", "b2", "b1"]
    assert ids(client, "?_search=BACKFILL") == ["b4"]
    assert ids(client, "?_search=elements%20failed") == ["b3", "b2"]
    assert ids(client, "?_search=fx&status=warning") == ["b2"]
    # LIKE wildcards are plain characters
    assert ids(client, "?_search=%25") == []
    assert ids(client, "?_search=EC__FX") == []
    assert ids(client, "?_search=B_F") == ["b2"]
    assert ids(client, "?_search=_") == ["b4", "b3", "b2", "b1"]
    assert ids(client, "?_search=C%25F") == []


def test_source_lists(client):
    post(client, {"_id": "priv", "elements": [{"_id": "P"}]})
    post(client, {"_id": "pub", "elements": [{"_id": "#P"}]})
    assert ids(client, "", path="/api/batch/v1/private") == ["priv"]
    assert ids(client, "", path="/api/batch/v1/public") == ["pub"]
    assert ids(client, "", path="/api/batch/v1/all") == ["pub", "priv"]
    assert ids(client, "?source=public") == ["pub"]
    assert client.get("/api/batch/v1/public/priv", headers=auth()).status_code == 404
    assert client.get("/api/batch/v1/private/pub", headers=auth()).status_code == 404
    assert client.get("/api/batch/v1/all/pub", headers=auth()).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "_limit=abc",
        "_limit=0",
        "_limit=-1",
        "_limit=5000",
        "_limit=1.5",
        "_skip=-1",
        "_skip=x",
        "_sort=nosuchfield",
        "_sort=-doc",
        "_sort=name;DROP%20TABLE%20batch_summaries",
        "_sort=name%20desc",
        "_sort=" + quote("(select 1)"),
        "_sort=" + quote('{"name":2}'),
        "_sort=" + quote('{"name":true}'),
        "_sort=" + quote('{"nosuchfield":1}'),
        "_sort=" + quote('{"name":'),
        "_sort=" + quote("[1]"),
        "_sort=",
        "timestamp=range(1)",
        "timestamp=range(2024-01-01)",
        "timestamp=range(2024-01-01,2024-02-01,2024-03-01)",
        "timestamp=gt()",
        "timestamp=in()",
        "timestamp=gt(2024-01-01,2024-01-02)",
        "timestamp=gt(yesterday)",
        "timestamp=not-a-date",
        "timestamp=" + quote("2024-01-01' OR '1'='1"),
        "size=abc",
        "size=gt(1e99)",
        "size=99999999999999",
        "nosuchfield=1",
        "_unknown=1",
        "name=a&name=b",
        quote("na me") + "=x",
        quote("name') OR 1=1--") + "=x",
    ],
)
def test_bad_list_parameters_are_400(client, query):
    assert_bad_request(client.get(f"/api/batch/v1?{query}", headers=auth()))
    assert_bad_request(client.get(f"/api/batch/v1/private?{query}", headers=auth()))


def test_sql_metacharacters_in_values_are_plain_values(client, loads):
    nasty = "x' OR '1'='1"
    assert listing(client, "?name=" + quote(nasty)) == (0, [])
    assert listing(client, "?name=" + quote("ECB_FX' --")) == (0, [])
    assert listing(client, "?status=in(" + quote("success') OR ('1'='1") + ")") == (0, [])
    odd = "O'Brien\"; DROP TABLE batch_summaries; --"
    post(client, {"_id": "odd", "name": odd, "elements": [{"_id": "O"}]})
    assert listing(client, "?name=" + quote(odd)) == (1, ["odd"])
    assert listing(client)[0] == 5
