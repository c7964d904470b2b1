"""Persistence: every SQL statement, the batch transaction, driver errors as the domain's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

import psycopg2
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from batchsvc.core.errors import DomainError, Unavailable
from batchsvc.core.identity import Scope
from batchsvc.db import Database
from batchsvc.store import history
from batchsvc.store.batches import PREPARED, BatchStore
from batchsvc.store.reads import Reader
from batchsvc.store.transaction import raw_transaction

# Errors of the driver, the pool or SQLAlchemy that mean the database cannot be used right now.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout, psycopg2.OperationalError, psycopg2.InterfaceError)
_QUERY_CANCELED = "57014"  # what a statement_timeout raises


class Store:
    """The store of one process: batch transactions and readers, each bound to one scope."""

    def __init__(self, database: Database):
        self.database = database

    def batch_transaction(self, scope: Scope) -> Callable[[], AbstractContextManager[BatchStore]]:
        """What core.batches.apply_batch opens, once per attempt: a BatchStore on a fresh transaction."""

        @contextmanager
        def transaction() -> Iterator[BatchStore]:
            with raw_transaction(self.database, PREPARED) as cursor:
                yield BatchStore(cursor, scope)

        return transaction

    def reader(self, session: Session, scope: Scope) -> Reader:
        return Reader(session, scope)

    def history_reader(self, session: Session, scope: Scope) -> history.HistoryReader:
        return history.HistoryReader(session, scope)

    def prune_history(self, before: datetime) -> dict[str, int]:
        """Drop history superseded before `before` in every tenant and environment (its own transaction)."""
        with self.database.session() as session:
            return history.prune(session, before)


def as_unavailable(exc: Exception) -> DomainError:
    """A database that cannot be used (down, gone mid-transaction, too slow) as the domain's error."""
    if getattr(getattr(exc, "orig", exc), "pgcode", None) == _QUERY_CANCELED:
        return Unavailable(
            "the database did not finish in time (statement timeout); retry later or send a smaller batch"
        )
    return Unavailable("the database is unavailable; retry shortly")
