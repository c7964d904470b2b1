"""Declarative base with a naming convention, the engine and sessions of one process."""

from __future__ import annotations

import os
import threading
import time

import orjson
import psycopg2
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# A pooled connection idle for longer than this is pinged before use (see _ping_when_idle).
IDLE_PING_SECONDS = 1.0


def make_engine(url: str, *, pool_size: int = 10, statement_timeout_ms: int = 600_000) -> Engine:
    engine = create_engine(
        url,
        # orjson reads JSONB numbers the way the body parser did: an integer past 64 bits (how
        # PostgreSQL prints a stored 1e20) comes back as the double that was sent, never as an int
        # that cannot be serialised again.
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": 5,
            # No JIT: a big batch's upsert, planned for its actual arrays, costs enough to be
            # JIT-compiled, which takes longer (~200 ms) than running it; nothing here is analytic.
            "options": f"-c statement_timeout={statement_timeout_ms} -c TimeZone=UTC -c jit=off",
            "application_name": "batchsvc",
        },
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping, but only connections that sat idle: a restarted database is noticed and
    reconnected without a restart, and a busy service does not pay a round trip per request.

    A connection that breaks while in use invalidates the pool (SQLAlchemy's disconnect
    handling for sessions, `Database.transaction` for batches, which are then retried), so
    a restart costs each worker at most the read that was in flight.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_PING_SECONDS:
            return
        autocommit = dbapi_connection.autocommit
        try:
            dbapi_connection.autocommit = True
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.autocommit = autocommit
        except psycopg2.Error as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool reconnects and checks out again


class Database:
    """Engine and session factory of one process, created lazily after any fork.

    gunicorn forks workers after importing the app; a pool inherited across a fork would
    share sockets between processes, so each process builds its own on first use.
    """

    def __init__(self, url_factory, *, pool_size: int = 10, statement_timeout_ms: int = 600_000):
        self._url_factory = url_factory
        self._pool_size = pool_size
        self._statement_timeout_ms = statement_timeout_ms
        self._lock = threading.Lock()
        self._pid = None
        self._engine = None
        self._sessionmaker = None

    @property
    def engine(self) -> Engine:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._engine = make_engine(
                        self._url_factory(),
                        pool_size=self._pool_size,
                        statement_timeout_ms=self._statement_timeout_ms,
                    )
                    self._sessionmaker = sessionmaker(self._engine, expire_on_commit=False)
                    self._pid = os.getpid()
        return self._engine

    def session(self) -> Session:
        self.engine  # noqa: B018 - makes sure the factory belongs to this process
        return self._sessionmaker()

    def connections_in_use(self) -> int:
        """Connections of this process's pool checked out right now (0 before the pool exists)."""
        engine = self._engine
        if engine is None or self._pid != os.getpid():
            return 0
        return engine.pool.checkedout()

    def dispose(self) -> None:
        if self._engine is not None and self._pid == os.getpid():
            self._engine.dispose()
        self._pid = None
