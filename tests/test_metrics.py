"""GET /metrics (SPEC §13): values summed over gunicorn workers, the token rule, retries and the pool gauge."""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import time

import orjson
import pytest
import requests
from conftest import ERROR_KEYS, SECRET, auth, connect, db_rows, post_until_it_waits, start_live_server
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from batchsvc import create_app
from batchsvc.core.identity import Scope

TENANT = "tenant-metrics"
METRICS_TOKEN = "scrape-token-0123456789"


def samples(text: str) -> dict[tuple, float]:
    """Every sample of an exposition text, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def cleanup(db_url: str) -> None:
    db_rows(db_url, "DELETE FROM objects WHERE tenant = %s", (TENANT,))
    db_rows(db_url, "DELETE FROM batch_summaries WHERE tenant = %s", (TENANT,))


HEADERS = {**auth(tenant=TENANT), "Content-Type": "application/json"}


def post(url: str, batch_id: str, elements: list) -> requests.Response:
    # A fresh connection per batch, so gunicorn hands them to either worker.
    body = orjson.dumps({"_id": batch_id, "elements": elements})
    return requests.post(url + "/api/batch/v1", data=body, headers={**HEADERS, "Connection": "close"}, timeout=30)


def batches_by_worker(metrics_dir: str) -> dict[int, float]:
    """batchsvc_batches_total of each worker, read from its own file of the multiprocess directory."""
    counts = {}
    for path in glob.glob(os.path.join(metrics_dir, "counter_*.db")):
        pid = int(os.path.basename(path)[len("counter_") : -len(".db")])
        total = sum(
            s.value
            for family in multiprocess.MultiProcessCollector.merge([path])
            if family.name == "batchsvc_batches"
            for s in family.samples
            if s.name == "batchsvc_batches_total"
        )
        if total:
            counts[pid] = total
    return counts


@pytest.fixture
def metrics_dir(tmp_path):
    return str(tmp_path / "prometheus")


def test_metrics_count_batches_of_every_worker(db_url, metrics_dir):
    """3 successful and 1 failed batch (then more until both workers have served some) across 2
    workers: one scrape shows every worker's counts summed; a worker that dies keeps its counts
    but loses its live gauge."""
    os.makedirs(metrics_dir)
    server = start_live_server(db_url, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": metrics_dir})
    try:
        element = lambda i: {"_id": f"M-{i}", "v": i}  # noqa: E731
        statuses = [post(server.url, f"m-ok-{i}", [element(i), element(i + 100)]).status_code for i in range(3)]
        statuses.append(post(server.url, "m-failed", [{"no_id": True}]).status_code)
        assert statuses == [201, 201, 201, 422]
        successes, elements = 3, 7
        while len(batches_by_worker(metrics_dir)) < 2:
            assert successes < 60, "every batch went to the same worker"
            assert post(server.url, f"m-more-{successes}", [element(successes)]).status_code == 201
            successes, elements = successes + 1, elements + 1
        per_worker = batches_by_worker(metrics_dir)
        assert sorted(per_worker) == sorted(server.worker_pids()) and sum(per_worker.values()) == successes + 1

        response = requests.get(server.url + "/metrics", timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
        found = samples(response.text)
        assert value(found, "batchsvc_batches_total", status="success") == successes
        assert value(found, "batchsvc_batches_total", status="failed") == 1
        assert value(found, "batchsvc_batches_total", status="warning") == 0
        assert value(found, "batchsvc_batch_elements_count") == successes + 1
        assert value(found, "batchsvc_batch_elements_sum") == elements
        assert value(found, "batchsvc_batch_duration_seconds_count") == successes + 1
        assert value(found, "batchsvc_batch_duration_seconds_bucket", le="+Inf") == successes + 1
        route = {"method": "POST", "route": "/api/batch/v1"}
        assert value(found, "batchsvc_http_requests_total", status="201", **route) == successes
        assert value(found, "batchsvc_http_requests_total", status="422", **route) == 1
        assert value(found, "batchsvc_http_request_duration_seconds_count", **route) == successes + 1
        for cause in ("deadlock", "serialization", "lock_timeout", "connection_lost"):
            assert value(found, "batchsvc_db_retries_total", cause=cause) == 0
        assert ("batchsvc_db_pool_connections_in_use", ()) in found
        # Labels carry route templates, never raw paths, tenants or users.
        labels = {v for key in found for _, v in key[1]}
        assert TENANT not in labels and "loader@example.com" not in labels
        assert all("m-ok" not in label for label in labels)

        # Unknown routes are one series, whatever the path.
        for path in ("/no/such/thing", "/another-unknown"):
            assert requests.get(server.url + path, timeout=10).status_code == 404
        assert requests.get(server.url + "/api/batch/v1/m-ok-0", headers=HEADERS, timeout=10).status_code == 200
        found = samples(requests.get(server.url + "/metrics", timeout=10).text)
        assert value(found, "batchsvc_http_requests_total", method="GET", route="<unmatched>", status="404") == 2
        assert (
            value(found, "batchsvc_http_requests_total", method="GET", route="/api/batch/v1/<ref>", status="200") == 1
        )

        # A worker that exits: its counts stay, its live gauge file is removed (child_exit).
        victim = server.worker_pids()[0]
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(metrics_dir, f"gauge_livesum_{victim}.db")):
            assert time.monotonic() < deadline, "the pool gauge was never written"
            requests.get(server.url + "/healthz", headers={"Connection": "close"}, timeout=10)
            time.sleep(0.2)
        os.kill(victim, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while victim in server.worker_pids() or len(server.worker_pids()) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the worker"
            time.sleep(0.1)
        assert not os.path.exists(os.path.join(metrics_dir, f"gauge_livesum_{victim}.db"))
        assert os.path.exists(os.path.join(metrics_dir, f"counter_{victim}.db"))
        found = samples(requests.get(server.url + "/metrics", timeout=10).text)
        assert value(found, "batchsvc_batches_total", status="success") == successes
        assert value(found, "batchsvc_batches_total", status="failed") == 1
    finally:
        server.stop()
        cleanup(db_url)


def test_gunicorn_gets_a_fresh_metrics_directory_and_removes_it(db_url):
    """Without PROMETHEUS_MULTIPROC_DIR, gunicorn.conf.py makes one per master start."""
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    server = start_live_server(db_url, workers=1)
    try:
        healthz = {"method": "GET", "route": "/healthz", "status": "200"}
        before = value(samples(requests.get(server.url + "/metrics", timeout=10).text), "batchsvc_http_requests_total", **healthz)  # fmt: skip
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert value(samples(text), "batchsvc_http_requests_total", **healthz) == before + 1
        (worker,) = server.worker_pids()
        found = [
            os.path.dirname(path)
            for parent in ("/dev/shm", tempfile.gettempdir())
            for path in glob.glob(os.path.join(parent, "batchsvc-metrics-*", f"counter_{worker}.db"))
        ]
        (own,) = found
    finally:
        server.stop()
    assert not os.path.exists(own)


def test_metrics_token_is_required_when_set(db_url):
    client = create_app({"database_url": db_url, "jwt_secret": SECRET, "metrics_token": METRICS_TOKEN}).test_client()
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        auth(),  # a valid JWT is not the metrics token
    ):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        body = response.get_json()
        assert set(body) == ERROR_KEYS and body["code"] == 401
        assert response.headers["x-odsl-error"].startswith("[401] ")
        assert METRICS_TOKEN not in response.get_data(as_text=True)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200 and "batchsvc_http_requests_total" in response.get_data(as_text=True)
    # Without the setting the endpoint is open.
    open_client = create_app({"database_url": db_url, "jwt_secret": SECRET}).test_client()
    assert open_client.get("/metrics").status_code == 200


def _scrape(client) -> dict:
    return samples(client.get("/metrics").get_data(as_text=True))


def test_pool_gauge_counts_connections_in_use(db_url):
    app = create_app({"database_url": db_url, "jwt_secret": SECRET})
    client = app.test_client()
    database = app.extensions["batchsvc"].database
    try:
        idle = value(_scrape(client), "batchsvc_db_pool_connections_in_use")
        with app.extensions["batchsvc"].store.batch_transaction(Scope("t", "e"))():
            assert value(_scrape(client), "batchsvc_db_pool_connections_in_use") == idle + 1
        assert value(_scrape(client), "batchsvc_db_pool_connections_in_use") == idle
    finally:
        database.dispose()


def test_a_deadlock_retry_is_counted(db_url):
    from test_concurrency import DEADLOCK_TENANT, _deadlocked_post

    probe = create_app({"database_url": db_url, "jwt_secret": SECRET}).test_client()
    before = _scrape(probe)
    try:
        response, client, _ = _deadlocked_post(db_url, attempts=5, release=lambda other: other.rollback())
        assert response.status_code == 201
        after = _scrape(client)
        assert value(after, "batchsvc_db_retries_total", cause="deadlock") == (
            value(before, "batchsvc_db_retries_total", cause="deadlock") + 1
        )
        assert value(after, "batchsvc_db_retries_total", cause="connection_lost") == value(
            before, "batchsvc_db_retries_total", cause="connection_lost"
        )
    finally:
        db_rows(db_url, "DELETE FROM objects WHERE tenant = %s", (DEADLOCK_TENANT,))
        db_rows(db_url, "DELETE FROM batch_summaries WHERE tenant = %s", (DEADLOCK_TENANT,))


def test_a_lost_connection_retry_is_counted(db_url):
    """The batch's backend is terminated while it waits for a row lock: retried on a fresh connection."""
    app = create_app({"database_url": db_url, "jwt_secret": SECRET})
    client = app.test_client()
    headers = {**HEADERS}
    assert client.post("/api/batch/v1", data=orjson.dumps({"_id": "lost-seed", "elements": [{"_id": "LOST"}]}), headers=headers).status_code == 201  # fmt: skip
    before = _scrape(client)
    other = connect(db_url)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT 1 FROM objects WHERE tenant = %s AND id = 'LOST' FOR UPDATE", (TENANT,))
        body = orjson.dumps({"_id": "lost-batch", "elements": [{"_id": "LOST", "v": 1}]})
        sender, outcome, pids = post_until_it_waits(client, body, headers, db_url, "the row lock")
        db_rows(db_url, "SELECT pg_terminate_backend(%s)", (pids[0],))
        time.sleep(0.2)
        other.rollback()
        sender.join(30)
        assert outcome["response"].status_code == 201, outcome["response"].get_data(as_text=True)
        after = _scrape(client)
        assert value(after, "batchsvc_db_retries_total", cause="connection_lost") == (
            value(before, "batchsvc_db_retries_total", cause="connection_lost") + 1
        )
    finally:
        other.close()
        app.extensions["batchsvc"].database.dispose()
        cleanup(db_url)
