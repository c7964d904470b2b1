"""The database plumbing of the batch hot path: array literals, the transaction cursor, prepared statements."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg2
import pytest
from conftest import db_rows

from batchsvc.core.identity import Scope
from batchsvc.core.typed import DataWrites
from batchsvc.store.batches import PREPARED, BatchStore
from batchsvc.store.transaction import int_array, raw_transaction, text_array

AWKWARD = [
    "a",
    "b,c",
    "{x}",
    'say "hi"',
    "back\\slash",
    " padded ",
    "NULL",
    "",
    "é€😀",
    '\\"',
    "tab\there",
    "it's",
    "%s %(x)s",
]


def test_array_literals_carry_any_string_unchanged(database):
    with raw_transaction(database, PREPARED) as cursor:
        cursor.execute(
            "SELECT %s::text[], %s::int[], %s::text[]", (text_array(AWKWARD), int_array([3, -1, 0]), text_array([]))
        )
        assert cursor.fetchone() == (AWKWARD, [3, -1, 0], [])


def test_statements_commit_together_and_roll_back_together(database, db_url):
    insert = (
        'INSERT INTO batch_summaries (tenant, environment, id, timestamp, "user", status, source, body_hash, doc) '
        "VALUES ('t', 'e', %s, now(), 'u', 'success', 'private', 'h', '{}')"
    )
    with pytest.raises(psycopg2.errors.UniqueViolation), raw_transaction(database, PREPARED) as cursor:
        cursor.execute(insert, ("first",))
        cursor.execute(insert, ("first",))  # fails: the first insert goes with it
    assert db_rows(db_url, "SELECT count(*) FROM batch_summaries") == [(0,)]
    with pytest.raises(RuntimeError), raw_transaction(database, PREPARED) as cursor:
        cursor.execute(insert, ("second",))
        raise RuntimeError("the caller gives up")
    assert db_rows(db_url, "SELECT count(*) FROM batch_summaries") == [(0,)]
    with raw_transaction(database, PREPARED) as cursor:
        cursor.execute(insert, ("third",))
        assert db_rows(db_url, "SELECT count(*) FROM batch_summaries") == [(0,)]  # not visible before COMMIT
    assert db_rows(db_url, "SELECT id FROM batch_summaries") == [("third",)]


def test_every_connection_prepares_the_hot_statements(database):
    with raw_transaction(database, PREPARED) as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements ORDER BY name")
        names = [row[0] for row in cursor.fetchall()]
    assert names == sorted(s.name for s in PREPARED) and "batchsvc_upsert_objects" in names
    database.dispose()  # a new pool: fresh connections prepare again
    with raw_transaction(database, PREPARED) as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone() == (len(PREPARED),)


def test_the_transaction_is_ours_alone(database):
    """BEGIN travels with the first statement and COMMIT ends it: psycopg2 must not open
    (and the pool must not roll back) a transaction of its own around it."""
    with raw_transaction(database, PREPARED) as cursor:
        cursor.execute("SELECT 1")
        driver = cursor.connection
        assert driver.autocommit is True
    assert driver.autocommit is False  # handed back to the pool as SQLAlchemy expects it
    assert driver.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert [notice for notice in driver.notices if "transaction" in notice] == []


def test_data_rows_with_awkward_names_round_trip(database, db_url):
    scope = Scope("t", "e")
    writes = {}
    for index, name in enumerate(AWKWARD[:-2]):  # the empty string is no object id
        if not name:
            continue
        writes[name] = DataWrites(
            points={(name, datetime(2021, 7, 1, index, tzinfo=UTC)): {"time": "x", "value": index}},
            curves={(name, date(2021, 7, 1)): ({"contracts": [{"tenor": name}]}, False)},
            events={(name, name): (datetime(2021, 7, 1, tzinfo=UTC), {"_id": name})},
        )
    with raw_transaction(database, PREPARED) as cursor:
        BatchStore(cursor, scope).write_data([], writes, batch_id="awkward", now=datetime.now(UTC))
    points = db_rows(
        db_url,
        """SELECT s.object_id, s.property, c.vals[1], c.extras FROM series s
           JOIN series_chunks c ON c.tenant_key = s.tenant_key AND c.series_id = s.id ORDER BY c.vals[1]""",
    )
    # the time "x" is no rendering of its instant, so it is kept as sent, beside the value
    assert points == [
        (name, name, index, {str(int(datetime(2021, 7, 1, index, tzinfo=UTC).timestamp() * 10**6)): {"time": "x"}})
        for index, name in enumerate(AWKWARD[:-2])
        if name
    ]
    curves = db_rows(db_url, "SELECT object_id, property, doc->'contracts'->0->>'tenor' FROM curves")
    assert sorted(curves) == sorted((name, name, name) for name in writes)
    events = db_rows(db_url, "SELECT object_id, property, event_id FROM events")
    assert sorted(events) == sorted((name, name, name) for name in writes)
