"""Request logs and request ids (SPEC §13): one line per request, matched by X-Request-Id, no secrets."""

from __future__ import annotations

import json
import time
import uuid

import orjson
import pytest
import requests
from conftest import ERROR_KEYS, SECRET, auth, db_rows, make_token, start_live_server

from batchsvc import create_app
from batchsvc.logs import flush_request_log

TENANT = "tenant-logging"
USER = "logger@example.com"
BODY_MARKER = "body-text-that-must-never-be-logged"


def logged(capsys):
    """What the app wrote so far: request lines are written by a thread of their own, so wait for them."""
    flush_request_log()
    return capsys.readouterr()


def cleanup(db_url: str) -> None:
    db_rows(db_url, "DELETE FROM objects WHERE tenant = %s", (TENANT,))
    db_rows(db_url, "DELETE FROM batch_summaries WHERE tenant = %s", (TENANT,))


def request_lines(text: str) -> dict[str, dict]:
    """The request log lines by request id; every line on stdout must be one JSON object."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {line["request_id"]: line for line in lines if line.get("logger") == "batchsvc.request"}


def wait_for_lines(server, ids: set[str], timeout: float = 10) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = request_lines(server.stdout())
        if ids <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def logged_server(db_url):
    server = start_live_server(db_url, workers=2, capture_stdout=True)
    yield server
    server.stop()
    cleanup(db_url)


def test_every_request_is_one_json_line_found_by_its_request_id(logged_server):
    token = make_token(tenant=TENANT, user=USER)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ok = orjson.dumps({"_id": "log-ok", "elements": [{"_id": "L1", "note": BODY_MARKER}, {"_id": "L2"}]})
    failed = orjson.dumps({"_id": "log-failed", "elements": [{"_id": "L3", "note": BODY_MARKER}, {"x": 1}]})
    url = logged_server.url
    sent = {
        "log-ok": requests.post(url + "/api/batch/v1", data=ok, headers={**headers, "X-Request-Id": "log-ok"}),
        "log-warning": requests.post(
            url + "/api/batch/v1", data=failed, headers={**headers, "X-Request-Id": "log-warning"}
        ),
        "log-replay": requests.post(url + "/api/batch/v1", data=ok, headers={**headers, "X-Request-Id": "log-replay"}),
        "log-get": requests.get(url + "/api/batch/v1/log-ok", headers={**headers, "X-Request-Id": "log-get"}),
        "log-404": requests.get(url + "/no/such/route", headers={"X-Request-Id": "log-404"}),
        "log-401": requests.get(
            url + "/api/batch/v1", headers={"Authorization": "Bearer not-a-jwt", "X-Request-Id": "log-401"}
        ),
    }
    assert {rid: r.status_code for rid, r in sent.items()} == {
        "log-ok": 201,
        "log-warning": 201,
        "log-replay": 200,
        "log-get": 200,
        "log-404": 404,
        "log-401": 401,
    }
    for rid, response in sent.items():
        assert response.headers["X-Request-Id"] == rid
    lines = wait_for_lines(logged_server, set(sent))
    assert set(sent) <= set(lines)

    ok_line = lines["log-ok"]
    assert ok_line["level"] == "INFO" and ok_line["time"].endswith("Z")
    assert ok_line["method"] == "POST" and ok_line["route"] == "/api/batch/v1" and ok_line["status"] == 201
    assert isinstance(ok_line["duration_ms"], float | int) and ok_line["duration_ms"] > 0
    assert ok_line["tenant"] == TENANT and ok_line["user"] == USER
    assert ok_line["batch_id"] == "log-ok" and ok_line["batch_status"] == "success"
    assert (ok_line["elements"], ok_line["elements_ok"], ok_line["elements_failed"]) == (2, 2, 0)
    assert ok_line["replayed"] is False

    warning = lines["log-warning"]
    assert warning["batch_status"] == "warning" and warning["status"] == 201
    assert (warning["elements"], warning["elements_ok"], warning["elements_failed"]) == (2, 1, 1)
    assert lines["log-replay"]["replayed"] is True and lines["log-replay"]["status"] == 200

    assert lines["log-get"]["route"] == "/api/batch/v1/<ref>" and "batch_id" not in lines["log-get"]
    assert lines["log-404"]["route"] == "<unmatched>" and lines["log-404"]["status"] == 404
    assert "tenant" not in lines["log-404"]
    assert lines["log-401"]["status"] == 401 and "user" not in lines["log-401"]

    everything = logged_server.stdout() + logged_server.log()
    assert token not in everything and "not-a-jwt" not in everything and SECRET not in everything
    assert BODY_MARKER not in everything


def test_gunicorns_own_lines_are_json_too(logged_server):
    lines = [json.loads(line) for line in logged_server.log().splitlines() if line.startswith("{")]
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    # gunicorn's access log is off: the request lines are the access log, not doubled.
    stdout = [json.loads(line) for line in logged_server.stdout().splitlines() if line.strip()]
    assert stdout and {line["logger"] for line in stdout} == {"batchsvc.request"}


# --- in process: errors, text format, request ids -------------------------------------------------


def _boom_app(db_url, **config):
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, **config})

    @app.get("/boom")
    def boom():
        raise RuntimeError("something broke inside")

    return app


def test_an_error_logs_its_stack_trace_with_the_request_id(db_url, capsys):
    client = _boom_app(db_url).test_client()
    logged(capsys)
    response = client.get("/boom", headers={"X-Request-Id": "boom-1"})
    assert response.status_code == 500
    assert response.get_json()["requestId"] == "boom-1" and response.headers["X-Request-Id"] == "boom-1"
    assert "something broke" not in response.get_data(as_text=True)  # no stack trace reaches the client
    captured = logged(capsys)
    records = [json.loads(line) for line in (captured.out + captured.err).splitlines() if line.startswith("{")]
    error = next(r for r in records if r["logger"] == "batchsvc.api.errors")
    # Errors go to stderr (beside gunicorn's error log), request lines to stdout (the access log).
    assert '"logger":"batchsvc.api.errors"' in captured.err and "batchsvc.api.errors" not in captured.out
    assert '"logger":"batchsvc.request"' in captured.out
    assert error["request_id"] == "boom-1" and error["level"] == "ERROR"
    assert "Traceback" in error["exc_info"] and "RuntimeError: something broke inside" in error["exc_info"]
    request_line = next(r for r in records if r["logger"] == "batchsvc.request")
    assert request_line["request_id"] == "boom-1" and request_line["status"] == 500
    assert request_line["level"] == "ERROR" and request_line["route"] == "/boom"


def test_text_format_puts_the_same_fields_on_one_plain_line(db_url, capsys):
    app = _boom_app(db_url, log_format="text")
    client = app.test_client()
    logged(capsys)
    headers = {**auth(tenant=TENANT, user=USER), "X-Request-Id": "text-1", "Content-Type": "application/json"}
    body = orjson.dumps({"_id": "log-text", "elements": [{"_id": "T1", "note": BODY_MARKER}]})
    try:
        assert client.post("/api/batch/v1", data=body, headers=headers).status_code == 201
        out = logged(capsys).out
        (line,) = [line for line in out.splitlines() if "request_id=text-1" in line]
        assert line.split()[1:4] == ["INFO", "batchsvc.request", "request"]
        for field in (
            "method=POST",
            "route=/api/batch/v1",
            "status=201",
            f"tenant={TENANT}",
            f"user={USER}",
            "batch_id=log-text",
            "batch_status=success",
            "elements=1",
            "elements_ok=1",
            "elements_failed=0",
        ):
            assert f" {field}" in line, field
        assert " duration_ms=" in line and not line.startswith("{")
        assert BODY_MARKER not in out and headers["Authorization"].split()[1] not in out

        assert client.get("/boom", headers={"X-Request-Id": "text-boom"}).status_code == 500
        err = logged(capsys).err
        assert "ERROR batchsvc.api.errors unhandled error request_id=text-boom\nTraceback" in err
    finally:
        create_app({"database_url": db_url, "jwt_secret": SECRET})  # back to the default (json) logging
        cleanup(db_url)


def test_request_id_is_echoed_or_generated(client):
    accepted = ["a", "abc-123", "A.b_c:d-e", "x" * 128, str(uuid.uuid4())]
    for rid in accepted:
        response = client.get("/healthz", headers={"X-Request-Id": rid})
        assert response.headers["X-Request-Id"] == rid
    generated = set()
    for headers in ({}, *({"X-Request-Id": bad} for bad in ("", "x" * 129, "has space", "semi;colon", "ünï", "a/b"))):
        rid = client.get("/healthz", headers=headers).headers["X-Request-Id"]
        assert str(uuid.UUID(rid)) == rid and rid != headers.get("X-Request-Id")
        generated.add(rid)
    assert len(generated) == 7  # a new one every time


def test_every_error_body_carries_the_request_id(client):
    too_many = orjson.dumps({"elements": [{"_id": "x"}] * 50_001})
    cases = [
        (404, "get", "/no/such/route", {}),  # an unknown route
        (405, "delete", "/healthz", {}),
        (401, "get", "/api/batch/v1", {}),
        (400, "post", "/api/batch/v1", {"data": b"{not json", "headers": auth()}),
        (413, "post", "/api/batch/v1", {"data": too_many, "headers": auth()}),
    ]
    for status, method, path, kwargs in cases:
        headers = {**kwargs.pop("headers", {}), "X-Request-Id": f"err-{status}"}
        response = getattr(client, method)(path, headers=headers, **kwargs)
        assert response.status_code == status
        body = response.get_json()
        assert set(body) == ERROR_KEYS
        assert body["requestId"] == headers["X-Request-Id"] == response.headers["X-Request-Id"]
    response = client.get("/no/such/route", headers={"X-Request-Id": "bad id!"})
    assert response.get_json()["requestId"] == response.headers["X-Request-Id"] != "bad id!"


def test_without_request_observation_requests_still_get_ids_and_answers(db_url, capsys):
    """The benchmark's baseline (observe_requests off): same answers and ids, no log line, no metric."""
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, "observe_requests": False})
    client = app.test_client()
    counted = 'batchsvc_http_requests_total{method="GET",route="/api/batch",status="200"}'

    def count() -> str:
        return next((line for line in client.get("/metrics").get_data(as_text=True).splitlines() if line.startswith(counted)), "")  # fmt: skip

    before = count()
    logged(capsys)
    response = client.get("/api/batch", headers={**auth(), "X-Request-Id": "quiet-1"})
    assert response.status_code == 200 and response.get_json()["service"] == "batch"
    assert response.headers["X-Request-Id"] == "quiet-1"
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.get_json()["requestId"] == missing.headers["X-Request-Id"]
    assert "quiet-1" not in logged(capsys).out
    assert count() == before
