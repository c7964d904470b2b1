"""Fixtures: a fresh PostgreSQL database per session, the app, tokens, a live gunicorn."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msal
import psycopg2
import pytest
import requests
from sqlalchemy.engine import make_url

from batchsvc import create_app, scratch
from batchsvc.auth import mint_token
from batchsvc.config import database_url_from_env

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-that-is-long-enough-for-hs256-keys"
ALL_ROLES = ("batch.read", "batch.write", "batch.admin")


def server_url() -> str:
    """The PostgreSQL server the tests use: DATABASE_URL's, or the embedded one."""
    return database_url_from_env(instance_path=str(ROOT / "instance"))


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


def truncate(url: str) -> None:
    connection = psycopg2.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    with connection, connection.cursor() as cur:
        cur.execute(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        tables = cur.fetchone()[0]
        if tables:
            cur.execute(f"TRUNCATE {tables}")
    connection.close()


def make_token(tenant="tenant-a", user="loader@example.com", roles=ALL_ROLES, secret=SECRET, **claims) -> str:
    return mint_token(secret, tenant=tenant, user=user, roles=roles, **claims)


def auth(tenant="tenant-a", user="loader@example.com", roles=ALL_ROLES, environment=None, **claims) -> dict:
    headers = {"Authorization": f"Bearer {make_token(tenant, user, roles, **claims)}"}
    if environment:
        headers["x-odsl-environment"] = environment
    return headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A real gunicorn serving the app on loopback, for tests that need processes."""

    def __init__(self, db_url: str, *, workers: int = 2, env: dict | None = None, capture_stdout: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "BATCHSVC_JWT_SECRET": SECRET,
            "WEB_CONCURRENCY": str(workers),
            "BATCHSVC_BIND": f"127.0.0.1:{self.port}",
            **(env or {}),
        }
        self.process = None
        # The server's log goes to a file: a pipe nobody reads would block it once full.
        self.log_file = tempfile.NamedTemporaryFile(prefix="batchsvc-gunicorn-", suffix=".log", delete=False)
        # stdout holds the request log (one line per request); kept only when a test reads it.
        self.stdout_file = (
            tempfile.NamedTemporaryFile(prefix="batchsvc-stdout-", suffix=".log", delete=False)
            if capture_stdout
            else None
        )

    def start(self) -> LiveServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.stdout_file or subprocess.DEVNULL,
            stderr=self.log_file,
        )
        self.wait_ready()
        return self

    def log(self) -> str:
        """What the server wrote to stderr so far (its error log)."""
        with open(self.log_file.name, errors="replace") as log:
            return log.read()

    def stdout(self) -> str:
        """What the server wrote to stdout so far (with capture_stdout=True): the request log."""
        with open(self.stdout_file.name, errors="replace") as out:
            return out.read()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # workers still booting
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not become ready")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for file in (self.log_file, self.stdout_file):
            if file is not None:
                file.close()
                if os.path.exists(file.name):
                    os.unlink(file.name)


@pytest.fixture(scope="session")
def live_server(db_url):
    server = LiveServer(db_url).start()
    yield server
    server.stop()


def db_rows(url: str, sql: str, params=()) -> list[tuple]:
    """Rows of one query run directly against the test database, outside the app (autocommit)."""
    connection = psycopg2.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        connection.close()


def start_live_server(db_url: str, **kwargs) -> LiveServer:
    """Start a LiveServer, stopping it again if it never becomes ready."""
    server = LiveServer(db_url, **kwargs)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


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
