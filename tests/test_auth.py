"""Identity, roles, tenancy and environments: who may do what, and what they can see."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

import jwt
import pytest
from conftest import ERROR_KEYS, ROOT, SECRET, auth, make_token, truncate
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from batchsvc import create_app
from batchsvc.config import DEV_SECRET, ConfigError

READER, WRITER, ADMIN = ("batch.read",), ("batch.write",), ("batch.admin",)
KEY_VARIABLES = ("BATCHSVC_JWT_SECRET", "BATCHSVC_JWT_PUBLIC_KEY", "BATCHSVC_JWT_JWKS_URL", "BATCHSVC_DEV")


def post(client, body, headers):
    return client.post("/api/batch", data=json.dumps(body).encode(), headers=headers)


def bearer(token: str, environment: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    if environment:
        headers["x-odsl-environment"] = environment
    return headers


def claims(**extra) -> dict:
    now = int(time.time())
    return {
        "sub": "loader@example.com",
        "tid": "tenant-a",
        "roles": ["batch.admin"],
        "iat": now,
        "exp": now + 600,
        **extra,
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict, payload: dict, key: bytes | None) -> str:
    """A JWT assembled by hand, for what PyJWT refuses to produce (alg none, HMAC over a PEM)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key else b""
    return f"{signing_input}.{b64(signature)}"


def assert_unauthorized(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert set(body) == ERROR_KEYS and body["code"] == 401
    assert response.headers["x-odsl-error"].startswith("[401] ")


def assert_forbidden(response):
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.get_json()["code"] == 403
    assert response.headers["x-odsl-error"].startswith("[403] ")


@pytest.fixture
def make_app(db_url):
    """Apps with their own settings; their pools are closed and the tables emptied afterwards."""
    apps = []

    def factory(**settings):
        app = create_app({"database_url": db_url, **settings})
        apps.append(app)
        return app.test_client()

    yield factory
    for app in apps:
        app.extensions["batchsvc"].database.dispose()
    truncate(db_url)


# --- invalid tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic bG9hZGVyOmFwaWtleQ=="},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer abc"},
    ],
    ids=["none", "empty", "bearer-only", "bearer-blank", "basic", "garbage", "one-segment"],
)
def test_missing_or_malformed_token_is_401(client, headers):
    assert_unauthorized(client.get("/api/batch/v1", headers=headers))
    assert_unauthorized(post(client, {"elements": [{"_id": "X"}]}, headers))
    assert_unauthorized(client.get("/api/batch/v1/some-id", headers=headers))
    assert_unauthorized(client.delete("/api/batch/v1/some-id", headers=headers))
    assert_unauthorized(client.get("/api/object/v1/private", headers=headers))
    assert_unauthorized(client.get("/api/object/v1/private/X", headers=headers))
    assert client.get("/api/object/v1/all", headers=auth()).headers["x-total-count"] == "0"


def test_bad_signature_is_401(client):
    forged = make_token(secret="another-secret-that-is-long-enough-for-hs256")
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(forged)))
    header, payload, signature = make_token().split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["tid"] = "tenant-b"
    assert_unauthorized(
        client.get("/api/batch/v1", headers=bearer(f"{header}.{b64(json.dumps(tampered).encode())}.{signature}"))
    )


def test_expiry_is_required_with_30_seconds_leeway(client):
    now = int(time.time())
    assert_unauthorized(client.get("/api/batch/v1", headers=auth(exp=now - 120)))
    assert "expired" in client.get("/api/batch/v1", headers=auth(exp=now - 120)).get_json()["message"]
    assert client.get("/api/batch/v1", headers=auth(exp=now - 10)).status_code == 200
    no_exp = {k: v for k, v in claims().items() if k != "exp"}
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(jwt.encode(no_exp, SECRET, algorithm="HS256"))))


def test_a_verified_token_is_remembered_only_until_it_expires(client, monkeypatch):
    now = time.time()
    short, long = auth(exp=int(now) + 5), auth(exp=int(now) + 3600)
    calls = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append(1) or real_decode(*a, **k))
    for headers in (short, short, long, long):
        assert client.get("/api/batch/v1", headers=headers).status_code == 200
    assert len(calls) == 2  # each token's signature was checked once
    monkeypatch.setattr(time, "time", lambda: now + 5 + 31)  # past the short token's exp + leeway
    client.get("/api/batch/v1", headers=short)
    client.get("/api/batch/v1", headers=long)
    assert len(calls) == 3  # the short token is checked again (and PyJWT's clock decides), the long one not
    monkeypatch.setattr(time, "time", lambda: now + 61)  # past the cache's own 60 s
    client.get("/api/batch/v1", headers=long)
    assert len(calls) == 4


