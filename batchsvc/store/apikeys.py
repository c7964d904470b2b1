"""SQL of API keys: insert, page, read and revoke a tenant's keys; find a key by id at login."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime

from sqlalchemy import func, insert, select, update

from batchsvc.core.apikeys import StoredKey
from batchsvc.db import Database
from batchsvc.models import ApiKey

# A StoredKey's fields are the table's columns, name for name.
_COLUMNS = tuple(getattr(ApiKey, f.name) for f in fields(StoredKey))


def _stored(row) -> StoredKey:
    return StoredKey(**{**row._mapping, "roles": tuple(row.roles)})


class ApiKeyStore:
    """API keys in PostgreSQL; each call is one short transaction on a pooled connection."""

    def __init__(self, database: Database):
        self.database = database

    def insert(self, stored: StoredKey) -> None:
        with self.database.engine.begin() as connection:
            connection.execute(
                insert(ApiKey).values({**asdict(stored), "roles": list(stored.roles), "revoked_at": None})
            )

    def page(self, tenant: str, limit: int, skip: int) -> tuple[int, list[StoredKey]]:
        """The tenant's live (unrevoked) keys, newest first, and how many there are."""
        live = (ApiKey.tenant == tenant, ApiKey.revoked_at.is_(None))
        with self.database.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(ApiKey).where(*live)).scalar_one()
            rows = connection.execute(
                select(*_COLUMNS).where(*live).order_by(ApiKey.created.desc(), ApiKey.id).limit(limit).offset(skip)
            )
            return total, [_stored(row) for row in rows]

    def get(self, tenant: str, key_id: str) -> StoredKey | None:
        """One live key of the tenant."""
        with self.database.engine.connect() as connection:
            row = connection.execute(
                select(*_COLUMNS).where(ApiKey.tenant == tenant, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            ).first()
        return _stored(row) if row else None

    def revoke(self, key_id: str, now: datetime, tenant: str | None = None) -> bool:
        """Mark a live key revoked (only the tenant's, when given); False when there was none."""
        where = [ApiKey.id == key_id, ApiKey.revoked_at.is_(None)]
        if tenant is not None:
            where.append(ApiKey.tenant == tenant)
        with self.database.engine.begin() as connection:
            return connection.execute(update(ApiKey).where(*where).values(revoked_at=now)).rowcount > 0

    def find(self, key_id: str) -> list[StoredKey]:
        """Every key with this id, in any tenant and state (ids are random: at most one, in practice)."""
        with self.database.engine.connect() as connection:
            return [_stored(row) for row in connection.execute(select(*_COLUMNS).where(ApiKey.id == key_id))]
