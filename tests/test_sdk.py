"""The real `odsl` SDK (PyPI odsl 1.2.1) against a live gunicorn: it must work unchanged."""

from __future__ import annotations

import pytest
from conftest import make_token, sdk_client, start_live_server, truncate

BATCH_ID = "00006d91-0fa0-481a-8118-7d6c1f4dba8f"


@pytest.fixture(scope="module")
def live_server(db_url):
    """A gunicorn of our own for this module."""
    server = start_live_server(db_url)
    yield server
    server.stop()


@pytest.fixture
def odsl(odsl_sdk, live_server, db_url):
    client = sdk_client(odsl_sdk, live_server, make_token(tenant="sdk-tenant", user="sdk@example.com"))
    yield client
    truncate(db_url)


def printed_status(capsys) -> list[str]:
    return capsys.readouterr().out.split()


def test_sdk_story(odsl, capsys):
    batch = {"_id": BATCH_ID, "_type": "VarBatch", "elements": [{"_id": "AAA", "example": "property"}]}
    odsl.update("batch", "private", batch)
    assert printed_status(capsys) == ["201"]

    summary = odsl.get("batch", None, BATCH_ID)
    assert isinstance(summary, dict), summary
    assert summary["_id"] == BATCH_ID
    assert summary["status"] == "success" and summary["user"] == "sdk@example.com"
    assert summary["summary"]["failures"] == {}

    listed = odsl.list("batch")
    assert [s["_id"] for s in listed] == [BATCH_ID]
    assert odsl.list("batch", "all") == listed
    assert odsl.list("batch", "public") == []

    obj = odsl.get("object", "private", "AAA")
    assert obj["_id"] == "AAA" and obj["example"] == "property"
    assert obj["_version"] == 1 and obj["_batch"] == BATCH_ID

    # the same batch again is a replay; another body under the id is a conflict the SDK explains
    odsl.update("batch", "private", batch)
    assert printed_status(capsys) == ["200"]
    odsl.update("batch", "private", {**batch, "elements": [{"_id": "AAA", "example": "changed"}]})
    out = capsys.readouterr().out
    assert "ODSL error 409: [409]" in out and out.strip().endswith("409")
    assert odsl.get("object", "private", "AAA")["example"] == "property"


def test_sdk_reads_errors_from_the_header(odsl, capsys):
    missing = odsl.get("batch", None, "no-such-batch")
    assert isinstance(missing, str) and '"code":404' in missing.replace(" ", "")
    assert "ODSL error 404: [404]" in capsys.readouterr().out
    odsl.update("batch", "private", {"elements": []})
    out = capsys.readouterr().out
    assert "ODSL error 400: [400]" in out and out.strip().endswith("400")


def test_sdk_public_objects_paths_and_params(odsl, capsys):
    odsl.update(
        "batch", "private", {"_id": "sdk-2", "elements": [{"_id": "#PUBLIC", "v": 1}, {"_id": "a/b:c", "v": 2}]}
    )
    odsl.update("batch", "private", [{"_id": f"N{n}", "v": n} for n in range(5)])
    assert printed_status(capsys) == ["201", "201"]
    assert odsl.get("object", "public", "#PUBLIC")["v"] == 1
    assert odsl.get("object", "private", "a/b:c")["v"] == 2
    assert odsl.get("batch", "public", "sdk-2")["source"] == "public"
    page = odsl.list("object", "private", params={"_limit": 2, "_sort": "_id"})
    assert [o["_id"] for o in page] == ["N0", "N1"]
    assert [o["_id"] for o in odsl.list("object", "private", params={"v": "in(3,4)", "_sort": "-_id"})] == ["N4", "N3"]
    assert odsl.headers("object", "all")["x-total-count"] == "7"
    assert odsl.headers("batch", "private")["x-total-count"] == "1"


def test_sdk_with_a_bad_token(odsl_sdk, live_server, capsys):
    client = sdk_client(odsl_sdk, live_server, "not-a-token")
    result = client.list("batch")
    assert isinstance(result, str)
    assert "ODSL error 401: [401]" in capsys.readouterr().out


