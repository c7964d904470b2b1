"""Fixtures: a fresh PostgreSQL database per session, the app, tokens, a live gunicorn."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from pathlib import Path

import msal
import pytest
from support import scratch
from support.gunicorn import Gunicorn
from support.gunicorn import free_port as free_port  # re-exported: test_outage.py's proxy takes its port from it
from support.scratch import connect, server_url

from batchsvc import create_app
from batchsvc.auth import mint_token
from batchsvc.config import normalise_database_url
from batchsvc.db import Database

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-that-is-long-enough-for-hs256-keys"
# The stored series points as rows (object_id, property, time), read from the packed chunks
# (batchsvc/store/series/: times are microseconds since the Unix epoch): FROM {SERIES_POINTS}.
SERIES_POINTS = """(SELECT s.tenant_key, s.environment, s.object_id, s.property,
        timestamptz '1970-01-01 00:00:00+00' + t * interval '1 microsecond' AS time
    FROM series s JOIN series_chunks c ON c.tenant_key = s.tenant_key AND c.series_id = s.id,
         unnest(c.times) AS t) AS series_points"""
# Every error body (api/errors.py error_response).
ERROR_KEYS = {"code", "status", "message", "errors", "requestId"}
ALL_ROLES = ("batch.read", "batch.write", "batch.admin")


def recreate_database(name: str) -> str:
    """Drop and create database `name` on the test server; return its SQLAlchemy URL."""
    return scratch.recreate_database(server_url(), name)


@pytest.fixture(scope="session")
def db_url() -> str:
    return scratch.recreate_database(
        server_url(), os.environ.get("BATCHSVC_TEST_DATABASE", "batchsvc_test"), migrate=True
    )


@pytest.fixture(scope="session")
def app(db_url):
    return create_app({"database_url": db_url, "jwt_secret": SECRET})


@pytest.fixture
def client(app, db_url):
    yield app.test_client()
    truncate(db_url)


@pytest.fixture
def database(db_url):
    """A Database of the test database for store-level transactions (raw_transaction, BatchStore);
    the tables are emptied afterwards."""
    database = Database(lambda: normalise_database_url(db_url), pool_size=2)
    yield database
    database.dispose()
    truncate(db_url)


def truncate(url: str) -> None:
    connection = connect(url)
    with connection, connection.cursor() as cur:
        cur.execute(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        tables = cur.fetchone()[0]
        if tables:
            cur.execute(f"TRUNCATE {tables}")
    connection.close()


def assert_error(response, status: int, *fragments: str) -> dict:
    """The one error shape (SPEC §7): JSON with ERROR_KEYS, one-line `x-odsl-error`, and a
    message naming the problem (each of `fragments`, case-insensitively)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    body = response.get_json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == status
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], dict)
    assert response.headers["x-odsl-error"].startswith(f"[{status}] ")
    assert "\n" not in response.headers["x-odsl-error"]
    for fragment in fragments:
        assert fragment.lower() in body["message"].lower(), (fragment, body["message"])
    return body


def make_token(tenant="tenant-a", user="loader@example.com", roles=ALL_ROLES, secret=SECRET, **claims) -> str:
    return mint_token(secret, tenant=tenant, user=user, roles=roles, **claims)


def auth(tenant="tenant-a", user="loader@example.com", roles=ALL_ROLES, environment=None, **claims) -> dict:
    headers = {"Authorization": f"Bearer {make_token(tenant, user, roles, **claims)}"}
    if environment:
        headers["x-odsl-environment"] = environment
    return headers


class LiveServer(Gunicorn):
    """gunicorn serving the app on `db_url` with the tests' token secret, its access log discarded."""

    def __init__(self, db_url: str, *, workers: int = 2, env: dict | None = None, capture_stdout: bool = False):
        env = {"DATABASE_URL": db_url, "BATCHSVC_JWT_SECRET": SECRET, **(env or {})}
        super().__init__(workers=workers, env=env, access_log=False, capture_stdout=capture_stdout)


def start_live_server(db_url: str, **kwargs) -> LiveServer:
    """A started LiveServer (start() stops it again if it never becomes ready)."""
    return LiveServer(db_url, **kwargs).start()


@pytest.fixture(scope="session")
def live_server(db_url):
    server = LiveServer(db_url).start()
    yield server
    server.stop()


def db_rows(url: str, sql: str, params=()) -> list[tuple]:
    """Rows of one query run directly against the test database, outside the app (autocommit)."""
    connection = connect(url, autocommit=True)
    try:
        with connection.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        connection.close()


class OfflinePublicClientApplication:
    """Stands in for msal.PublicClientApplication, which fetches Microsoft's OpenID configuration (SPEC §9)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def get_accounts(self):
        return []


@pytest.fixture(scope="session")
def odsl_sdk():
    """`odsl.sdk` from PyPI, imported with MSAL's network-bound client replaced."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(msal, "PublicClientApplication", OfflinePublicClientApplication)
        patch.delitem(sys.modules, "odsl.sdk", raising=False)
        module = importlib.import_module("odsl.sdk")
    assert isinstance(module.ODSL.app, OfflinePublicClientApplication)
    # The SDK writes its MSAL token cache to ./token.odsl at exit; keep it out of the repository.
    module.ODSL.cache.filename = os.devnull
    return module


def sdk_client(odsl_sdk, server, token: str | None = None):
    """A real odsl SDK client pointed at `server` (a LiveServer), logged in with `token` when given."""
    client = odsl_sdk.ODSL()
    client.url = server.url + "/api/"
    if token is not None:
        client.loginWithToken(token)
    return client


def post_until_it_waits(client, body: bytes, headers: dict, db_url: str, what: str):
    """POST `body` as a batch from a thread and return once its transaction waits on a lock that
    another session holds: (the thread, the dict its response lands in as "response", the pids
    of the waiting backends). The caller releases the lock and joins the thread."""
    outcome: dict = {}
    sender = threading.Thread(
        target=lambda: outcome.update(response=client.post("/api/batch/v1", data=body, headers=headers))
    )
    sender.start()
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'batchsvc' AND wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    deadline = time.monotonic() + 10
    while not (pids := db_rows(db_url, waiting)):
        assert time.monotonic() < deadline, f"the batch never waited for {what}"
        time.sleep(0.01)
    return sender, outcome, [pid for (pid,) in pids]
