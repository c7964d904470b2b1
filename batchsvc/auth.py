"""Bearer token verification: a JWT in, a Principal out; algorithms fixed by key type."""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from batchsvc.config import Settings
from batchsvc.core.identity import Principal

LEEWAY_SECONDS = 30
# Verified tokens are remembered briefly: a loader sends the same token with every batch,
# and checking its signature each time is a measurable part of a small batch's cost.
CACHE_SECONDS = 60
CACHE_SIZE = 4096
USER_CLAIMS = ("email", "preferred_username", "upn", "sub")


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


def mint_token(
    secret: str, *, tenant: str, user: str, roles, tenant_claim: str = "tid", ttl: int = 86400, **extra
) -> str:
    """An HS256 token for development and tests."""
    now = int(time.time())
    claims = {"sub": user, tenant_claim: tenant, "roles": list(roles), "iat": now, "exp": now + ttl, **extra}
    return jwt.encode(claims, secret, algorithm="HS256")