def test_every_sample_call_of_the_odsl_readme(odsl, odsl_sdk, live_server, capsys):
    """The calls the SDK's own samples make, end to end: object writes, API-key login, _filter and
    _project, each _range form, tenor history and events."""
    import requests

    # update('object', …): one object, then an array
    odsl.update("object", "private", {"_id": "AAA.PYTHON", "name": "Example", "MID_PRICE": 40})
    odsl.update("object", "private", [{"_id": f"P{n}", "MID_PRICE": 45 + 5 * n, "kind": "px"} for n in range(4)])
    assert printed_status(capsys) == ["201", "201"]
    assert odsl.get("object", "private", "AAA.PYTHON")["name"] == "Example"

    # list with _filter (typed comparison) and _project
    high = odsl.list("object", "private", {"_filter": '{"MID_PRICE":{"$gt":50}}', "_sort": "_id"})
    assert [o["_id"] for o in high] == ["P2", "P3"]
    projected = odsl.list("object", "private", {"_filter": '{"kind":"px"}', "_project": "MID_PRICE", "_sort": "-_id"})
    assert projected[0] == {"_id": "P3", "MID_PRICE": 60} and len(projected) == 4

    # data: a daily series, a curve with two dates, an event list
    days = [{"time": f"2024-12-{d:02d}", "value": d} for d in range(1, 32)] + [{"time": "2025-01-02", "value": 99}]
    odsl.update(
        "object",
        "private",
        {
            "_id": "SDK.PWR",
            "price": {"_type": "VarTimeSeries", "calendar": "DAILY", "data": days},
            "outages": [{"_type": "VarEvent", "_id": "o-1", "eventtime": "2024-12-03T06:00:00Z", "mw": 400}],
        },
    )
    for day, m01 in (("2024-12-02", 55.1), ("2024-12-03", 54.7)):
        curve = {"_type": "VarCurve", "ondate": day, "contracts": [{"tenor": "M01", "value": m01}]}
        odsl.update("object", "private", {"_id": "SDK.PWR", "fwd": curve})
    assert printed_status(capsys) == ["201", "201", "201"]

    def values(rng):
        return [p["value"] for p in odsl.get("data", "private", "SDK.PWR:price", {"_range": rng})["data"]]

    assert values("2024-12") == list(range(1, 32))
    assert values("last(2)") == [31, 99]
    assert values("from(2024-12-30)") == [30, 31, 99]
    assert values("between(2024-12-05,2024-12-06)") == [5, 6]
    assert values("within(2025)") == [99]
    assert values("2024M12") == list(range(1, 32))
    assert values("within(2024-12-24T10,Europe/Paris)") == [] and values("within(2024-12-24,UTC)") == [24]
    history = odsl.get("data", "private", "SDK.PWR:fwd:M01")
    assert [(p["time"], p["value"]) for p in history["data"]] == [("2024-12-02", 55.1), ("2024-12-03", 54.7)]
    assert odsl.get("data", "private", "SDK.PWR:fwd", {"tenor": "M01", "_range": "from(2024-12-03)"})["data"] == [
        {"time": "2024-12-03", "value": 54.7}
    ]
    assert odsl.get("event", "private", "SDK.PWR:outages:o-1")["mw"] == 400
    assert [e["_id"] for e in odsl.list("event", "private", {"event": "SDK.PWR:outages"})] == ["o-1"]
    assert {d["_id"] for d in odsl.list("data", "private")} >= {"SDK.PWR:price", "SDK.PWR:fwd"}

    # loginWithAPIKey, then list / get / update with the key
    admin = {"Authorization": f"Bearer {make_token(tenant='sdk-tenant', user='sdk@example.com')}"}
    created = requests.post(
        live_server.url + "/api/apikey/v1",
        json={"user": "loader@example.com", "roles": ["batch.write"], "name": "nightly"},
        headers=admin,
        timeout=10,
    ).json()
    keyed = sdk_client(odsl_sdk, live_server)
    keyed.loginWithAPIKey("loader@example.com", created["key"])
    assert len(keyed.list("object", "private")) == 6
    assert keyed.get("object", "private", "P0")["MID_PRICE"] == 45
    keyed.update("object", "private", {"_id": "P0", "MID_PRICE": 46})
    assert printed_status(capsys)[-1] == "201"
    assert odsl.get("object", "private", "P0")["_user"] == "loader@example.com"
