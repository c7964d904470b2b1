"""Who is calling: the principal a verified token stands for, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass

from batchsvc.core.errors import Forbidden

READ, WRITE, ADMIN = "batch.read", "batch.write", "batch.admin"
_IMPLIED = {READ: {READ, WRITE, ADMIN}, WRITE: {WRITE, ADMIN}, ADMIN: {ADMIN}}


@dataclass(frozen=True)
class Principal:
    user: str
    tenant: str
    roles: frozenset[str]

    def can(self, role: str) -> bool:
        return bool(self.roles & _IMPLIED[role])

    def require(self, role: str) -> None:
        if not self.can(role):
            raise Forbidden(f"this action needs the role {role}")

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


@dataclass(frozen=True)
class Scope:
    """The rows a request may see: one tenant's, in one environment."""

    tenant: str
    environment: str
