"""API keys (SPEC §10): created, listed and revoked by CLI and REST; logins by Basic and x-odsl headers."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from conftest import ERROR_KEYS, SECRET, auth, db_rows, sdk_client, start_live_server, truncate
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from batchsvc import create_app
from batchsvc.config import ConfigError, Settings
from batchsvc.core import apikeys
from batchsvc.core.errors import Forbidden, InvalidInput
from batchsvc.core.identity import Principal

TENANT, USER = "tenant-a", "loader@example.com"
ADMIN_AUTH = auth(tenant=TENANT, user="admin@example.com", roles=("batch.admin",))


def basic(email: str, key: str) -> dict:
    """What odsl's loginWithAPIKey(email, key) sends."""
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{key}".encode()).decode()}


def odsl_headers(email: str, key: str) -> dict:
    return {"x-odsl-email": email, "x-odsl-key": key}


def create(client, headers=ADMIN_AUTH, **body) -> dict:
    response = client.post(
        "/api/apikey/v1", data=json.dumps({"user": USER, "roles": ["batch.write"], **body}), headers=headers
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def post_batch(client, headers, batch_id="b-1"):
    return client.post(
        "/api/batch/v1", data=json.dumps({"_id": batch_id, "elements": [{"_id": "A", "v": 1}]}), headers=headers
    )


def assert_unauthorized(response, says: str):
    assert response.status_code == 401, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ERROR_KEYS and body["code"] == 401
    assert says in body["message"], body["message"]
    assert response.headers["x-odsl-error"].startswith("[401] ")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- the domain rules --------------------------------------------------------------------------


def test_key_format_embeds_the_id_and_hashes_are_keyed():
    key_id, key = apikeys.new_key()
    assert key.startswith(f"bsk_{key_id}_") and len(key) == 4 + 24 + 1 + 43
    assert apikeys.key_id_of(key) == key_id
    assert apikeys.key_id_of(key + "x") is None and apikeys.key_id_of("bsk_" + key_id) is None
    assert apikeys.new_key() != apikeys.new_key()
    one, other = apikeys.KeyHasher("pepper-1"), apikeys.KeyHasher("pepper-2")
    assert one.hash(key) != other.hash(key) and len(one.hash(key)) == 64
    assert one.matches(key, one.hash(key)) and not one.matches(key, other.hash(key))


def test_expiry_is_exact_and_email_must_match():
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    stored = apikeys.StoredKey("0" * 24, TENANT, USER, ("batch.read",), None, expires, expires, None, "h")
    assert apikeys.refusal(stored, USER, expires - timedelta(microseconds=1)) is None
    assert apikeys.refusal(stored, USER.upper(), expires - timedelta(microseconds=1)) is None
    assert apikeys.refusal(stored, USER, expires) == "API key has expired"
    assert (
        apikeys.refusal(stored, "other@example.com", expires - timedelta(seconds=1)) == "API key and email do not match"
    )


def test_a_keys_roles_are_at_most_its_creators():
    writer = Principal("w@example.com", TENANT, frozenset({"batch.write"}))
    assert apikeys.check_roles(["batch.read", "batch.write", "batch.read"], writer) == ("batch.read", "batch.write")
    with pytest.raises(Forbidden, match="batch.admin"):
        apikeys.check_roles(["batch.admin"], writer)
    admin = Principal("a@example.com", TENANT, frozenset({"batch.admin"}))
    assert apikeys.check_roles(["batch.admin", "batch.read"], admin) == ("batch.read", "batch.admin")
    assert apikeys.check_roles(["batch.admin"], None) == ("batch.admin",)  # the operator's CLI
    with pytest.raises(InvalidInput, match="unknown role"):
        apikeys.check_roles(["batch.root"], admin)


def test_expires_forms():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert apikeys.parse_expires("2027-02-03", now) == datetime(2027, 2, 3, tzinfo=UTC)
    assert apikeys.parse_expires("2027-02-03T04:05:06", now) == datetime(2027, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert apikeys.parse_expires("2027-02-03T04:05:06+02:00", now) == datetime(2027, 2, 3, 2, 5, 6, tzinfo=UTC)
    assert apikeys.parse_expires("2027-02-03T04:05:06.5Z", now).microsecond == 500_000
    for bad in ("2025-12-31", "2026-01-01T00:00:00Z", "tomorrow", "2027-13-01", 5, "2027-02-03T04:05:06+02:00x"):
        with pytest.raises(InvalidInput):
            apikeys.parse_expires(bad, now)


# --- the command line --------------------------------------------------------------------------


def cli(app, *args):
    """Run `flask apikey ARGS`; the result keeps stdout and stderr apart."""
    return app.test_cli_runner().invoke(args=["apikey", *args])


def test_cli_create_list_revoke(app, client, db_url):
    result = cli(
        app,
        "create",
        "--tenant",
        TENANT,
        "--user",
        USER,
        "--role",
        "batch.write",
        "--role",
        "batch.read",
        "--name",
        "nightly loader",
        "--expires",
        "2099-01-01T00:00:00Z",
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    key_id = apikeys.key_id_of(key)
    assert key_id and key_id in result.stderr and key not in result.stderr

    listed = cli(app, "list", "--tenant", TENANT)
    assert listed.exit_code == 0
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry == {
        "_id": key_id,
        "name": "nightly loader",
        "user": USER,
        "roles": ["batch.read", "batch.write"],
        "created": entry["created"],
        "expires": "2099-01-01T00:00:00.000Z",
    }
    assert key not in listed.output and key.split("_", 2)[2] not in listed.output
    assert cli(app, "list", "--tenant", "tenant-b").stdout == ""

    assert post_batch(client, basic(USER, key)).status_code == 201

    revoked = cli(app, "revoke", key_id)
    assert revoked.exit_code == 0 and key_id in revoked.stderr
    assert cli(app, "list", "--tenant", TENANT).stdout == ""
    again = cli(app, "revoke", key_id)
    assert again.exit_code != 0 and "no API key" in again.output
    assert db_rows(db_url, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = %s", (key_id,)) == [(True,)]


def test_cli_refuses_bad_input_and_stores_nothing(app, client, db_url):
    for args, says in [
        (["--role", "batch.root"], "batch.root"),
        (["--role", "batch.read", "--expires", "2001-01-01"], "not in the future"),
        (["--role", "batch.read", "--expires", "soon"], "ISO-8601"),
        ([], "--role"),
    ]:
        result = cli(app, "create", "--tenant", TENANT, "--user", USER, *args)
        assert result.exit_code != 0 and says in result.output, result.output
    result = cli(app, "create", "--tenant", TENANT, "--user", "not-an-email", "--role", "batch.read")
    assert result.exit_code != 0 and "email" in result.output
    assert db_rows(db_url, "SELECT count(*) FROM api_keys") == [(0,)]


# --- REST -------------------------------------------------------------------------------------


def test_rest_create_list_get_revoke(client, db_url):
    created = create(client, name="prices", roles=["batch.read", "batch.write"], expires="2099-06-01")
    assert set(created) == {"_id", "key", "name", "user", "roles", "created", "expires"}
    assert created["name"] == "prices" and created["user"] == USER
    assert created["roles"] == ["batch.read", "batch.write"] and created["expires"] == "2099-06-01T00:00:00.000Z"
    assert apikeys.key_id_of(created["key"]) == created["_id"]
    second = create(client, user="other@example.com", roles=["batch.read"])
    assert second["name"] is None and second["expires"] is None

    listed = client.get("/api/apikey/v1", headers=ADMIN_AUTH)
    assert listed.status_code == 200 and listed.headers["x-total-count"] == "2"
    assert [k["_id"] for k in listed.get_json()] == [second["_id"], created["_id"]]  # newest first
    assert all(set(k) == {"_id", "name", "user", "roles", "created", "expires"} for k in listed.get_json())
    text = listed.get_data(as_text=True)
    assert created["key"] not in text and second["key"] not in text
    page = client.get("/api/apikey/v1?_limit=1&_skip=1", headers=ADMIN_AUTH)
    assert [k["_id"] for k in page.get_json()] == [created["_id"]] and page.headers["x-total-count"] == "2"

    one = client.get(f"/api/apikey/v1/{created['_id']}", headers=ADMIN_AUTH)
    assert one.status_code == 200
    assert one.get_json() == {k: v for k, v in created.items() if k != "key"}

    # the key is nowhere in the database, nor its secret part; only its keyed hash
    stored = db_rows(db_url, "SELECT row_to_json(api_keys)::text, key_hash FROM api_keys")
    for key in (created["key"], second["key"]):
        assert all(key.split("_", 2)[2] not in row for row, _ in stored)
    assert {h for _, h in stored} == {
        apikeys.KeyHasher(SECRET).hash(created["key"]),
        apikeys.KeyHasher(SECRET).hash(second["key"]),
    }

    assert client.delete(f"/api/apikey/v1/{created['_id']}", headers=ADMIN_AUTH).status_code == 204
    assert client.get(f"/api/apikey/v1/{created['_id']}", headers=ADMIN_AUTH).status_code == 404
    assert client.delete(f"/api/apikey/v1/{created['_id']}", headers=ADMIN_AUTH).status_code == 404
    assert client.get("/api/apikey/v1", headers=ADMIN_AUTH).headers["x-total-count"] == "1"
    assert_unauthorized(post_batch(client, basic(USER, created["key"])), "revoked")


def test_another_tenants_key_is_404(client):
    created = create(client)
    other_admin = auth(tenant="tenant-b", roles=("batch.admin",))
    assert client.get(f"/api/apikey/v1/{created['_id']}", headers=other_admin).status_code == 404
    assert client.delete(f"/api/apikey/v1/{created['_id']}", headers=other_admin).status_code == 404
    assert client.get("/api/apikey/v1", headers=other_admin).get_json() == []
    assert post_batch(client, basic(USER, created["key"])).status_code == 201  # still works


def test_only_the_tenants_admin_manages_keys(client):
    created = create(client)
    writer = auth(tenant=TENANT, roles=("batch.write", "batch.read"))
    for response in (
        client.get("/api/apikey/v1", headers=writer),
        client.post("/api/apikey/v1", data=json.dumps({"user": USER, "roles": ["batch.read"]}), headers=writer),
        client.get(f"/api/apikey/v1/{created['_id']}", headers=writer),
        client.delete(f"/api/apikey/v1/{created['_id']}", headers=writer),
        client.get("/api/apikey/v1", headers=basic(USER, created["key"])),  # a write key is no admin either
    ):
        assert response.status_code == 403, response.get_data(as_text=True)
    assert client.get("/api/apikey/v1").status_code == 401


@pytest.mark.parametrize(
    "body, says",
    [
        ({"user": USER, "roles": ["batch.root"]}, "unknown role"),
        ({"user": USER, "roles": []}, "roles"),
        ({"user": USER}, "roles"),
        ({"user": USER, "roles": "batch.read"}, "roles"),
        ({"user": USER, "roles": ["batch.read"], "expires": "next week"}, "ISO-8601"),
        ({"user": USER, "roles": ["batch.read"], "expires": "2001-01-01T00:00:00Z"}, "not in the future"),
        ({"user": USER, "roles": ["batch.read"], "expires": 1767225600}, "ISO-8601"),
        ({"user": "not an email", "roles": ["batch.read"]}, "email"),
        ({"user": "a:b@example.com", "roles": ["batch.read"]}, "email"),
        ({"user": 7, "roles": ["batch.read"]}, "email"),
        ({"user": USER, "roles": ["batch.read"], "name": "x" * 257}, "name"),
        ({"user": USER, "roles": ["batch.read"], "name": "tab\there"}, "name"),
        ({"user": USER, "roles": ["batch.read"], "key": "bsk_mine"}, "unknown field"),
        ([USER], "JSON object"),
    ],
)
def test_bad_input_is_400_and_stores_nothing(client, db_url, body, says):
    response = client.post("/api/apikey/v1", data=json.dumps(body), headers=ADMIN_AUTH)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert says in response.get_json()["message"] and response.headers["x-odsl-error"].startswith("[400] ")
    assert db_rows(db_url, "SELECT count(*) FROM api_keys") == [(0,)]


def test_bad_bodies_and_lists(client):
    assert client.post("/api/apikey/v1", data=b"{not json", headers=ADMIN_AUTH).status_code == 400
    assert client.post("/api/apikey/v1", data=b'{"name": "\\u0000"}', headers=ADMIN_AUTH).status_code == 400
    assert client.post("/api/apikey/v1", data=b"x" * 70_000, headers=ADMIN_AUTH).status_code == 413
    assert client.get("/api/apikey/v1?_sort=name", headers=ADMIN_AUTH).status_code == 400
    assert client.get("/api/apikey/v1?_limit=0", headers=ADMIN_AUTH).status_code == 400
    assert client.get("/api/apikey/v1/not-a-key-id", headers=ADMIN_AUTH).status_code == 404
    # the caller is the default user: a token whose user is an email needs no "user"
    me = auth(tenant=TENANT, user="me@example.com", roles=("batch.admin",))
    response = client.post("/api/apikey/v1", data=json.dumps({"roles": ["batch.read"]}), headers=me)
    assert response.status_code == 201 and response.get_json()["user"] == "me@example.com"


# --- logging in with a key ------------------------------------------------------------------


@pytest.mark.parametrize("login", [basic, odsl_headers], ids=["basic", "x-odsl-headers"])
def test_login_with_a_key_lists_gets_and_posts_batches(client, login):
    created = create(client, roles=["batch.write"])
    headers = login(USER, created["key"])
    response = post_batch(client, headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["user"] == USER  # the key's user is the caller
    listed = client.get("/api/batch/v1", headers=headers)
    assert listed.status_code == 200 and [s["_id"] for s in listed.get_json()] == ["b-1"]
    assert client.get("/api/batch/v1/b-1", headers=headers).get_json()["user"] == USER
    assert client.get("/api/object/v1/private/A", headers=headers).get_json()["_user"] == USER
    # the key's tenant is the caller's tenant: another tenant sees none of it
    assert client.get("/api/batch/v1", headers=auth(tenant="tenant-b")).get_json() == []
    assert client.get("/api/batch/v1", headers=auth(tenant=TENANT)).headers["x-total-count"] == "1"
    # an email differing only in case is the same user
    assert client.get("/api/batch/v1", headers=login(USER.upper(), created["key"])).status_code == 200


def test_read_only_key_cannot_post_a_batch(client):
    created = create(client, roles=["batch.read"])
    response = post_batch(client, basic(USER, created["key"]))
    assert response.status_code == 403 and response.headers["x-odsl-error"].startswith("[403] ")
    assert client.get("/api/batch/v1", headers=basic(USER, created["key"])).status_code == 200


def test_refused_keys_are_401(client):
    created = create(client)
    key, key_id = created["key"], created["_id"]
    wrong_secret = f"bsk_{key_id}_{'A' * 43}"
    for headers, says in [
        (basic(USER, wrong_secret), "invalid API key"),
        (basic(USER, "bsk_" + "0" * 24 + "_" + "A" * 43), "invalid API key"),
        (basic(USER, "not-a-key"), "invalid API key"),
        (odsl_headers(USER, wrong_secret), "invalid API key"),
        (basic("other@example.com", key), "do not match"),
        (odsl_headers("other@example.com", key), "do not match"),
        ({"Authorization": "Basic !!!"}, "malformed Basic"),
        ({"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}, "malformed Basic"),
        ({"x-odsl-key": key}, "x-odsl-email"),
        ({"x-odsl-email": USER}, "x-odsl-key"),
    ]:
        assert_unauthorized(post_batch(client, headers), says)
        assert key not in post_batch(client, headers).get_data(as_text=True)
    assert client.get("/api/batch/v1", headers=auth()).headers["x-total-count"] == "0"
    assert post_batch(client, basic(USER, key)).status_code == 201


def test_an_expired_key_is_401_from_its_expiry_on(client):
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    created = create(client, expires=expires.isoformat())
    headers = basic(USER, created["key"])
    assert client.get("/api/batch/v1", headers=headers).status_code == 200
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.01)
    assert_unauthorized(client.get("/api/batch/v1", headers=headers), "expired")


def test_api_keys_off_refuses_every_key_login(app, db_url):
    client = app.test_client()
    created = create(client)
    off = create_app({"database_url": db_url, "jwt_secret": SECRET, "api_keys": False})
    try:
        off_client = off.test_client()
        for headers in (basic(USER, created["key"]), odsl_headers(USER, created["key"])):
            assert_unauthorized(off_client.get("/api/batch/v1", headers=headers), "BATCHSVC_API_KEYS=off")
        assert off_client.get("/api/batch/v1", headers=auth()).status_code == 200  # JWTs still work
    finally:
        off.extensions["batchsvc"].database.dispose()
        truncate(db_url)


def test_without_a_secret_keys_cannot_be_made_or_used(db_url):
    """A service verifying JWTs by public key only has nothing to hash keys with, until
    BATCHSVC_API_KEY_SECRET is set."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    now = int(time.time())
    claims = {"sub": "admin@example.com", "tid": TENANT, "roles": ["batch.admin"], "exp": now + 600}
    admin = {"Authorization": "Bearer " + jwt.encode(claims, private, algorithm="ES256")}
    body = json.dumps({"user": USER, "roles": ["batch.read"]})
    bare = create_app({"database_url": db_url, "jwt_public_key": pem})
    peppered = create_app({"database_url": db_url, "jwt_public_key": pem, "api_key_secret": "a-key-secret"})
    try:
        refused = bare.test_client().post("/api/apikey/v1", data=body, headers=admin)
        assert refused.status_code == 503 and "BATCHSVC_API_KEY_SECRET" in refused.get_json()["message"]
        assert db_rows(db_url, "SELECT count(*) FROM api_keys") == [(0,)]
        created = peppered.test_client().post("/api/apikey/v1", data=body, headers=admin)
        assert created.status_code == 201
        key = created.get_json()["key"]
        assert peppered.test_client().get("/api/batch/v1", headers=basic(USER, key)).status_code == 200
        assert_unauthorized(bare.test_client().get("/api/batch/v1", headers=basic(USER, key)), "not configured")
    finally:
        for app in (bare, peppered):
            app.extensions["batchsvc"].database.dispose()
        truncate(db_url)


def test_api_keys_setting_from_the_environment():
    env = {"BATCHSVC_JWT_SECRET": SECRET}
    assert Settings.from_env(env).api_keys is True
    assert Settings.from_env({**env, "BATCHSVC_API_KEYS": "off"}).api_keys is False
    with pytest.raises(ConfigError, match="BATCHSVC_API_KEYS"):
        Settings.from_env({**env, "BATCHSVC_API_KEYS": "maybe"})
    # the pepper: its own secret when set, else the JWT secret, else the dev secret in dev mode
    assert Settings.from_env({**env, "BATCHSVC_API_KEY_SECRET": "k"}).api_key_pepper() == "k"
    assert Settings.from_env(env).api_key_pepper() == SECRET
    assert Settings.from_env({"BATCHSVC_DEV": "1"}).api_key_pepper()
    assert Settings.from_env({"BATCHSVC_JWT_JWKS_URL": "http://127.0.0.1:1/jwks"}).api_key_pepper() is None


# --- a live gunicorn: revocation on every worker, the real odsl SDK --------------------------


@pytest.fixture(scope="module")
def two_workers(db_url):
    server = start_live_server(db_url, workers=2)
    yield server
    server.stop()


@contextmanager
def only(server, worker: int):
    """Requests reach `worker` alone while the other worker is stopped (SIGSTOP, then SIGCONT)."""
    others = [pid for pid in server.worker_pids() if pid != worker]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def test_a_revoked_key_stops_working_on_every_worker_within_5_seconds(two_workers, db_url):
    server = two_workers
    admin = requests.post(
        server.url + "/api/apikey/v1", json={"user": USER, "roles": ["batch.read"]}, headers=ADMIN_AUTH, timeout=10
    )
    assert admin.status_code == 201, admin.text
    key, key_id = admin.json()["key"], admin.json()["_id"]
    headers = basic(USER, key)
    workers = server.worker_pids()
    assert len(workers) == 2
    try:
        for worker in workers:  # the key is verified, and remembered, by each worker
            with only(server, worker):
                assert requests.get(server.url + "/api/batch/v1", headers=headers, timeout=10).status_code == 200
        revoked = requests.delete(f"{server.url}/api/apikey/v1/{key_id}", headers=ADMIN_AUTH, timeout=10)
        assert revoked.status_code == 204
        since = time.monotonic()
        refused = set()
        while refused != set(workers) and time.monotonic() - since < 6.5:
            for worker in workers:
                with only(server, worker):
                    response = requests.get(server.url + "/api/batch/v1", headers=headers, timeout=10)
                if response.status_code == 401:
                    assert "revoked" in response.json()["message"]
                    refused.add(worker)
                else:
                    assert response.status_code == 200
                    assert worker not in refused, "a worker accepted the key again after refusing it"
            time.sleep(0.05)
        elapsed = time.monotonic() - since
        assert refused == set(workers), f"still accepted after {elapsed:.1f} s"
        assert elapsed <= 6.0
    finally:
        truncate(db_url)


def test_the_odsl_sdk_logs_in_with_an_api_key(odsl_sdk, two_workers, db_url, capsys):
    server = two_workers
    created = requests.post(
        server.url + "/api/apikey/v1", json={"user": USER, "roles": ["batch.write"]}, headers=ADMIN_AUTH, timeout=10
    )
    assert created.status_code == 201, created.text
    try:
        odsl = sdk_client(odsl_sdk, server)
        odsl.loginWithAPIKey(USER, created.json()["key"])
        odsl.update("batch", "private", {"_id": "sdk-key-1", "elements": [{"_id": "SDK", "v": 1}]})
        assert capsys.readouterr().out.split() == ["201"]
        summary = odsl.get("batch", None, "sdk-key-1")
        assert isinstance(summary, dict) and summary["user"] == USER and summary["status"] == "success"
        assert [s["_id"] for s in odsl.list("batch")] == ["sdk-key-1"]
        assert odsl.get("object", "private", "SDK")["v"] == 1

        odsl.loginWithAPIKey(USER, created.json()["key"][:-1] + "x")
        assert isinstance(odsl.list("batch"), str)
        assert "ODSL error 401: [401] invalid API key" in capsys.readouterr().out
    finally:
        truncate(db_url)
