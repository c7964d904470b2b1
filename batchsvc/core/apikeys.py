"""API keys: their format and hash, which roles a key may hold, and when a stored key admits a caller."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from batchsvc.core.errors import Forbidden, InvalidInput, NotFound
from batchsvc.core.identity import ADMIN, READ, WRITE, Principal
from batchsvc.core.times import iso

ROLES = (READ, WRITE, ADMIN)
KEY_PREFIX = "bsk"
KEY_ID_PATTERN = r"[0-9a-f]{24}"
# bsk_<key id>_<secret>: the id travels inside the key, so a login finds its row by id and
# compares one hash. token_urlsafe(32) gives 43 characters (256 random bits).
_KEY = re.compile(rf"^{KEY_PREFIX}_({KEY_ID_PATTERN})_[A-Za-z0-9_-]{{43}}$")
_KEY_ID = re.compile(rf"^{KEY_ID_PATTERN}$")
# An email without whitespace or ':' (Basic credentials split email:key at the first colon).
USER_PATTERN = r"^[^\s:@]{1,128}@[^\s:@]{1,127}$"
_USER = re.compile(USER_PATTERN)
MAX_NAME = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Keys are hashed with a key derived from the configured secret, never with the secret itself,
# so the hashes say nothing about the JWT secret they may be derived from.
_PEPPER_LABEL = b"batchsvc/api-key-hash/v1"


class KeyHasher:
    """HMAC-SHA256 of keys under the server's pepper: what the store keeps instead of a key."""

    def __init__(self, secret: str):
        self._pepper = hmac.new(secret.encode(), _PEPPER_LABEL, hashlib.sha256).digest()

    def hash(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()

    def matches(self, key: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(key), stored_hash)


def new_key() -> tuple[str, str]:
    """(key id, key) for a new key; the key is shown once and never stored."""
    key_id = secrets.token_hex(12)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    """The key id inside a well-formed key, or None for anything that cannot be a key."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def is_key_id(text: str) -> bool:
    return bool(_KEY_ID.match(text))


@dataclass(frozen=True)
class StoredKey:
    """A key as the store keeps it: everything but the key itself."""

    id: str
    tenant: str
    user: str
    roles: tuple[str, ...]
    name: str | None
    created: datetime
    expires: datetime | None
    revoked_at: datetime | None
    key_hash: str
    created_by: str | None = None

    def listing(self) -> dict:
        """The key as lists and reads show it: never the key, never its hash."""
        return {
            "_id": self.id,
            "name": self.name,
            "user": self.user,
            "roles": list(self.roles),
            "created": iso(self.created),
            "expires": iso(self.expires) if self.expires else None,
        }

    def principal(self) -> Principal:
        return Principal(user=self.user, tenant=self.tenant, roles=frozenset(self.roles))


def refusal(stored: StoredKey, email: str, now: datetime) -> str | None:
    """Why a key whose hash matched may not log in with `email` at `now`, or None when it may.

    `expires` is exact: the key stops working at that instant (no leeway, unlike a JWT's exp).
    """
    if stored.user.casefold() != email.casefold():
        return "API key and email do not match"
    if stored.revoked_at is not None:
        return "API key has been revoked"
    if stored.expires is not None and now >= stored.expires:
        return "API key has expired"
    return None


# -- Creating keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRequest:
    user: str
    roles: tuple[str, ...]
    name: str | None
    expires: datetime | None


def check_user(user) -> str:
    if not isinstance(user, str) or not _USER.match(user):
        raise InvalidInput("user must be the email address the key logs in with (no spaces or ':', at most 256)")
    return user


def check_roles(roles, creator: Principal | None) -> tuple[str, ...]:
    """Known roles, deduplicated; a creator may grant only roles it holds itself (403 otherwise).

    A role is held when the creator's roles imply it (batch.admin implies batch.write and
    batch.read), the same rule every route applies. `creator` None is the operator's CLI.
    """
    if not isinstance(roles, list | tuple) or not roles:
        raise InvalidInput(f"roles must be a non-empty list of {', '.join(ROLES)}")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InvalidInput(f"unknown role {str(unknown[0])[:64]!r}; roles are {', '.join(ROLES)}")
    granted = tuple(sorted(set(roles), key=ROLES.index))
    if creator is not None:
        beyond = [r for r in granted if not creator.can(r)]
        if beyond:
            raise Forbidden(f"a key's roles are at most its creator's: you do not hold {beyond[0]}")
    return granted


def check_name(name) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > MAX_NAME or _CONTROL.search(name):
        raise InvalidInput(f"name must be a string of at most {MAX_NAME} characters without control characters")
    return name


def parse_expires(raw, now: datetime) -> datetime | None:
    """None (never expires), or an ISO-8601 instant after `now`; a date means its midnight UTC,
    a time without an offset is UTC."""
    if raw is None:
        return None
    problem = "expires must be an ISO-8601 date or date-time, e.g. 2027-01-31T00:00:00Z"
    if not isinstance(raw, str) or not 10 <= len(raw) <= 40:
        raise InvalidInput(problem)
    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), datetime.min.time())
        else:
            moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= now:
        raise InvalidInput(f"expires {raw!r} is not in the future")
    return moment


def key_request(body, creator: Principal | None, now: datetime, default_user: str | None = None) -> KeyRequest:
    """A checked request for a new key from a JSON object {"user","roles","name","expires"}."""
    if not isinstance(body, dict):
        raise InvalidInput('body must be a JSON object {"user", "roles", "name", "expires"}')
    unknown = sorted(set(body) - {"user", "roles", "name", "expires"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0][:64]!r}; a key has user, roles, name and expires")
    return KeyRequest(
        user=check_user(body.get("user", default_user)),
        roles=check_roles(body.get("roles"), creator),
        name=check_name(body.get("name")),
        expires=parse_expires(body.get("expires"), now),
    )


# -- Use cases ----------------------------------------------------------------------------


class KeyStore(Protocol):
    def insert(self, stored: StoredKey) -> None: ...
    def page(self, tenant: str, limit: int, skip: int) -> tuple[int, list[StoredKey]]: ...
    def get(self, tenant: str, key_id: str) -> StoredKey | None: ...
    def revoke(self, key_id: str, now: datetime, tenant: str | None = None) -> bool: ...
    def find(self, key_id: str) -> list[StoredKey]: ...


def create_key(
    store: KeyStore, hasher: KeyHasher, tenant: str, request: KeyRequest, now: datetime, created_by: str | None
) -> dict:
    """Store a new key and return its listing plus the key, which is never shown again."""
    key_id, key = new_key()
    stored = StoredKey(
        id=key_id,
        tenant=tenant,
        user=request.user,
        roles=request.roles,
        name=request.name,
        created=now,
        expires=request.expires,
        revoked_at=None,
        key_hash=hasher.hash(key),
        created_by=created_by,
    )
    store.insert(stored)
    return {"_id": key_id, "key": key, **stored.listing()}


def get_key(store: KeyStore, tenant: str, key_id: str) -> dict:
    stored = store.get(tenant, key_id) if is_key_id(key_id) else None
    if stored is None:
        raise NotFound(f"no API key {key_id[:64]!r}")
    return stored.listing()


def list_keys(store: KeyStore, tenant: str, limit: int, skip: int) -> tuple[int, list[dict]]:
    total, keys = store.page(tenant, limit, skip)
    return total, [stored.listing() for stored in keys]


def revoke_key(store: KeyStore, key_id: str, now: datetime, tenant: str | None = None) -> None:
    """Revoke a live key (of `tenant`, when given); 404 for unknown or already revoked ids."""
    if not (is_key_id(key_id) and store.revoke(key_id, now, tenant)):
        raise NotFound(f"no API key {key_id[:64]!r}")