def test_alg_none_is_rejected(client):
    for alg in ("none", "None", "NONE"):
        token = hand_made_token({"alg": alg, "typ": "JWT"}, claims(), None)
        assert_unauthorized(client.get("/api/batch/v1", headers=bearer(token)))
        assert_unauthorized(post(client, {"elements": [{"_id": "NONE"}]}, bearer(token)))
    assert client.get("/api/object/v1/private/NONE", headers=auth()).status_code == 404


@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_other_hmac_algorithms_are_rejected(client):
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(token)))


def test_token_without_tenant_or_user_is_401(client):
    no_tenant = {k: v for k, v in claims().items() if k != "tid"}
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(jwt.encode(no_tenant, SECRET, algorithm="HS256"))))
    no_user = {k: v for k, v in claims().items() if k != "sub"}
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(jwt.encode(no_user, SECRET, algorithm="HS256"))))


def test_user_comes_from_email_before_sub(client):
    token = jwt.encode(
        claims(sub="0f3c-object-id", email="jane@example.com", preferred_username="jane"), SECRET, algorithm="HS256"
    )
    summary = post(client, {"elements": [{"_id": "U"}]}, bearer(token)).get_json()
    assert summary["user"] == "jane@example.com"
    assert client.get("/api/object/v1/private/U", headers=auth()).get_json()["_user"] == "jane@example.com"


def test_audience_must_match_when_configured(make_app):
    client = make_app(jwt_secret=SECRET, jwt_audience="x")
    assert_unauthorized(client.get("/api/batch/v1", headers=auth()))
    assert_unauthorized(client.get("/api/batch/v1", headers=auth(aud="y")))
    assert client.get("/api/batch/v1", headers=auth(aud="x")).status_code == 200
    assert client.get("/api/batch/v1", headers=auth(aud=["y", "x"])).status_code == 200


def test_issuer_must_match_when_configured(make_app):
    client = make_app(jwt_secret=SECRET, jwt_issuer="https://login.example.com/")
    assert_unauthorized(client.get("/api/batch/v1", headers=auth()))
    assert_unauthorized(client.get("/api/batch/v1", headers=auth(iss="https://evil.example.com/")))
    assert client.get("/api/batch/v1", headers=auth(iss="https://login.example.com/")).status_code == 200


def test_tenant_claim_is_configurable(make_app):
    client = make_app(jwt_secret=SECRET, tenant_claim="org")
    assert_unauthorized(client.get("/api/batch/v1", headers=auth()))
    response = post(client, {"elements": [{"_id": "ORG"}]}, auth(org="acme"))
    assert response.status_code == 201
    assert client.get("/api/object/v1/private/ORG", headers=auth(org="acme")).status_code == 200
    assert client.get("/api/object/v1/private/ORG", headers=auth(tenant="acme", org="other")).status_code == 404


# --- asymmetric keys ------------------------------------------------------------------------


def pem_public(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def test_rs256_with_a_public_key(make_app, rsa_key):
    pem = pem_public(rsa_key)
    client = make_app(jwt_public_key=pem)
    good = jwt.encode(claims(), rsa_key, algorithm="RS256")
    created = post(client, {"_id": "rs256", "elements": [{"_id": "RS"}]}, bearer(good))
    assert created.status_code == 201
    assert client.get("/api/batch/v1/rs256", headers=bearer(good)).status_code == 200

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(jwt.encode(claims(), stranger, algorithm="RS256"))))
    # algorithm confusion: HMAC keyed with the public key the server trusts
    confused = hand_made_token({"alg": "HS256", "typ": "JWT"}, claims(), pem.encode())
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(confused)))
    assert_unauthorized(post(client, {"elements": [{"_id": "CONFUSED"}]}, bearer(confused)))
    # no shared secret is configured, so the usual test tokens are worthless here
    assert_unauthorized(client.get("/api/batch/v1", headers=auth()))
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(jwt.encode(claims(), rsa_key, algorithm="RS512"))))
    assert client.get("/api/object/v1/private/CONFUSED", headers=bearer(good)).status_code == 404


