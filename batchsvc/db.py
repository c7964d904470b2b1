"""Declarative base with a naming convention, the engine, sessions, and the batch path's raw transactions."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
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
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={statement_timeout_ms} -c TimeZone=UTC",
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


@dataclass(frozen=True)
class Prepared:
    """A statement of the batch hot path, parsed and planned once per connection: every
    connection prepares all of them (see `PREPARED`) the first time a transaction uses it."""

    name: str
    prepare_sql: str  # PREPARE name(types) AS ... with $n placeholders
    execute_sql: str  # EXECUTE name(%(param)s, ...) for psycopg2 to bind


PREPARED: dict[str, Prepared] = {}


def prepared(name: str, sql: str, /, **types: str) -> Prepared:
    """Declare a prepared statement: `sql` with named placeholders, `types` mapping each
    placeholder to its SQL type in `$n` order."""
    positional = sql
    for number, param in enumerate(types, 1):
        positional = positional.replace(f"%({param})s", f"${number}")
    statement = Prepared(
        name,
        prepare_sql=f"PREPARE {name}({', '.join(types.values())}) AS {positional}",
        execute_sql=f"EXECUTE {name}({', '.join(f'%({param})s' for param in types)})",
    )
    PREPARED[name] = statement
    return statement


def text_array(values) -> str:
    """A PostgreSQL array literal of strings, for a `text[]` parameter.

    psycopg2 would send a list as ARRAY['a', 'b', ...]: one SQL literal per element for the
    server's parser, about twice the work on both sides for a 50,000-element batch. Every
    element is quoted, so commas, braces, quotes, spaces and the word NULL stay plain data.
    """
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


def int_array(values) -> str:
    """A PostgreSQL array literal of integers, for an `int[]` parameter."""
    return "{" + ",".join(map(str, values)) + "}"


class TransactionCursor(psycopg2.extensions.cursor):
    """A cursor that spends no round trip of its own on BEGIN, nor on statements whose results
    nobody reads: the connection is in autocommit mode, the first statement carries BEGIN and
    `defer`red statements travel with the next one.

    COMMIT always goes alone, after every write has succeeded: a worker killed before it
    leaves an open transaction that PostgreSQL rolls back when the connection drops.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.began = False
        self.ended = False
        self._queued: list[bytes] = []

    def execute(self, query, vars=None):
        text = self.mogrify(query, vars) if vars is not None else query
        self._queued.append(text if isinstance(text, bytes) else text.encode())
        self.flush()

    def run(self, statement: Prepared, params: dict) -> None:
        self.execute(statement.execute_sql, params)

    def defer(self, statement: Prepared | str, params: dict) -> None:
        """Queue a statement whose result nobody reads; it travels with the next message."""
        sql = statement.execute_sql if isinstance(statement, Prepared) else statement
        self._queued.append(self.mogrify(sql, params))

    def flush(self) -> None:
        """Send the deferred statements (with BEGIN, if this is the first message)."""
        if not self._queued:
            return
        if not self.began:
            self.began = True
            self._queued.insert(0, b"BEGIN")
        message, self._queued = b";".join(self._queued), []
        super().execute(message)

    def commit(self) -> None:
        self.flush()
        if self.began:
            super().execute("COMMIT")
        self.ended = True

    def rollback(self) -> None:
        self._queued = []
        if self.began and not self.ended:
            self.ended = True
            super().execute("ROLLBACK")


class ConnectionLost(Exception):
    """The database connection broke during a transaction: nothing was committed, or the
    commit's fate is unknown. Retrying on a fresh connection is safe for idempotent work."""


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

    @contextmanager
    def transaction(self):
        """A TransactionCursor on a pooled psycopg2 connection, for the hot write path:
        committed when the block ends, rolled back when it raises.

        When the server went away under it (a restart, a terminated backend) the connection
        is dropped and so is the rest of the pool, most likely dead the same way; the pool
        reconnects on demand and ConnectionLost tells the caller it may retry.
        """
        connection = self.engine.raw_connection()
        driver = connection.dbapi_connection  # the psycopg2 connection itself: the pool's proxy only forwards reads
        cursor = None
        try:
            driver.autocommit = True
            if connection.info.get("prepared") != PREPARED.keys():
                with driver.cursor() as setup:
                    setup.execute("DEALLOCATE ALL;" + ";".join(s.prepare_sql for s in PREPARED.values()))
                connection.info["prepared"] = set(PREPARED)
            cursor = driver.cursor(cursor_factory=TransactionCursor)
            yield cursor
            cursor.commit()
        except BaseException as exc:
            if cursor is not None and not driver.closed:
                try:
                    cursor.rollback()
                except psycopg2.Error:
                    pass  # a connection that broke now is handled below
            if not driver.closed:  # psycopg2 marks a connection closed when its server went away
                raise
            connection.invalidate(exc)
            self.engine.dispose()
            raise ConnectionLost(str(exc).strip()) from exc
        finally:
            if connection.is_valid:  # back to the pool as other users expect it
                driver.autocommit = False
            connection.close()

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
