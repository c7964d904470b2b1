"""The batch path's raw transaction: a pooled psycopg2 connection, its cursor, prepared statements, driver errors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions

from batchsvc.core.errors import ConnectionLost, Retryable
from batchsvc.db import Database

# SQLSTATEs after which the whole transaction may simply run again, by the name retries report.
RETRYABLE = {"40001": "serialization", "40P01": "deadlock", "55P03": "lock_timeout"}


@dataclass(frozen=True)
class Prepared:
    """A statement of the batch hot path, parsed and planned once per connection (see `statements.PREPARED`)."""

    name: str
    prepare_sql: str  # PREPARE name(types) AS ... with $n placeholders
    execute_sql: str  # EXECUTE name(%(param)s, ...) for psycopg2 to bind


def prepared(name: str, sql: str, /, **types: str) -> Prepared:
    """A prepared statement: `sql` with named placeholders, `types` mapping each placeholder to
    its SQL type in `$n` order."""
    positional = sql
    for number, param in enumerate(types, 1):
        positional = positional.replace(f"%({param})s", f"${number}")
    return Prepared(
        name,
        prepare_sql=f"PREPARE {name}({', '.join(types.values())}) AS {positional}",
        execute_sql=f"EXECUTE {name}({', '.join(f'%({param})s' for param in types)})",
    )


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings, for a `text[]` parameter.

    psycopg2 would send a list as ARRAY['a', 'b', ...]: one SQL literal per element for the
    server's parser, about twice the work on both sides for a 50,000-element batch. Every
    element is quoted, so commas, braces, quotes, spaces and the word NULL stay plain data.
    """
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


def int_array(values: Iterable[int]) -> str:
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


@contextmanager
def raw_transaction(database: Database, statements: tuple[Prepared, ...]) -> Iterator[TransactionCursor]:
    """A TransactionCursor on a pooled psycopg2 connection with `statements` prepared:
    committed when the block ends, rolled back when it raises.

    Driver errors leave as the domain's: a deadlock, serialization failure or lock timeout as
    `Retryable`; a server gone away (a restart, a terminated backend) as `ConnectionLost`,
    after dropping that connection and the rest of the pool, most likely dead the same way.
    """
    connection = database.engine.raw_connection()
    driver = connection.dbapi_connection  # the psycopg2 connection itself: the pool's proxy only forwards reads
    cursor = None
    try:
        driver.autocommit = True
        names = [s.name for s in statements]
        if connection.info.get("prepared") != names:
            with driver.cursor() as setup:
                setup.execute("DEALLOCATE ALL;" + ";".join(s.prepare_sql for s in statements))
            connection.info["prepared"] = names
        cursor = driver.cursor(cursor_factory=TransactionCursor)
        yield cursor
        cursor.commit()
    except BaseException as exc:
        if cursor is not None and not driver.closed:
            try:
                cursor.rollback()
            except psycopg2.Error:
                pass  # a connection that broke now is handled below
        if driver.closed:  # psycopg2 marks a connection closed when its server went away
            connection.invalidate(exc)
            database.engine.dispose()
            raise ConnectionLost(str(exc).strip()) from exc
        cause = RETRYABLE.get(getattr(exc, "pgcode", None) or "")
        if cause is not None:
            raise Retryable(cause, str(exc).strip()) from exc
        raise
    finally:
        if connection.is_valid:  # back to the pool as other users expect it
            driver.autocommit = False
        connection.close()
