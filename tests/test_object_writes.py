"""The object service's writes (SPEC §11): POST /api/object[/v1[/{source}]] with one object or an array."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from conftest import assert_error, auth, db_rows, make_token, sdk_client, start_live_server, truncate

from batchsvc.api.http import summary_response
from batchsvc.core.batches import REPLAYED, Outcome, object_write_request

WRITER = ("batch.read", "batch.write")


def post(client, body, path="/api/object", *, query="", headers=None):
    """POST a raw JSON body the way the odsl SDK does: no Content-Type header."""
    return client.post(path + query, data=json.dumps(body).encode(), headers=headers or auth())


def written(client, body, path="/api/object", *, query="", headers=None) -> dict:
    response = post(client, body, path, query=query, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def get_object(client, object_id, *, source="private", status=200, headers=None):
    response = client.get(f"/api/object/v1/{source}/{quote(object_id, safe='')}", headers=headers or auth())
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def summaries(client, headers=None, **params) -> list[dict]:
    response = client.get("/api/batch/v1", query_string=params, headers=headers or auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# --- one object ----------------------------------------------------------------------------------


def test_one_object_is_created_then_merged_then_replaced(client):
    response = post(client, {"_id": "AAA", "_type": "Widget", "name": "Alpha", "region": "EU"})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["Location"] == "/api/object/v1/private/AAA"
    created = response.get_json()
    assert created == get_object(client, "AAA")  # exactly what GET returns
    assert created["_version"] == 1 and created["name"] == "Alpha" and created["_type"] == "Widget"

    merged = written(client, {"_id": "AAA", "region": "US", "size": 3}, "/api/object/v1")
    assert merged["_version"] == 2
    assert (merged["name"], merged["region"], merged["size"], merged["_type"]) == ("Alpha", "US", 3, "Widget")
    assert merged["_batch"] != created["_batch"]  # a new batch id every call

    replaced = written(client, {"_id": "AAA", "only": True}, "/api/object/v1/private", query="?_replace=true")
    assert replaced["_version"] == 3 and replaced["only"] is True
    assert "name" not in replaced and "region" not in replaced and replaced["_type"] == "#Object"
    assert get_object(client, "AAA") == replaced


def test_element_replace_flag_and_server_fields_are_not_taken_from_input(client):
    written(client, {"_id": "R", "a": 1, "b": 2})
    obj = written(
        client, {"_id": "R", "a": 9, "_replace": True, "_version": 77, "_user": "mallory", "_batch": "forged"}
    )
    assert obj["a"] == 9 and "b" not in obj and "_replace" not in obj
    assert obj["_version"] == 2 and obj["_user"] == "loader@example.com" and obj["_batch"] != "forged"


def test_each_write_keeps_a_summary_with_service_object(client):
    obj = written(client, {"_id": "S1", "v": 1}, query="?_reason=manual%20fix")
    written(client, {"_id": "S2", "v": 2})
    listed = summaries(client, service="object", _sort="timestamp")
    assert [s["_id"] for s in listed][0] == obj["_batch"]
    assert len(listed) == 2 and {s["service"] for s in listed} == {"object"}
    assert [s["reason"] for s in listed] == ["manual fix", "Update Object"]
    assert all(s["status"] == "success" and s["size"] == 1 and s["name"] is None for s in listed)
    assert summaries(client, service="object", reason="manual fix")[0]["user"] == "loader@example.com"


def test_no_idempotency_the_same_body_twice_is_two_writes(client):
    first = written(client, {"_id": "TWICE", "v": 1})
    second = written(client, {"_id": "TWICE", "v": 1})  # a second write, recorded; it changes nothing (§12)
    assert second == first and first["_version"] == 1
    calls = summaries(client, service="object")
    assert len(calls) == 2 and sorted(s["counts"]["objects"]["unchanged"] for s in calls) == [0, 1]
    changed = written(client, {"_id": "TWICE", "v": 2})
    assert changed["_version"] == 2 and changed["_batch"] != first["_batch"]


def test_an_invalid_object_is_422_naming_the_problem_and_writes_nothing(client, db_url):
    body = assert_error(post(client, {"name": "no id"}), 422)
    assert "has no _id" in body["message"]
    assert body["errors"]["failures"] == {"#0": body["message"]}
    failed = summaries(client, status="failed")
    assert [s["_id"] for s in failed] == [body["errors"]["batch"]] and failed[0]["service"] == "object"

    body = assert_error(post(client, {"_id": "BAD", "_type": "VarBatch"}), 422)
    assert body["message"].startswith("object 'BAD': _type 'VarBatch' is not an object type")

    untimed = {"_type": "VarTimeSeries", "data": [{"time": "2024-01-05", "value": 1}, {"value": 2}]}
    body = assert_error(post(client, {"_id": "TS", "price": untimed}), 422)
    assert body["message"].startswith(
        "object 'TS': property 'price': observation #1 has no time; values without a time need"
    )
    get_object(client, "BAD", status=404)
    get_object(client, "TS", status=404)
    assert db_rows(db_url, "SELECT count(*) FROM objects") == [(0,)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "at least one object"),
        (b'"text"', "an object (with _id) or a JSON array"),
        (b'{"_id": "N", "v": "\\u0000"}', "\\u0000 is not allowed"),
    ],
)
def test_a_malformed_body_is_400(client, body, message):
    response = client.post("/api/object", data=body, headers=auth())
    assert message in assert_error(response, 400)["message"]
    assert summaries(client) == []


def test_bad_flags_and_sources_are_400(client):
    assert "_replace" in assert_error(post(client, {"_id": "F"}, query="?_replace=maybe"), 400)["message"]
    assert (
        "source must be one of" in assert_error(post(client, {"_id": "F"}, "/api/object/v1/elsewhere"), 400)["message"]
    )
    assert summaries(client) == []


# --- arrays ----------------------------------------------------------------------------------------


def test_an_array_answers_its_summary(client):
    response = post(client, [{"_id": "A1", "v": 1}, {"_id": "A2", "v": 2}, {"_id": "A1", "w": 3}])
    assert response.status_code == 201, response.get_data(as_text=True)
    summary = response.get_json()
    assert response.headers["Location"] == f"/api/batch/v1/{summary['_id']}"
    assert "x-odsl-failures" not in response.headers
    assert summary["status"] == "success" and summary["service"] == "object" and summary["size"] == 3
    assert client.get(response.headers["Location"], headers=auth()).get_json() == summary
    a1 = get_object(client, "A1")
    assert (a1["v"], a1["w"], a1["_version"], a1["_batch"]) == (1, 3, 1, summary["_id"])  # one batch, one version


def test_an_array_with_a_bad_element_is_a_warning(client):
    response = post(client, [{"_id": "OK1", "v": 1}, {"v": "no id"}, {"_id": "OK2", "_replace": "yes"}])
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["x-odsl-failures"] == "2"
    summary = response.get_json()
    assert summary["status"] == "warning" and summary["message"] == "2 of 3 elements failed"
    assert set(summary["summary"]["failures"]) == {"#1", "OK2"}
    assert get_object(client, "OK1")["v"] == 1
    get_object(client, "OK2", status=404)


def test_an_array_with_only_bad_elements_is_422_with_its_summary(client):
    response = post(client, [{"v": 1}, 42], "/api/object/v1")
    assert response.status_code == 422
    assert response.headers["x-odsl-error"] == "[422] 2 of 2 elements failed"
    summary = response.get_json()
    assert summary["status"] == "failed" and set(summary["summary"]["failures"]) == {"#0", "#1"}
    assert summaries(client, status="failed")[0]["_id"] == summary["_id"]


def test_atomic_array_writes_nothing_when_an_element_fails(client):
    response = post(client, [{"_id": "AT1"}, {"v": 1}], query="?_atomic=true")
    assert response.status_code == 422 and "nothing was written (_atomic)" in response.get_json()["message"]
    get_object(client, "AT1", status=404)


# --- public ids and sources -------------------------------------------------------------------------


def test_public_ids_need_batch_admin(client):
    writer = auth(roles=WRITER)
    body = assert_error(post(client, {"_id": "#PUB", "v": 1}, headers=writer), 422)
    assert "only batch.admin may write public objects" in body["message"]
    get_object(client, "#PUB", source="public", status=404)

    response = post(client, {"_id": "#PUB", "v": 1})  # batch.admin
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/object/v1/public/%23PUB"
    assert client.get(response.headers["Location"], headers=writer).get_json() == response.get_json()
    summary = summaries(client, status="success")[0]
    assert summary["source"] == "public" and summary["service"] == "object"

    response = post(client, [{"_id": "#PUB2"}, {"_id": "PRIV"}], headers=writer)
    assert response.status_code == 201 and response.headers["x-odsl-failures"] == "1"
    assert list(response.get_json()["summary"]["failures"]) == ["#PUB2"]


def test_a_source_in_the_path_admits_only_its_own_ids(client):
    body = assert_error(post(client, {"_id": "#P"}, "/api/object/v1/private"), 422)
    assert "cannot be written to source private" in body["message"]
    body = assert_error(post(client, {"_id": "PLAIN"}, "/api/object/v1/public"), 422)
    assert "cannot be written to source public" in body["message"]
    event = {"_type": "VarEvent", "_id": "e1", "event": "PLAIN:log", "eventtime": "2024-01-01T00:00:00Z"}
    assert "source public" in assert_error(post(client, event, "/api/object/v1/public"), 422)["message"]

    assert written(client, {"_id": "#P", "v": 1}, "/api/object/v1/public")["v"] == 1
    assert written(client, {"_id": "PLAIN", "v": 2}, "/api/object/v1/private")["v"] == 2
    summary = written(client, [{"_id": "#P", "w": 1}, {"_id": "PLAIN", "w": 2}], "/api/object/v1/all")
    assert summary["status"] == "success" and summary["source"] == "public"
    summary = written(client, [{"_id": "#P", "x": 1}, {"_id": "PLAIN", "x": 2}], "/api/object/v1/private")
    assert summary["status"] == "warning" and list(summary["summary"]["failures"]) == ["#P"]


def test_location_encodes_the_id_like_data_refs(client):
    response = post(client, {"_id": "FOLDER/X:1?q#%", "v": 1})
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/object/v1/private/FOLDER/X:1%3Fq%23%25"
    assert client.get(response.headers["Location"], headers=auth()).get_json()["_id"] == "FOLDER/X:1?q#%"


# --- typed data, tenancy ----------------------------------------------------------------------------


def test_typed_data_inside_an_object_is_readable_from_the_data_route(client):
    price = {
        "_type": "VarTimeSeries",
        "calendar": "DAILY",
        "units": "EUR",
        "data": [{"time": "2024-03-01", "value": 10.5}, {"time": "2024-03-02", "value": 11.0}],
    }
    obj = written(client, {"_id": "PWR", "name": "power", "price": price})
    assert obj["price"]["_ref"] == "/api/data/v1/private/PWR:price" and "data" not in obj["price"]
    written(client, {"_id": "PWR", "price": {"_type": "VarTimeSeries", "data": [{"time": "2024-03-03", "value": 12}]}})
    series = client.get("/api/data/v1/private/PWR:price", headers=auth()).get_json()
    assert [(p["time"][:10], p["value"]) for p in series["data"]] == [
        ("2024-03-01", 10.5),
        ("2024-03-02", 11.0),
        ("2024-03-03", 12),
    ]
    assert series["units"] == "EUR"
    summary = summaries(client, service="object", _sort="timestamp")[0]
    assert summary["summary"]["series"] == {"2024-03-01": ["PWR:price"], "2024-03-02": ["PWR:price"]}
    assert summary["message"] == "Updated 1 object, 1 series for 2024-03-01 to 2024-03-02"


def test_a_top_level_event_answers_the_object_it_wrote(client):
    written(client, {"_id": "PLANT", "name": "plant"})
    event = {"_type": "VarEvent", "_id": "o-1", "event": "PLANT:outages", "eventtime": "2024-01-01T06:00:00Z"}
    response = post(client, event)
    assert response.status_code == 201 and response.headers["Location"] == "/api/object/v1/private/PLANT"
    assert response.get_json()["outages"]["_ref"] == "/api/event/v1/private/PLANT:outages"
    missing = {**event, "event": "NOPE:outages"}
    assert "does not exist" in assert_error(post(client, missing), 422)["message"]


def test_other_tenants_and_environments_are_isolated(client):
    written(client, {"_id": "ISO", "v": "a"})
    written(client, {"_id": "ISO", "v": "b"}, headers=auth(tenant="tenant-b"))
    written(client, [{"_id": "ISO", "v": "test"}], headers=auth(environment="test"))
    assert get_object(client, "ISO")["v"] == "a" and get_object(client, "ISO")["_version"] == 1
    assert get_object(client, "ISO", headers=auth(tenant="tenant-b"))["v"] == "b"
    assert get_object(client, "ISO", headers=auth(environment="test"))["v"] == "test"
    assert len(summaries(client)) == 1
    assert summaries(client, headers=auth(environment="test"))[0]["environment"] == "test"
    get_object(client, "ISO", headers=auth(tenant="tenant-c"), status=404)


def test_readers_cannot_write_and_anonymous_callers_get_401(client):
    assert_error(post(client, {"_id": "X"}, headers=auth(roles=("batch.read",))), 403)
    assert_error(client.post("/api/object/v1/elsewhere", data=b"not json"), 401)
    get_object(client, "X", status=404)


def test_the_object_routes_are_documented(client):
    paths = client.get("/api/batch/openapi.json").get_json()["paths"]
    for path in ("/api/object", "/api/object/v1", "/api/object/v1/{source}"):
        operation = paths[path]["post"]
        assert {"201", "400", "401", "403", "413", "422"} <= set(operation["responses"])
        assert {p["name"] for p in operation["parameters"]} >= {"_replace", "_atomic", "_reason"}


# --- the real odsl SDK ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(db_url):
    server = start_live_server(db_url)
    yield server
    server.stop()


@pytest.fixture
def odsl(odsl_sdk, live_server, db_url):
    client = sdk_client(odsl_sdk, live_server, make_token(tenant="sdk-objects", user="sdk@example.com"))
    yield client
    truncate(db_url)


def test_sdk_update_object_single_and_array(odsl, capsys):
    odsl.update("object", "private", {"_id": "AAA.PYTHON", "name": "Example", "tags": ["a"]})
    assert capsys.readouterr().out.split() == ["201"]
    obj = odsl.get("object", "private", "AAA.PYTHON")
    assert isinstance(obj, dict), obj
    assert obj["name"] == "Example" and obj["_version"] == 1 and obj["_user"] == "sdk@example.com"

    odsl.update("object", "private", [{"_id": "AAA.PYTHON", "extra": 1}, {"_id": "BBB/PY:1", "name": "B"}])
    assert capsys.readouterr().out.split() == ["201"]
    obj = odsl.get("object", "private", "AAA.PYTHON")
    assert (obj["name"], obj["extra"], obj["_version"]) == ("Example", 1, 2)
    assert odsl.get("object", "private", "BBB/PY:1")["name"] == "B"

    odsl.update("object", "public", {"_id": "#SDK.PUBLIC", "v": 1})  # posts to /api/object like every update
    assert capsys.readouterr().out.split() == ["201"]
    assert odsl.get("object", "public", "#SDK.PUBLIC")["v"] == 1

    odsl.update("object", "private", {"_id": "AAA.PYTHON", "only": 1}, params={"_replace": "true"})
    assert capsys.readouterr().out.split() == ["201"]
    assert "name" not in odsl.get("object", "private", "AAA.PYTHON")

    written_by_sdk = odsl.list("batch", "all", params={"service": "object"})
    assert len(written_by_sdk) == 4 and all(s["service"] == "object" for s in written_by_sdk)


def test_sdk_prints_why_an_object_was_refused(odsl, capsys):
    odsl.update("object", "private", {"name": "no id"})
    out = capsys.readouterr().out
    assert "ODSL error 422: [422] element #0 has no _id" in out and out.strip().endswith("422")


# --- the request and the response, without HTTP -----------------------------------------------------


def test_object_write_request_wraps_the_body_as_an_object_batch():
    one = object_write_request(b'{"_id": "X", "name": "mine", "reason": "its own"}', replace="true", reason=None)
    assert (
        one.single and one.target == "X" and one.batch.elements == [{"_id": "X", "name": "mine", "reason": "its own"}]
    )
    assert (one.batch.service, one.batch.reason, one.batch.name, one.batch.replace) == (
        "object",
        "Update Object",
        None,
        True,
    )
    again = object_write_request(b'{"_id": "X", "name": "mine", "reason": "its own"}', replace="true")
    assert again.batch.id != one.batch.id  # every call a new batch
    many = object_write_request(b'[{"_id": "A"}, {"_id": "B"}]', source="private", atomic="1", reason="fix")
    assert not many.single and many.target is None and many.batch.size == 2
    assert (many.batch.source, many.batch.atomic, many.batch.reason) == ("private", True, "fix")
    event = object_write_request(b'{"_type": "VarEvent", "_id": "e", "event": "OBJ/1:log", "eventtime": "2024"}')
    assert event.target == "OBJ/1"


def test_a_retried_write_whose_commit_had_landed_still_answers_201():
    summary = {
        "_id": "b-1",
        "status": "warning",
        "message": "1 of 2 elements failed",
        "summary": {"failures": {"#1": "x"}},
    }
    replayed = summary_response(Outcome(REPLAYED, summary), replay_status=201)
    assert replayed.status_code == 201 and replayed.headers["Location"] == "/api/batch/v1/b-1"
    assert replayed.headers["x-odsl-failures"] == "1"
    assert summary_response(Outcome(REPLAYED, summary)).status_code == 200  # a batch's replay
