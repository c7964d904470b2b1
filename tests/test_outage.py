"""Database outages: 503 with the error shape while down, recovery without a restart (SPEC §7)."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests
from conftest import ERROR_KEYS, SECRET, LiveServer, auth, db_rows, free_port, start_live_server
from sqlalchemy import text
from sqlalchemy.engine import make_url

from batchsvc import create_app
from batchsvc.config import normalise_database_url
from batchsvc.db import Database

TENANT = "tenant-outage"
HEADERS = {**auth(tenant=TENANT), "Content-Type": "application/json"}
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = 'batchsvc' AND pid <> pg_backend_pid()"
)


class CuttableProxy:
    """A TCP proxy on loopback in front of PostgreSQL that a test can cut and restore."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> CuttableProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the proxy is cut
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        """Refuse new connections and drop every open one, like a database going away."""
        if self._listener is not None:
            self._close(self._listener)
            self._listener = None
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            self._close(sock)

    def restore(self) -> None:
        self.start()


@pytest.fixture
def proxy():
    proxy = CuttableProxy(("127.0.0.1", 5432)).start()
    yield proxy
    proxy.cut()


@pytest.fixture
def server_behind_proxy(db_url, proxy):
    url = make_url(db_url)
    proxy.upstream = (url.host or "127.0.0.1", url.port or 5432)
    server = start_live_server(url.set(port=proxy.port).render_as_string(hide_password=False), workers=1)
    try:
        yield server
    finally:
        server.stop()
        cleanup(db_url)


def cleanup(db_url: str) -> None:
    db_rows(db_url, "DELETE FROM objects WHERE tenant = %s", (TENANT,))
    db_rows(db_url, "DELETE FROM batch_summaries WHERE tenant = %s", (TENANT,))


def post_batch(server: LiveServer, batch_id: str) -> requests.Response:
    body = orjson.dumps({"_id": batch_id, "elements": [{"_id": f"{batch_id}-obj", "v": 1}]})
    return requests.post(server.url + "/api/batch/v1", data=body, headers=HEADERS, timeout=20)


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == ERROR_KEYS and body["code"] == 503
    assert "database" in body["message"]
    assert response.headers["x-odsl-error"].startswith("[503] ")
    assert "Traceback" not in response.text and "psycopg2" not in response.text


def test_outage_answers_503_and_recovers_without_restart(server_behind_proxy, proxy, db_url):
    server = server_behind_proxy
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    assert post_batch(server, "before-outage").status_code == 201
    assert requests.get(server.url + "/api/batch/v1", headers=HEADERS, timeout=10).status_code == 200
    workers = server.worker_pids()

    proxy.cut()
    started = time.monotonic()
    assert_unavailable(requests.get(server.url + "/readyz", timeout=20))
    assert_unavailable(post_batch(server, "during-outage"))
    assert_unavailable(requests.get(server.url + "/api/batch/v1", headers=HEADERS, timeout=20))
    assert_unavailable(requests.get(server.url + "/api/object/v1/private", headers=HEADERS, timeout=20))
    assert_unavailable(requests.get(server.url + "/api/batch/v1/before-outage", headers=HEADERS, timeout=20))
    assert time.monotonic() - started < 15, "an outage must be reported promptly, not after long timeouts"
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200  # liveness needs no database

    proxy.restore()
    # The very next requests succeed: no restart, the pool reconnects by itself.
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    assert post_batch(server, "after-outage").status_code == 201
    listed = requests.get(server.url + "/api/batch/v1", headers=HEADERS, timeout=10)
    assert listed.status_code == 200
    assert sorted(s["_id"] for s in listed.json()) == ["after-outage", "before-outage"]
    assert server.worker_pids() == workers and server.process.poll() is None


