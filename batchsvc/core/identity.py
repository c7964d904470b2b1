"""Who is calling: the principal a verified token stands for, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass

from batchsvc.core.errors import Forbidden

READ, WRITE, ADMIN = "batch.read", "batch.write", "batch.admin"

# The id and name rules every layer uses (schemas, OpenAPI, checks): written once, here.
BATCH_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
BATCH_ID_RULE = "1-128 characters of A-Za-z0-9._:-"
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_ENVIRONMENT = "production"
MAX_ID_LENGTH = 256  # object ids, event ids
MAX_TEXT_LENGTH = 256  # name, service, loader, correlationId, description, reason
SOURCES = ("private", "public", "all")
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


def is_public(object_id: str) -> bool:
    """Ids starting with '#' are public objects (only batch.admin writes them)."""
    return object_id.startswith("#")


def visible(source: str, object_id: str) -> bool:
    """Whether `source` (private, public or all) shows the object `object_id`."""
    return source == "all" or (source == "public") == is_public(object_id)


def source_problem(source: str, object_id: str) -> str | None:
    """Why writing `object_id` through `source` is refused, or None: a write may only touch
    what that source shows (private ids without '#', public ids with '#', all both)."""
    if visible(source, object_id):
        return None
    if is_public(object_id):
        return f"a public id (starting with '#') cannot be written to source {source}: use public or all"
    return f"a private id (not starting with '#') cannot be written to source {source}: use private or all"
