"""Crash atomicity: a worker killed mid-batch leaves nothing of that batch behind (SPEC §3.4)."""

from __future__ import annotations

import os
import signal
import threading
import time

import orjson
import pytest
import requests
from conftest import auth, db_rows, start_live_server

TENANT = "tenant-crash"
ELEMENTS = 50_000
IN_FLIGHT = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'batchsvc' "
    "AND state = 'active' AND query LIKE '%%EXECUTE batchsvc_upsert_objects(%%'"
)
BACKEND_ALIVE = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"


@pytest.fixture(scope="module")
def one_worker(db_url):
    server = start_live_server(db_url, workers=1)
    yield server
    server.stop()


def big_batch(batch_id: str) -> bytes:
    elements = [
        {"_id": f"{batch_id}/obj-{i:05d}", "name": f"object {i}", "value": i, "tags": ["a", "b"]}
        for i in range(ELEMENTS)
    ]
    return orjson.dumps({"_id": batch_id, "name": "crash test", "elements": elements})


def written_by(db_url: str, batch_id: str) -> tuple[int, int]:
    """(objects whose id belongs to the batch, summaries of it), read directly from the database."""
    return db_rows(
        db_url,
        "SELECT (SELECT count(*) FROM objects WHERE tenant = %(t)s AND id LIKE %(prefix)s), "
        "(SELECT count(*) FROM batch_summaries WHERE tenant = %(t)s AND id = %(id)s)",
        {"t": TENANT, "prefix": batch_id + "/%", "id": batch_id},
    )[0]


def wait_for(predicate, timeout: float, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def test_worker_killed_mid_batch_leaves_nothing(one_worker, db_url):
    headers = {**auth(tenant=TENANT), "Content-Type": "application/json"}
    for attempt in range(3):
        batch_id = f"crash-{attempt}"
        body = big_batch(batch_id)
        [worker] = one_worker.worker_pids()
        outcome = {}

        def send(body=body, outcome=outcome):
            try:
                outcome["response"] = requests.post(
                    one_worker.url + "/api/batch/v1", data=body, headers=headers, timeout=60
                )
            except requests.RequestException as exc:
                outcome["error"] = exc

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        backend = wait_for(lambda: db_rows(db_url, IN_FLIGHT), timeout=30, interval=0.005)
        if backend is None or "response" in outcome:
            sender.join(60)  # the batch finished before we caught it mid-write: try again
            continue
        os.kill(worker, signal.SIGKILL)
        sender.join(30)
        assert "error" in outcome, f"the request survived its worker: {outcome}"
        # The database backend notices the dead client and rolls back; wait until it is gone.
        backend_pid = backend[0][0]
        gone = wait_for(lambda pid=backend_pid: not db_rows(db_url, BACKEND_ALIVE, (pid,)), 30, 0.05)
        assert gone, "the killed worker's database session did not end"
        assert written_by(db_url, batch_id) == (0, 0)
        break
    else:
        pytest.fail("could not catch a 50,000-element batch in the middle of its INSERT in 3 attempts")

    # gunicorn replaces the worker and the service answers again, database included.
    assert wait_for(lambda: one_worker.worker_pids() not in ([], [worker]), timeout=30, interval=0.1)
    one_worker.wait_ready(timeout=30)
    assert requests.get(one_worker.url + "/readyz", timeout=10).status_code == 200
    retry = requests.post(one_worker.url + "/api/batch/v1", data=big_batch(batch_id), headers=headers, timeout=120)
    assert retry.status_code == 201, retry.text[:500]
    assert retry.json()["size"] == ELEMENTS
    assert written_by(db_url, batch_id) == (ELEMENTS, 1)
    db_rows(db_url, "DELETE FROM objects WHERE tenant = %s", (TENANT,))
    db_rows(db_url, "DELETE FROM batch_summaries WHERE tenant = %s", (TENANT,))
