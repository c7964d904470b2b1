"""Contract rules every route shares: credentials first, error headers, stored text, element types."""

from __future__ import annotations

import re

import orjson
import pytest
from conftest import auth, db_rows
from flask import Flask

from batchsvc.api.access import Blueprint, check_declarations

READER = auth(roles=("batch.read",))

# Every route of the API, each with something else wrong too (bad source, bad body, unknown id).
ANONYMOUS_CALLS = [
    ("GET", "/api/batch", None),
    ("POST", "/api/batch/v1/not-a-source", b'{"elements":[{"_id":"a"}]}'),
    ("POST", "/api/batch/v1", b"not json"),
    ("POST", "/api/batch", b"[]"),
    ("GET", "/api/batch/v1?_limit=-1", None),
    ("GET", "/api/batch/v1/nope/some-id", None),
    ("DELETE", "/api/batch/v1/absent", None),
    ("GET", "/api/object/v1/not-a-source", None),
    ("GET", "/api/object/v1/private/X?_reason=%00", None),
    ("GET", "/api/data/v1/private/X:p?_range=garbage", None),
    ("GET", "/api/event/v1/bogus/X:list", None),
    ("GET", "/api/no-such-route", None),
    ("PUT", "/api/batch/v1", b"{}"),
]


@pytest.mark.parametrize(("method", "path", "body"), ANONYMOUS_CALLS, ids=[f"{m} {p}" for m, p, _ in ANONYMOUS_CALLS])
def test_anonymous_callers_get_401_before_anything_else(client, method, path, body):
    response = client.open(path, method=method, data=body)
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True)[:200])
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["x-odsl-error"].startswith("[401] ")
    assert "source" not in response.get_json()["message"]


def test_build_info_needs_a_token(client):
    assert client.get("/api/batch").status_code == 401
    info = client.get("/api/batch", headers=READER)
    assert info.status_code == 200
    assert set(info.get_json()) == {"service", "release", "version", "build"}


def test_a_reader_is_refused_before_the_source_is_checked(client):
    response = client.post("/api/batch/v1/not-a-source", data=b'{"elements":[{"_id":"a"}]}', headers=READER)
    assert response.status_code == 403


def test_health_docs_and_openapi_stay_open(client):
    for path in ("/healthz", "/readyz", "/api/batch/openapi.json"):
        assert client.get(path).status_code == 200, path
    spec = client.get("/api/batch/openapi.json").get_json()
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    submit = spec["paths"]["/api/batch/v1"]["post"]
    assert "security" not in submit and {"401", "403"} <= set(submit["responses"])  # the global bearer applies


def test_an_operation_without_an_access_declaration_stops_the_app():
    app = Flask(__name__)
    blp = Blueprint("careless", __name__, url_prefix="/api/careless")

    @blp.route("/open")
    def forgotten():
        return "oops"

    app.register_blueprint(blp)
    with pytest.raises(RuntimeError, match="GET /api/careless/open declares no access"):
        check_declarations(app)


def test_a_failed_batch_answers_422_with_x_odsl_error(client):
    response = client.post("/api/batch/v1", data=b'{"elements":[{"v":1},{"_id":""}]}', headers=auth())
    assert response.status_code == 422
    assert response.get_json()["status"] == "failed"
    assert response.headers["x-odsl-error"] == "[422] 2 of 2 elements failed"


def test_a_warning_batch_says_how_many_failed(client):
    body = orjson.dumps({"elements": [{"_id": "ok"}, {"v": 1}, {"_id": 5}]})
    response = client.post("/api/batch/v1", data=body, headers=auth())
    assert response.status_code == 201 and response.get_json()["status"] == "warning"
    assert response.headers["x-odsl-failures"] == "2"
    assert "x-odsl-failures" not in client.post("/api/batch/v1", data=b'[{"_id":"fine"}]', headers=auth()).headers


@pytest.mark.parametrize(
    "path",
    [
        "/api/batch/v1?_reason=%00x",
        "/api/batch/v1?_reason=a%00",
        "/api/batch/v1?%00=1",
    ],
)
def test_nul_in_a_query_parameter_is_400_and_writes_nothing(client, db_url, path):
    response = client.post(path, data=b'{"elements":[{"_id":"nul-reason"}]}', headers=auth())
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "\\u0000" in response.get_json()["message"] and "query parameter" in response.get_json()["message"]
    assert db_rows(db_url, "SELECT count(*) FROM objects") == [(0,)]
    assert db_rows(db_url, "SELECT count(*) FROM batch_summaries") == [(0,)]