def test_es256_with_a_public_key(make_app, ec_key, rsa_key):
    pem = pem_public(ec_key)
    client = make_app(jwt_public_key=pem)
    good = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert post(client, {"_id": "es256", "elements": [{"_id": "ES"}]}, bearer(good)).status_code == 201
    assert client.get("/api/object/v1/private/ES", headers=bearer(good)).status_code == 200
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(jwt.encode(claims(), rsa_key, algorithm="RS256"))))
    confused = hand_made_token({"alg": "HS256", "typ": "JWT"}, claims(), pem.encode())
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(confused)))
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert_unauthorized(client.get("/api/batch/v1", headers=bearer(jwt.encode(claims(), stranger, algorithm="ES256"))))


# --- start-up without a key -----------------------------------------------------------------


def test_refuses_to_start_without_a_key(db_url, monkeypatch):
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="BATCHSVC_JWT_SECRET"):
        create_app({"database_url": db_url})


def test_wsgi_import_fails_without_a_key(db_url):
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env["DATABASE_URL"] = db_url
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "BATCHSVC_JWT_SECRET" in result.stderr


def test_dev_mode_runs_on_the_dev_secret(make_app, monkeypatch):
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    client = make_app(dev=True)
    assert client.get("/api/batch/v1", headers=bearer(make_token(secret=DEV_SECRET))).status_code == 200
    assert_unauthorized(client.get("/api/batch/v1", headers=auth()))


# --- roles ----------------------------------------------------------------------------------


def test_reader_cannot_submit_or_delete(client):
    assert post(client, {"_id": "by-admin", "elements": [{"_id": "R"}]}, auth()).status_code == 201
    reader = auth(roles=READER)
    assert_forbidden(post(client, {"elements": [{"_id": "R2"}]}, reader))
    assert_forbidden(client.post("/api/batch/v1/private", data=b'[{"_id":"R2"}]', headers=reader))
    assert_forbidden(client.delete("/api/batch/v1/by-admin", headers=reader))
    assert client.get("/api/batch/v1/by-admin", headers=reader).status_code == 200
    assert client.get("/api/object/v1/private/R", headers=reader).status_code == 200
    assert client.get("/api/object/v1/private/R2", headers=auth()).status_code == 404


def test_no_role_reads_nothing(client):
    nobody = auth(roles=())
    assert_forbidden(client.get("/api/batch/v1", headers=nobody))
    assert_forbidden(client.get("/api/object/v1/private", headers=nobody))
    assert_forbidden(client.get("/api/batch/v1/anything", headers=nobody))
    assert_forbidden(client.get("/api/batch/v1", headers=auth(roles=("batch.readonly", "admin"))))


def test_roles_from_scp_claim(client):
    assert post(client, {"elements": [{"_id": "SCP"}]}, auth(roles=(), scp="openid batch.write")).status_code == 201
    assert client.get("/api/batch/v1", headers=auth(roles=(), scp="batch.read profile")).status_code == 200
    assert_forbidden(post(client, {"elements": [{"_id": "SCP2"}]}, auth(roles=(), scp="batch.read")))


def test_default_roles(make_app):
    client = make_app(jwt_secret=SECRET, default_roles=("batch.read",))
    assert client.get("/api/batch/v1", headers=auth(roles=())).status_code == 200
    assert_forbidden(post(client, {"elements": [{"_id": "D"}]}, auth(roles=())))


def test_writer_deletes_only_its_own_summaries(client):
    alice, bob = auth(user="alice@example.com", roles=WRITER), auth(user="bob@example.com", roles=WRITER)
    assert post(client, {"_id": "alices", "elements": [{"_id": "AL"}]}, alice).status_code == 201
    assert post(client, {"_id": "bobs", "elements": [{"_id": "BO"}]}, bob).status_code == 201
    assert_forbidden(client.delete("/api/batch/v1/alices", headers=bob))
    assert client.get("/api/batch/v1/alices", headers=bob).status_code == 200
    assert client.delete("/api/batch/v1/bobs", headers=bob).status_code == 204
    assert client.get("/api/batch/v1/bobs", headers=bob).status_code == 404
    # the objects a deleted summary wrote stay
    assert client.get("/api/object/v1/private/BO", headers=bob).status_code == 200
    admin = auth(user="root@example.com", roles=ADMIN)
    assert client.delete("/api/batch/v1/private/alices", headers=admin).status_code == 204
    assert client.get("/api/batch/v1/alices", headers=admin).status_code == 404


