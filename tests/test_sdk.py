"""The real `odsl` SDK (PyPI odsl 1.2.1) against a live gunicorn: it must work unchanged."""

from __future__ import annotations

import pytest
from conftest import make_token, start_live_server, truncate

BATCH_ID = "00006d91-0fa0-481a-8118-7d6c1f4dba8f"


@pytest.fixture(scope="module")
def live_server(db_url):
    """A gunicorn of our own for this module."""
    server = start_live_server(db_url)
    yield server
    server.stop()


@pytest.fixture
def odsl(odsl_sdk, live_server, db_url):
    client = odsl_sdk.ODSL()
    client.url = live_server.url + "/api/"
    client.loginWithToken(make_token(tenant="sdk-tenant", user="sdk@example.com"))
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
    client = odsl_sdk.ODSL()
    client.url = live_server.url + "/api/"
    client.loginWithToken("not-a-token")
    result = client.list("batch")
    assert isinstance(result, str)
    assert "ODSL error 401: [401]" in capsys.readouterr().out
