"""Credentials in, a Principal out: bearer JWTs (algorithms fixed by key type) and API keys."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from batchsvc.config import Settings
from batchsvc.core.apikeys import KeyHasher, StoredKey, key_id_of, refusal
from batchsvc.core.identity import Principal

LEEWAY_SECONDS = 30
# Verified tokens are remembered briefly: a loader sends the same token with every batch,
# and checking its signature each time is a measurable part of a small batch's cost.
CACHE_SECONDS = 60
CACHE_SIZE = 4096
USER_CLAIMS = ("email", "preferred_username", "upn", "sub")
# Stored keys are remembered per worker for this long, so a loader's key costs no query per
# batch; a revoked key stops working on every worker within it (the spec allows 5 s).
API_KEY_CACHE_SECONDS = 4.0
EMAIL_HEADER, KEY_HEADER = "x-odsl-email", "x-odsl-key"
INVALID_KEY = "invalid API key"


class AuthError(Exception):
    """The token is missing or cannot be trusted (HTTP 401)."""


def _algorithm_for(key) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    raise ValueError("BATCHSVC_JWT_PUBLIC_KEY must be an RSA or EC (P-256) public key")


class TokenVerifier:
    """Verifies tokens against the configured secret, public key or JWKS endpoint."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._secret = settings.effective_secret()
        self._public_key = None
        self._jwks = None
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> (principal, trusted until)
        if settings.jwt_public_key:
            self._public_key = load_pem_public_key(settings.jwt_public_key.encode())
            self._public_algorithm = _algorithm_for(self._public_key)
        if settings.jwt_jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def _keys(self, token: str):
        """(key, [algorithm]) pairs to try; the token's own header never picks the algorithm."""
        candidates = []
        if self._jwks is not None:
            try:
                signing_key = self._jwks.get_signing_key_from_jwt(token)
            except jwt.PyJWKClientError as exc:
                raise AuthError(f"no signing key for this token: {exc}") from None
            except jwt.InvalidTokenError:
                raise AuthError("malformed token") from None
            algorithm = _algorithm_for(signing_key.key)
            candidates.append((signing_key.key, [algorithm]))
        if self._public_key is not None:
            candidates.append((self._public_key, [self._public_algorithm]))
        if self._secret:
            candidates.append((self._secret, ["HS256"]))
        return candidates

    def verify(self, header: str | None) -> Principal:
        if not header:
            raise AuthError("missing bearer token (Authorization: Bearer <JWT>)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <JWT>'")
        token = token.strip()
        remembered = self._verified.get(token)
        if remembered is not None and time.time() < remembered[1]:
            return remembered[0]
        principal, expires = self._decode(token)
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, min(expires + LEEWAY_SECONDS, time.time() + CACHE_SECONDS))
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        """(principal, expiry time) of a token whose signature and claims check out."""
        options = {"require": ["exp"]}
        last_error = "invalid token"
        for key, algorithms in self._keys(token):
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=algorithms,
                    audience=self.settings.jwt_audience,
                    issuer=self.settings.jwt_issuer,
                    leeway=LEEWAY_SECONDS,
                    options={**options, "verify_aud": self.settings.jwt_audience is not None},
                )
                return self._principal(claims), float(claims["exp"])
            except jwt.ExpiredSignatureError:
                raise AuthError("token has expired") from None
            except jwt.InvalidTokenError as exc:
                last_error = f"invalid token: {exc}"
        raise AuthError(last_error)

    def _principal(self, claims: dict) -> Principal:
        tenant = claims.get(self.settings.tenant_claim)
        if not isinstance(tenant, str) or not tenant or len(tenant) > 256:
            raise AuthError(f"token has no tenant claim {self.settings.tenant_claim!r}")
        user = next((claims[c] for c in USER_CLAIMS if isinstance(claims.get(c), str) and claims[c]), None)
        if user is None:
            raise AuthError("token names no user (email, preferred_username, upn or sub)")
        roles = set(self.settings.default_roles)
        if isinstance(claims.get("roles"), list):
            roles.update(r for r in claims["roles"] if isinstance(r, str))
        if isinstance(claims.get("scp"), str):
            roles.update(claims["scp"].split())
        return Principal(user=user, tenant=tenant, roles=frozenset(roles))