def test_connection_lost_mid_batch_writes_nothing(server_behind_proxy, proxy, db_url):
    server = server_behind_proxy
    elements = [{"_id": f"lost/obj-{i:05d}", "v": i, "name": f"object {i}"} for i in range(30_000)]
    body = orjson.dumps({"_id": "lost-connection", "elements": elements})
    in_flight = (
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'batchsvc' "
        "AND state = 'active' AND query LIKE '%%EXECUTE batchsvc_upsert_objects(%%'"
    )
    for _attempt in range(3):
        outcome = {}

        def send(outcome=outcome):
            outcome["response"] = requests.post(server.url + "/api/batch/v1", data=body, headers=HEADERS, timeout=60)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 30
        while not db_rows(db_url, in_flight) and "response" not in outcome and time.monotonic() < deadline:
            time.sleep(0.005)
        if "response" not in outcome:
            break
        sender.join(60)
        cleanup(db_url)  # the batch finished before the cut: undo it and try again
    else:
        pytest.fail("could not catch a 30,000-element batch in the middle of its upsert in 3 attempts")
    proxy.cut()
    sender.join(60)
    assert_unavailable(outcome["response"])
    proxy.restore()
    stranded = "SELECT count(*) FROM objects WHERE tenant = %s AND id LIKE 'lost/%%'"
    deadline = time.monotonic() + 30
    while db_rows(db_url, in_flight) and time.monotonic() < deadline:
        time.sleep(0.05)  # the orphaned backend finishes its statement, then rolls back
    assert db_rows(db_url, stranded, (TENANT,))[0][0] == 0
    assert db_rows(db_url, "SELECT count(*) FROM batch_summaries WHERE tenant = %s", (TENANT,))[0][0] == 0
    retry = requests.post(server.url + "/api/batch/v1", data=body, headers=HEADERS, timeout=60)
    assert retry.status_code == 201, retry.text[:300]
    assert db_rows(db_url, stranded, (TENANT,))[0][0] == 30_000


@pytest.fixture(scope="module")
def live_server(db_url):
    server = start_live_server(db_url, workers=2)
    yield server
    server.stop()


def test_terminated_backends_are_replaced_transparently(live_server, db_url):
    # Fill both workers' pools, then kill every database session of the service.
    with ThreadPoolExecutor(8) as pool:
        warm = list(pool.map(lambda i: post_batch(live_server, f"warm-{i}").status_code, range(16)))
    assert warm == [201] * 16
    terminated = db_rows(db_url, TERMINATE)
    assert terminated and all(row[0] for row in terminated)
    try:
        with ThreadPoolExecutor(8) as pool:
            after = list(pool.map(lambda i: post_batch(live_server, f"after-kill-{i}").status_code, range(16)))
        assert after == [201] * 16
        for path in ("/readyz", "/api/batch/v1", "/api/object/v1/all"):
            assert requests.get(live_server.url + path, headers=HEADERS, timeout=10).status_code == 200
    finally:
        cleanup(db_url)


def test_engine_is_built_lazily_and_never_crosses_a_fork(db_url):
    url = normalise_database_url(db_url)
    database = Database(lambda: url, pool_size=2)
    assert database._engine is None, "no engine (and no connection) may exist before first use"
    with database.session() as session:
        parent_backend = session.execute(text("SELECT pg_backend_pid()")).scalar()
    parent_engine = database.engine
    assert parent_engine.pool.checkedin() == 1

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        verdict = b"E"
        try:
            engine = database.engine
            fresh = engine is not parent_engine and engine.pool.checkedin() == 0
            with database.session() as session:
                backend = session.execute(text("SELECT pg_backend_pid()")).scalar()
            verdict = b"1" if fresh and backend != parent_backend else b"0"
        finally:
            os.write(write_end, verdict)
            os._exit(0)
    os.close(write_end)
    verdict = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(child, 0)
    assert verdict == b"1", "the forked process reused the parent's engine or connection"
    # The parent's pooled connection is untouched by the child.
    with database.session() as session:
        assert session.execute(text("SELECT pg_backend_pid()")).scalar() == parent_backend
    database.dispose()


def _postgres_peers(pid: int, port: int) -> int:
    """How many TCP connections process `pid` holds to `port` on loopback (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count


def test_preloaded_app_opens_connections_only_in_workers(db_url):
    server = start_live_server(db_url, workers=2, env={"GUNICORN_CMD_ARGS": "--preload"})
    port = make_url(db_url).port or 5432
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: post_batch(server, f"preload-{i}").status_code, range(24)))
        assert codes == [201] * 24
        assert _postgres_peers(server.process.pid, port) == 0, "the gunicorn master holds database connections"
        assert sum(_postgres_peers(pid, port) for pid in server.worker_pids()) >= 1
    finally:
        server.stop()
        cleanup(db_url)


def test_statement_timeout_answers_503_and_writes_nothing(db_url):
    app = create_app({"database_url": db_url, "jwt_secret": SECRET, "db_statement_timeout_ms": 1})
    try:
        client = app.test_client()
        body = orjson.dumps([{"_id": f"slow-{i}", "v": i} for i in range(20_000)])
        response = client.post("/api/batch/v1", data=body, headers=HEADERS)
        assert response.status_code == 503, response.get_data(as_text=True)[:300]
        assert response.get_json()["code"] == 503 and response.headers["x-odsl-error"].startswith("[503] ")
        assert "statement timeout" in response.get_json()["message"]
        assert db_rows(db_url, "SELECT count(*) FROM objects WHERE tenant = %s", (TENANT,)) == [(0,)]
    finally:
        app.extensions["batchsvc"].database.dispose()
