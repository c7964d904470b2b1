"""Concurrent batches over shared objects: no 5xx, no deadlock, no lost update (SPEC §3.8-9)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests
from conftest import SECRET, auth, connect, db_rows, post_until_it_waits, start_live_server

from batchsvc import create_app

TENANT = "tenant-concurrency"
CLIENTS, BATCHES, SHARED = 8, 25, 20
SHARED_IDS = [f"shared-{i:02d}" for i in range(SHARED)]


@pytest.fixture(scope="module")
def two_workers(db_url):
    server = start_live_server(db_url, workers=2)
    yield server
    server.stop()
    for table in ("objects", "batch_summaries", "object_versions", "batch_changes"):
        db_rows(db_url, f"DELETE FROM {table} WHERE tenant = %s", (TENANT,))


def headers(environment: str) -> dict:
    return {**auth(tenant=TENANT, environment=environment), "Content-Type": "application/json"}


def client_batches(client: int, rng: random.Random) -> tuple[list[bytes], Counter]:
    """The bodies one client sends, and how many of them change each object (each makes one version)."""
    bodies, writes = [], Counter()
    for n in range(BATCHES):
        ids = SHARED_IDS[:]
        rng.shuffle(ids)
        ids += rng.sample(SHARED_IDS, 2)  # the same _id twice in a batch folds: still one version (§3.1, §12)
        ids.append(f"own-{client}")
        elements = [{"_id": ident, f"client{client}": n, "last": f"client{client}"} for ident in ids]
        bodies.append(orjson.dumps({"_id": f"c{client}-b{n:02d}", "elements": elements}))
        writes.update(set(ids))
    return bodies, writes


def test_concurrent_batches_on_shared_objects_lose_nothing(two_workers, db_url):
    environment = "concurrency"
    rng = random.Random(20240106)
    plans = [client_batches(client, rng) for client in range(CLIENTS)]
    expected = sum((writes for _, writes in plans), Counter())
    start = threading.Barrier(CLIENTS)

    def run(client: int) -> list[int]:
        session = requests.Session()
        start.wait(timeout=30)
        codes = []
        for body in plans[client][0]:
            response = session.post(
                two_workers.url + "/api/batch/v1", data=body, headers=headers(environment), timeout=60
            )
            codes.append(response.status_code)
        return codes

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(run, range(CLIENTS)))
    assert all(code == 201 for codes in results for code in codes), Counter(c for codes in results for c in codes)

    listed = requests.get(
        two_workers.url + "/api/object/v1/private", params={"_limit": 1000}, headers=headers(environment), timeout=30
    )
    objects = {o["_id"]: o for o in listed.json()}
    assert set(objects) == set(SHARED_IDS) | {f"own-{c}" for c in range(CLIENTS)}
    for ident in SHARED_IDS:
        obj = objects[ident]
        assert {f"client{c}": obj.get(f"client{c}") for c in range(CLIENTS)} == {
            f"client{c}": BATCHES - 1 for c in range(CLIENTS)
        }, ident
        assert obj["_version"] == expected[ident], ident
    for client in range(CLIENTS):
        assert objects[f"own-{client}"]["_version"] == BATCHES
    # every superseded version was archived exactly once, none lost to the concurrency (§12)
    archived = db_rows(
        db_url,
        "SELECT id, array_agg(version ORDER BY version) FROM object_versions "
        "WHERE tenant = %s AND environment = %s GROUP BY id",
        (TENANT, environment),
    )
    assert dict(archived) == {ident: list(range(1, o["_version"])) for ident, o in objects.items()}
    summaries = requests.get(
        two_workers.url + "/api/batch/v1", params={"_limit": 1000}, headers=headers(environment), timeout=30
    )
    assert summaries.headers["x-total-count"] == str(CLIENTS * BATCHES)
    assert {s["status"] for s in summaries.json()} == {"success"}


def test_concurrent_merge_and_replace_batches_never_surface_a_deadlock(two_workers):
    """Batches mixing merge and replace elements over shared ids: one ordered upsert, then the
    replaced documents set on rows the batch already holds."""
    environment = "mixed"
    rng = random.Random(7)
    writes, plans = Counter(), []
    for client in range(CLIENTS):
        bodies = []
        for n in range(10):
            ids = SHARED_IDS[:]
            rng.shuffle(ids)
            elements = [{"_id": i, "_replace": rng.random() < 0.5, f"client{client}": n} for i in ids]
            bodies.append(orjson.dumps({"_id": f"mixed-c{client}-b{n}", "elements": elements}))
            writes.update(ids)
        plans.append(bodies)
    start = threading.Barrier(CLIENTS)

    def run(client: int) -> list[int]:
        session = requests.Session()
        start.wait(timeout=30)
        url = two_workers.url + "/api/batch/v1"
        return [session.post(url, data=b, headers=headers(environment), timeout=60).status_code for b in plans[client]]

    with ThreadPoolExecutor(CLIENTS) as pool:
        codes = [code for result in pool.map(run, range(CLIENTS)) for code in result]
    assert codes == [201] * len(codes), Counter(codes)
    listed = requests.get(
        two_workers.url + "/api/object/v1/private", params={"_limit": 1000}, headers=headers(environment), timeout=30
    ).json()
    assert {o["_id"]: o["_version"] for o in listed} == dict(writes)


def test_same_batch_posted_twice_concurrently_applies_once(two_workers, db_url):
    environment = "duplicates"
    for round_ in range(6):
        body = orjson.dumps(
            {"_id": f"dup-{round_}", "elements": [{"_id": f"dup-obj-{round_}-{i}", "v": i} for i in range(200)]}
        )
        barrier = threading.Barrier(2)

        def send(_, body=body, barrier=barrier):
            barrier.wait(timeout=30)
            return requests.post(two_workers.url + "/api/batch/v1", data=body, headers=headers(environment), timeout=60)

        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(send, range(2))
        assert sorted([first.status_code, second.status_code]) == [200, 201], (first.text[:200], second.text[:200])
        assert first.json() == second.json()
        created = first if first.status_code == 201 else second
        assert created.headers["Location"] == f"/api/batch/v1/dup-{round_}"
        versions = db_rows(
            db_url,
            "SELECT DISTINCT version FROM objects WHERE tenant = %s AND environment = %s AND id LIKE %s",
            (TENANT, environment, f"dup-obj-{round_}-%"),
        )
        assert versions == [(1,)]
    # A third post later is still a replay; a different body under the id is a conflict.
    again = requests.post(two_workers.url + "/api/batch/v1", data=body, headers=headers(environment), timeout=30)
    assert again.status_code == 200
    other = orjson.dumps({"_id": "dup-5", "elements": [{"_id": "something-else"}]})
    conflict = requests.post(two_workers.url + "/api/batch/v1", data=other, headers=headers(environment), timeout=30)
    assert conflict.status_code == 409 and conflict.headers["x-odsl-error"].startswith("[409]")


# --- a real deadlock: retried, or 503 + Retry-After once the attempts run out ------------------------

DEADLOCK_TENANT = "tenant-deadlock"


def _deadlocked_post(db_url, attempts: int, release):
    """Post a batch over DL-A and DL-B while another session holds DL-B and then asks for DL-A.

    The batch locks DL-A, waits for DL-B and, having waited first, is the session whose deadlock
    check fires: PostgreSQL aborts the batch's transaction with 40P01. `release(connection)` ends
    the other session once it has DL-A (commit or rollback).
    """
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, "retry_attempts": attempts})
    client = app.test_client()
    headers = {**auth(tenant=DEADLOCK_TENANT), "Content-Type": "application/json"}
    seed = {"_id": "dl-seed", "elements": [{"_id": "DL-A", "v": 0}, {"_id": "DL-B", "v": 0}]}
    assert client.post("/api/batch/v1", data=orjson.dumps(seed), headers=headers).status_code == 201
    other = connect(db_url)
    try:
        with other.cursor() as cur:
            # This session must never be the deadlock's victim, however late the batch's own check
            # runs on a loaded machine: it checks only after 20 s (superuser setting; tests connect as one).
            cur.execute("SET deadlock_timeout = '20s'")
            cur.execute("SELECT 1 FROM objects WHERE tenant = %s AND id = 'DL-B' FOR UPDATE", (DEADLOCK_TENANT,))
        body = orjson.dumps({"_id": "dl-batch", "elements": [{"_id": "DL-A", "v": 1}, {"_id": "DL-B", "v": 1}]})
        sender, outcome, _ = post_until_it_waits(client, body, headers, db_url, "DL-B")
        with other.cursor() as cur:
            cur.execute("SELECT 1 FROM objects WHERE tenant = %s AND id = 'DL-A' FOR UPDATE", (DEADLOCK_TENANT,))
        release(other)
        sender.join(30)
        return outcome["response"], client, headers
    finally:
        other.close()
        app.extensions["batchsvc"].database.dispose()


def _versions(db_url):
    return dict(db_rows(db_url, "SELECT id, version FROM objects WHERE tenant = %s", (DEADLOCK_TENANT,)))


def test_a_deadlocked_batch_is_retried_and_applied(db_url):
    try:
        response, _, _ = _deadlocked_post(db_url, attempts=5, release=lambda other: other.rollback())
        assert response.status_code == 201, response.get_data(as_text=True)
        assert _versions(db_url) == {"DL-A": 2, "DL-B": 2}
    finally:
        for table in ("objects", "batch_summaries", "object_versions", "batch_changes"):
            db_rows(db_url, f"DELETE FROM {table} WHERE tenant = %s", (DEADLOCK_TENANT,))


def test_a_deadlock_past_the_last_attempt_is_503_with_retry_after(db_url):
    try:
        response, client, headers = _deadlocked_post(db_url, attempts=1, release=lambda other: other.rollback())
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "1"
        assert response.headers["x-odsl-error"].startswith("[503] ")
        assert "retry later" in response.get_json()["message"]
        assert _versions(db_url) == {"DL-A": 1, "DL-B": 1}  # nothing of the batch was written
        assert client.get("/api/batch/v1/dl-batch", headers=headers).status_code == 404
    finally:
        for table in ("objects", "batch_summaries", "object_versions", "batch_changes"):
            db_rows(db_url, f"DELETE FROM {table} WHERE tenant = %s", (DEADLOCK_TENANT,))
