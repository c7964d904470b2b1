"""Settings read once from the environment and validated at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from sqlalchemy.engine import make_url

DEV_SECRET = "batchsvc-development-secret-do-not-use-in-production"
_SWITCH = {"on": True, "1": True, "true": True, "off": False, "0": False, "false": False}
LOG_FORMATS = ("json", "text")


class ConfigError(RuntimeError):
    """The configuration cannot run the service; the message says what to set."""


def _int(env, name, default):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _switch(env, name, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in _SWITCH:
        raise ConfigError(f"{name} must be on or off, got {raw[:32]!r}")
    return _SWITCH[raw]


def normalise_database_url(url: str) -> str:
    """Make hosting-style URLs run on psycopg2 (SQLAlchemy 2.1 would pick psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same database as psycopg2.connect/libpq take it: a plain postgresql:// URL, password kept."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    tenant_claim: str = "tid"
    default_roles: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024 * 1024
    max_elements: int = 50_000
    dev: bool = False
    db_pool_size: int = 10
    db_statement_timeout_ms: int = 600_000
    retry_attempts: int = 5
    api_keys: bool = True
    api_key_secret: str | None = None
    metrics_token: str | None = None
    log_format: str = "json"
    # Per-request metrics and the request log; only the benchmark's baseline turns them off.
    observe_requests: bool = True
    instance_path: str = field(default="instance")

    @classmethod
    def from_env(cls, env=None, **overrides) -> Settings:
        env = os.environ if env is None else env
        roles = tuple(r.strip() for r in env.get("BATCHSVC_DEFAULT_ROLES", "").split(",") if r.strip())
        values = dict(
            database_url=env.get("DATABASE_URL") or None,
            jwt_secret=env.get("BATCHSVC_JWT_SECRET") or None,
            jwt_public_key=env.get("BATCHSVC_JWT_PUBLIC_KEY") or None,
            jwt_jwks_url=env.get("BATCHSVC_JWT_JWKS_URL") or None,
            jwt_audience=env.get("BATCHSVC_JWT_AUDIENCE") or None,
            jwt_issuer=env.get("BATCHSVC_JWT_ISSUER") or None,
            tenant_claim=env.get("BATCHSVC_TENANT_CLAIM") or "tid",
            default_roles=roles,
            max_body_bytes=_int(env, "BATCHSVC_MAX_BODY_BYTES", cls.max_body_bytes),
            max_elements=_int(env, "BATCHSVC_MAX_ELEMENTS", cls.max_elements),
            dev=env.get("BATCHSVC_DEV", "") == "1",
            db_pool_size=_int(env, "BATCHSVC_DB_POOL_SIZE", cls.db_pool_size),
            db_statement_timeout_ms=_int(env, "BATCHSVC_DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms),
            retry_attempts=_int(env, "BATCHSVC_RETRY_ATTEMPTS", cls.retry_attempts),
            api_keys=_switch(env, "BATCHSVC_API_KEYS", cls.api_keys),
            api_key_secret=env.get("BATCHSVC_API_KEY_SECRET") or None,
            metrics_token=env.get("BATCHSVC_METRICS_TOKEN") or None,
            log_format=(env.get("BATCHSVC_LOG_FORMAT") or "json").strip().lower(),
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def has_key(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key or self.jwt_jwks_url)

    def validate(self) -> None:
        if not self.has_key and not self.dev:
            raise ConfigError(
                "no token key configured: set BATCHSVC_JWT_SECRET (HS256), "
                "BATCHSVC_JWT_PUBLIC_KEY (RS256/ES256 PEM) or BATCHSVC_JWT_JWKS_URL; "
                "or BATCHSVC_DEV=1 for development mode"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"BATCHSVC_LOG_FORMAT must be json or text, got {self.log_format!r}")

    def effective_secret(self) -> str | None:
        """The HS256 secret in force: the configured one, or the dev secret in dev mode."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.dev and not (self.jwt_public_key or self.jwt_jwks_url):
            return DEV_SECRET
        return None

    def api_key_pepper(self) -> str | None:
        """The secret API-key hashes are keyed with: BATCHSVC_API_KEY_SECRET, else the HS256
        secret (the dev secret in dev mode); None when neither exists (API keys unusable)."""
        if self.api_key_secret:
            return self.api_key_secret
        if self.jwt_secret:
            return self.jwt_secret
        return DEV_SECRET if self.dev else None

    def resolved_database_url(self) -> str:
        return database_url_from_env({"DATABASE_URL": self.database_url or ""}, self.instance_path)


def database_url_from_env(env=None, instance_path: str = "instance") -> str:
    """The database URL migrations and tools use: DATABASE_URL, or the embedded server."""
    env = os.environ if env is None else env
    if env.get("DATABASE_URL"):
        return normalise_database_url(env["DATABASE_URL"])
    from batchsvc import embedded  # only the embedded mode needs the server package

    return normalise_database_url(embedded.database_url(instance_path))