# --- tenants and environments ---------------------------------------------------------------


def test_tenants_see_nothing_of_each_other(client):
    a, b = auth(tenant="tenant-a"), auth(tenant="tenant-b")
    assert (
        post(
            client,
            {"_id": "shared-id", "name": "A's load", "elements": [{"_id": "OBJ", "owner": "a"}, {"_id": "#PUB"}]},
            a,
        ).status_code
        == 201
    )
    assert client.get("/api/batch/v1", headers=b).headers["x-total-count"] == "0"
    assert client.get("/api/batch/v1/public", headers=b).get_json() == []
    assert client.get("/api/batch/v1/shared-id", headers=b).status_code == 404
    assert client.get("/api/batch/v1/all/shared-id", headers=b).status_code == 404
    assert client.delete("/api/batch/v1/shared-id", headers=b).status_code == 404
    assert client.get("/api/object/v1/private/OBJ", headers=b).status_code == 404
    assert client.get("/api/object/v1/public/%23PUB", headers=b).status_code == 404
    assert client.get("/api/object/v1/all", headers=b).get_json() == []
    assert client.get("/api/batch/v1?name=A's%20load", headers=b).get_json() == []

    # tenant B can use the same batch id and object id without conflict
    mine = post(client, {"_id": "shared-id", "elements": [{"_id": "OBJ", "owner": "b"}]}, b)
    assert mine.status_code == 201
    assert client.get("/api/object/v1/private/OBJ", headers=b).get_json()["owner"] == "b"
    assert client.get("/api/object/v1/private/OBJ", headers=b).get_json()["_version"] == 1
    assert client.get("/api/object/v1/private/OBJ", headers=a).get_json()["owner"] == "a"
    assert client.get("/api/batch/v1/shared-id", headers=a).get_json()["name"] == "A's load"
    assert client.get("/api/batch/v1", headers=a).headers["x-total-count"] == "1"


def test_environments_are_separate(client):
    prod, staging = auth(), auth(environment="staging")
    assert (
        post(client, {"_id": "env-batch", "elements": [{"_id": "ENV", "where": "staging"}]}, staging).status_code == 201
    )
    summary = client.get("/api/batch/v1/env-batch", headers=staging).get_json()
    assert summary["environment"] == "staging"
    assert client.get("/api/batch/v1/env-batch", headers=prod).status_code == 404
    assert client.get("/api/object/v1/private/ENV", headers=prod).status_code == 404
    assert client.get("/api/batch/v1", headers=prod).get_json() == []
    assert client.get("/api/batch/v1", headers=auth(environment="production")).get_json() == []
    # the same ids in production are a different batch and object
    assert post(client, {"_id": "env-batch", "elements": [{"_id": "ENV", "where": "prod"}]}, prod).status_code == 201
    assert client.get("/api/batch/v1/env-batch", headers=prod).get_json()["environment"] == "production"
    assert client.get("/api/object/v1/private/ENV", headers=prod).get_json()["where"] == "prod"
    assert client.get("/api/object/v1/private/ENV", headers=staging).get_json()["where"] == "staging"
    assert client.delete("/api/batch/v1/env-batch", headers=staging).status_code == 204
    assert client.get("/api/batch/v1/env-batch", headers=prod).status_code == 200


@pytest.mark.parametrize("environment", ["-bad", "bad env", "bad/env", "a" * 65, "ünïcode", "bad;drop"])
def test_bad_environment_header_is_400(client, environment):
    headers = {**auth(), "x-odsl-environment": environment.encode("utf-8").decode("latin-1")}
    for response in (
        client.get("/api/batch/v1", headers=headers),
        post(client, {"elements": [{"_id": "E"}]}, headers),
        client.get("/api/object/v1/private/E", headers=headers),
    ):
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.headers["x-odsl-error"].startswith("[400] ")
    assert client.get("/api/object/v1/all", headers=auth()).get_json() == []


def test_longest_valid_environment(client):
    env = "E" + "x" * 63
    assert post(client, {"elements": [{"_id": "LONG"}]}, auth(environment=env)).status_code == 201
    assert client.get("/api/object/v1/private/LONG", headers=auth(environment=env)).status_code == 200