class ApiKeyVerifier:
    """Verifies an (email, API key) pair against the stored keyed hash of that key."""

    def __init__(self, settings: Settings, find: Callable[[str], list[StoredKey]]):
        self.enabled = settings.api_keys
        pepper = settings.api_key_pepper()
        self.hasher = KeyHasher(pepper) if pepper else None
        self._find = find
        self._stored: dict[str, tuple[list[StoredKey], float]] = {}  # key id -> (rows, fetched at)

    def verify(self, email: str, key: str) -> Principal:
        if not self.enabled:
            raise AuthError("API-key logins are turned off on this service (BATCHSVC_API_KEYS=off)")
        if self.hasher is None:
            raise AuthError("API keys are not configured on this service (it has no BATCHSVC_API_KEY_SECRET)")
        key_id = key_id_of(key)
        if key_id is None:
            raise AuthError(INVALID_KEY)
        digest = self.hasher.hash(key)
        # Compared in constant time; ids are random, so there is one candidate in practice.
        matched = [stored for stored in self._rows(key_id) if hmac.compare_digest(stored.key_hash, digest)]
        if not matched:
            raise AuthError(INVALID_KEY)
        reason = refusal(matched[0], email, datetime.now(UTC))
        if reason:
            raise AuthError(reason)
        return matched[0].principal()

    def _rows(self, key_id: str) -> list[StoredKey]:
        now = time.monotonic()
        remembered = self._stored.get(key_id)
        if remembered is not None and now - remembered[1] < API_KEY_CACHE_SECONDS:
            return remembered[0]
        rows = self._find(key_id)
        if len(self._stored) >= CACHE_SIZE:
            self._stored.clear()
        self._stored[key_id] = (rows, now)
        return rows


def _basic_credentials(encoded: str) -> tuple[str, str]:
    """(email, key) of Basic credentials, base64(<email>:<key>) as odsl's loginWithAPIKey sends."""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    email, colon, key = decoded.partition(":")
    if not (colon and email and key):
        raise AuthError("malformed Basic credentials: expected base64(<email>:<API key>)")
    return email, key


class Authenticator:
    """Picks the credentials a request carries: a bearer JWT, Basic email:key, or the
    x-odsl-email and x-odsl-key headers."""

    def __init__(self, tokens: TokenVerifier, api_keys: ApiKeyVerifier):
        self.tokens = tokens
        self.api_keys = api_keys

    def verify(self, headers: Mapping[str, str]) -> Principal:
        header = headers.get("Authorization")
        if header:
            scheme, _, credentials = header.strip().partition(" ")
            if scheme.lower() == "basic":
                return self.api_keys.verify(*_basic_credentials(credentials))
            return self.tokens.verify(header)
        email, key = headers.get(EMAIL_HEADER), headers.get(KEY_HEADER)
        if email or key:
            if not (email and key and email.strip() and key.strip()):
                raise AuthError(f"an API-key login needs both {EMAIL_HEADER} and {KEY_HEADER}")
            return self.api_keys.verify(email.strip(), key.strip())
        raise AuthError(
            "missing credentials: send Authorization: Bearer <JWT>, or an API key "
            f"(Authorization: Basic base64(<email>:<key>), or {EMAIL_HEADER} and {KEY_HEADER})"
        )


def mint_token(
    secret: str, *, tenant: str, user: str, roles, tenant_claim: str = "tid", ttl: int = 86400, **extra
) -> str:
    """An HS256 token for development and tests."""
    now = int(time.time())
    claims = {"sub": user, tenant_claim: tenant, "roles": list(roles), "iat": now, "exp": now + ttl, **extra}
    return jwt.encode(claims, secret, algorithm="HS256")
