"""Domain errors; the HTTP edge maps them to status codes in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class InvalidInput(DomainError):
    """The request is malformed or breaks a rule; nothing was changed."""


class TooLarge(DomainError):
    """The request is over a configured size limit."""


class NotFound(DomainError):
    """No such resource for this tenant and environment."""


class Conflict(DomainError):
    """The resource exists in a state that forbids the request."""


class Forbidden(DomainError):
    """The caller is known but lacks the right for this action."""


class Unprocessable(DomainError):
    """The request was understood but what it asks for could not be written (an invalid object)."""


class Busy(DomainError):
    """The database kept refusing the transaction (deadlocks, lock timeouts); retry later."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """The database cannot be reached."""


class Retryable(Exception):
    """The database refused this transaction in a way that a retry of the whole transaction
    can cure (deadlock, serialization failure, lock timeout). `cause` names which."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(detail or cause)
        self.cause = cause


class ConnectionLost(Exception):
    """The database connection broke during a transaction: nothing was committed, or the
    commit's fate is unknown. Retrying on a fresh connection is safe for idempotent work."""


class NotConfigured(DomainError):
    """The service lacks the configuration this request needs (the message says which)."""


class Gone(DomainError):
    """What was asked for existed, but its history was pruned (retention, SPEC §12)."""