@pytest.mark.parametrize(
    "path",
    [
        "/api/batch/v1?_search=%00",
        "/api/batch/v1?name=a%00b",
        "/api/object/v1/all?_search=x%00",
        "/api/object/v1/private/a%00b",
        "/api/batch/v1/private/a%00b",
        "/api/data/v1/private/A:p%00",
        "/api/data/v1/private/A:p?_range=from(2024-01-01%00)",
        "/api/event/v1/private/A:l%00",
    ],
)
def test_nul_anywhere_in_a_read_is_400_not_500(client, path):
    response = client.get(path, headers=auth())
    assert response.status_code == 400, (path, response.status_code, response.get_data(as_text=True)[:200])
    assert response.headers["x-odsl-error"].startswith("[400] ")


def test_reason_over_256_characters_is_400(client, db_url):
    response = client.post("/api/batch/v1?_reason=" + "r" * 257, data=b'[{"_id":"long"}]', headers=auth())
    assert response.status_code == 400 and "_reason" in response.get_json()["message"]
    assert db_rows(db_url, "SELECT count(*) FROM objects") == [(0,)]


@pytest.mark.parametrize("bad_type", [None, 5, True, ["x"], {"a": 1}])
def test_a_non_string_element_type_is_an_element_failure(client, db_url, bad_type):
    body = orjson.dumps({"elements": [{"_id": "typed", "_type": bad_type, "v": 1}, {"_id": "fine"}]})
    response = client.post("/api/batch/v1", data=body, headers=auth())
    assert response.status_code == 201
    assert response.get_json()["summary"]["failures"] == {"typed": "_type must be a string"}
    assert client.get("/api/object/v1/private/typed", headers=auth()).status_code == 404
    assert db_rows(db_url, "SELECT id FROM objects") == [("fine",)]


def test_numbers_past_64_bit_integers_read_back_as_sent(client):
    # PostgreSQL prints a stored 1e20 as 100000000000000000000: it must not come back as an
    # integer orjson cannot serialise (a 500 on every read of the object, found by schemathesis).
    body = b'[{"_id":"big","a":1e20,"b":18446744073709551616,"c":-1e300,"d":9007199254740993}]'
    assert client.post("/api/batch/v1", data=body, headers=auth()).status_code == 201
    for response in (
        client.get("/api/object/v1/private/big", headers=auth()),
        client.get("/api/object/v1/all", headers=auth()),
    ):
        assert response.status_code == 200, response.get_data(as_text=True)[:200]
        stored = response.get_json() if isinstance(response.get_json(), dict) else response.get_json()[0]
        assert (stored["a"], stored["b"], stored["c"]) == (1e20, 18446744073709551616.0, -1e300)
        assert stored["d"] == 9007199254740993  # within 64 bits: still the exact integer


@pytest.mark.parametrize("route", ["/api/batch/v1", "/api/object/v1/all", "/api/batch/v1/private"])
def test_the_documented_sort_pattern_admits_exactly_the_sortable_fields(client, route):
    spec = client.get("/api/batch/openapi.json").get_json()
    path = {"/api/batch/v1": "/api/batch/v1", "/api/object/v1/all": "/api/object/v1/{source}"}.get(
        route, "/api/batch/v1/{ref}"
    )
    sort = next(p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "_sort")
    pattern = re.compile(sort["schema"]["pattern"])
    for value in ("-_id", "_id, -_id", '{"_id": -1}', "A", '{"A":1}', "", '{\x0b"_id":1}'):
        documented = bool(pattern.match(value))
        answered = client.get(route, query_string={"_sort": value}, headers=auth()).status_code
        assert answered == (200 if documented else 400), (value, answered)


def test_list_parameters_on_the_summary_by_id_route_are_checked(client):
    client.post("/api/batch/v1", data=b'{"_id":"one","elements":[{"_id":"a"}]}', headers=auth())
    assert client.get("/api/batch/v1/one?_sort=-timestamp", headers=auth()).status_code == 200
    assert client.get("/api/batch/v1/one?_sort=null", headers=auth()).status_code == 400
    assert client.get("/api/batch/v1/one?_limit=0", headers=auth()).status_code == 400
