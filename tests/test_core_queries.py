"""core.queries without Flask: parsing list parameters, bound filters, and lists on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import truncate
from sqlalchemy import column
from sqlalchemy.dialects import postgresql

from batchsvc.core import objects, summaries
from batchsvc.core.errors import InvalidInput
from batchsvc.core.identity import Scope
from batchsvc.core.queries import DEFAULT_LIMIT, MAX_LIMIT, Filter, ListQuery, parse_filter, parse_list_query
from batchsvc.core.times import iso
from batchsvc.db import Database
from batchsvc.models import StoredObject
from batchsvc.store import batches as stored
from batchsvc.store import lists
from batchsvc.store.reads import Reader
from batchsvc.store.transaction import raw_transaction

SCOPE = Scope(tenant="tenant-q", environment="production")
T0 = datetime(2024, 1, 6, 16, 20, 27, 433000, tzinfo=UTC)


def q(**params) -> ListQuery:
    return parse_list_query({name: [value] for name, value in params.items()})


# --- parsing --------------------------------------------------------------------------------


def test_defaults():
    query = parse_list_query({})
    assert (query.limit, query.skip, query.sort, query.search, query.filters) == (DEFAULT_LIMIT, 0, [], None, [])
    assert DEFAULT_LIMIT == 100 and MAX_LIMIT == 1000


def test_paging_search_and_filters_are_parsed():
    query = parse_list_query(
        {"_limit": ["5"], "_skip": ["10"], "_search": ["Fx"], "name": ["A"], "timestamp": ["gt(2024-01-01)"]}
    )
    assert (query.limit, query.skip, query.search) == (5, 10, "Fx")
    assert query.filters == [Filter("name", "eq", ("A",)), Filter("timestamp", "gt", ("2024-01-01",))]
    assert q(_limit="1000").limit == 1000
    assert q(_id="x", _version="2", _timestamp="gt(2024-01-01)").filters == [
        Filter("_id", "eq", ("x",)),
        Filter("_version", "eq", ("2",)),
        Filter("_timestamp", "gt", ("2024-01-01",)),
    ]


def test_both_sort_syntaxes_parse_the_same():
    assert q(_sort="name,-timestamp").sort == [("name", 1), ("timestamp", -1)]
    assert q(_sort='{"name":1,"timestamp":-1}').sort == [("name", 1), ("timestamp", -1)]
    assert q(_sort=" name , -size ").sort == [("name", 1), ("size", -1)]


@pytest.mark.parametrize(
    "params",
    [
        {"_limit": ["0"]},
        {"_limit": ["1001"]},
        {"_limit": ["ten"]},
        {"_limit": ["-1"]},
        {"_limit": [""]},
        {"_limit": ["99999999999999999999"]},
        {"_skip": ["-1"]},
        {"_skip": ["1.0"]},
        {"_sort": [""]},
        {"_sort": ["name;drop"]},
        {"_sort": ["name desc"]},
        {"_sort": ["1name"]},
        {"_sort": ['{"name":0}']},
        {"_sort": ['{"name":true}']},
        {"_sort": ["{}"]},
        {"_sort": ['{"name"']},
        {"_sort": ['["name"]']},
        {"_sort": ["name,"]},
        {"_other": ["1"]},
        {"na me": ["1"]},
        {"name'--": ["1"]},
        {"": ["x"]},
        {"name": ["a", "b"]},
    ],
)
def test_malformed_parameters_raise_invalid_input(params):
    with pytest.raises(InvalidInput):
        parse_list_query(params)


# --- filter clauses: every value is a bound parameter ---------------------------------------

TEXT = lists.Field(column("name"), "text")
WHEN = lists.Field(column("timestamp"), "datetime")
COUNT = lists.Field(column("size"), "int")


def filter_clause(name, field, raw):
    """One query parameter through both halves: parsed in core, turned into SQL in the store."""
    return lists.filter_clause(field, parse_filter(name, raw))


def compiled(clause):
    """(SQL text, bound values flattened) of a clause compiled for PostgreSQL."""
    result = clause.compile(dialect=postgresql.dialect())
    values = []
    for value in result.params.values():
        values.extend(value if isinstance(value, list) else [value])
    return str(result), values


def test_values_are_bound_never_formatted():
    nasty = "x' OR '1'='1'; DROP TABLE objects; --"
    sql, params = compiled(filter_clause("name", TEXT, nasty))
    assert nasty not in sql and "DROP" not in sql
    assert params == [nasty]
    sql, params = compiled(filter_clause("name", TEXT, f"in({nasty},b)"))
    assert "DROP" not in sql and params == [nasty, "b"]


@pytest.mark.parametrize(
    "raw, operator, values",
    [
        ("gt(2024-01-06T16:20:27.433Z)", ">", [T0]),
        ("gte(2024-01-06T16:20:27.433Z)", ">=", [T0]),
        ("lt(2024-01-06T16:20:27.433+00:00)", "<", [T0]),
        ("lte(2024-01-06T16:20:27.433Z)", "<=", [T0]),
        ("2024-01-06T16:20:27.433Z", "=", [T0]),
        ("range(2024-01-06,2024-01-07)", ">=", [datetime(2024, 1, 6, tzinfo=UTC), datetime(2024, 1, 7, tzinfo=UTC)]),
        ("in(2024-01-06T16:20:27.433Z, 2024-01-06)", "IN", [T0, datetime(2024, 1, 6, tzinfo=UTC)]),
        ("ne(2024-01-06T16:20:27.433Z)", "!=", [T0]),
    ],
)
def test_timestamp_functions_compile(raw, operator, values):
    sql, params = compiled(filter_clause("timestamp", WHEN, raw))
    assert operator in sql
    assert params == values


def test_naive_times_are_utc():
    _, params = compiled(filter_clause("timestamp", WHEN, "gt(2024-01-06T16:20:27)"))
    assert params[0].tzinfo is not None and params[0].utcoffset() == timedelta(0)


def test_int_fields_convert():
    assert compiled(filter_clause("size", COUNT, "gt(3)"))[1] == [3]
    assert compiled(filter_clause("size", COUNT, "range(1, 5)"))[1] == [1, 5]


@pytest.mark.parametrize(
    "field, raw",
    [
        (WHEN, "range(2024-01-01)"),
        (WHEN, "range(2024-01-01,2024-01-02,2024-01-03)"),
        (WHEN, "gt()"),
        (WHEN, "in()"),
        (WHEN, "lt(a,b)"),
        (WHEN, "yesterday"),
        (WHEN, "gt(2024-13-01)"),
        (COUNT, "abc"),
        (COUNT, "gt(1.5)"),
        (COUNT, "99999999999"),
        (TEXT, "bad\x00value"),
    ],
)
def test_malformed_filters_raise_invalid_input(field, raw):
    with pytest.raises(InvalidInput):
        filter_clause("f", field, raw)


def test_unknown_function_names_are_plain_values():
    sql, params = compiled(filter_clause("name", TEXT, "drop(table)"))
    assert params == ["drop(table)"] and "drop" not in sql.lower()
    assert "=" in str(filter_clause("name", TEXT, "x").compile(dialect=postgresql.dialect()))


# --- lists on PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def session(db_url):
    database = Database(lambda: db_url, pool_size=1)
    session = database.session()
    session.database = database
    yield session
    session.close()
    database.dispose()
    truncate(db_url)


def store_summary(session, scope, batch_id, *, minutes, name=None, status="success", user="u@example.com", size=1):
    finished = T0 + timedelta(minutes=minutes)
    doc = {
        "_id": batch_id,
        "user": user,
        "environment": scope.environment,
        "timestamp": iso(finished),
        "service": "svc",
        "name": name,
        "reason": "Update Batch",
        "loader": None,
        "correlationId": None,
        "description": None,
        "history": None,
        "source": "private",
        "status": status,
        "message": "Completed Successfully",
        "size": size,
        "summary": {"curves": {}, "series": {}, "matrix": {}, "events": {}, "failures": {}},
    }
    with raw_transaction(session.database, stored.PREPARED) as cursor:
        stored.BatchStore(cursor, scope).store_summary(doc, finished=finished, body_hash="0" * 64)


@pytest.fixture
def four(session):
    for minutes, (batch_id, name, status, size) in enumerate(
        [
            ("s1", "alpha", "success", 1),
            ("s2", None, "warning", 3),
            ("s3", "gamma", "failed", 2),
            ("s4", "delta", "success", 5),
        ]
    ):
        store_summary(session, SCOPE, batch_id, minutes=minutes, name=name, status=status, size=size)
    store_summary(session, Scope("tenant-other", "production"), "s9", minutes=9, name="alpha")
    store_summary(session, Scope("tenant-q", "staging"), "s8", minutes=8, name="alpha")
    return session


def ids(session, **params):
    total, items = summaries.list_summaries(Reader(session, SCOPE), "all", q(**params))
    return total, [item["_id"] for item in items]


def at(minutes: int) -> str:
    return iso(T0 + timedelta(minutes=minutes))


def test_scope_and_default_order(four):
    assert ids(four) == (4, ["s4", "s3", "s2", "s1"])
    assert summaries.list_summaries(Reader(four, Scope("tenant-other", "production")), "all", ListQuery())[0] == 1
    assert summaries.list_summaries(Reader(four, Scope("tenant-q", "staging")), "all", ListQuery())[0] == 1
    assert summaries.list_summaries(Reader(four, Scope("tenant-none", "production")), "all", ListQuery()) == (0, [])


def test_timestamp_bounds_are_exact(four):
    assert ids(four, timestamp=at(1)) == (1, ["s2"])
    assert ids(four, timestamp=f"gt({at(1)})") == (2, ["s4", "s3"])
    assert ids(four, timestamp=f"gte({at(1)})") == (3, ["s4", "s3", "s2"])
    assert ids(four, timestamp=f"lt({at(1)})") == (1, ["s1"])
    assert ids(four, timestamp=f"lte({at(1)})") == (2, ["s2", "s1"])
    assert ids(four, timestamp=f"range({at(1)},{at(2)})") == (2, ["s3", "s2"])
    assert ids(four, timestamp=f"in({at(0)},{at(3)})") == (2, ["s4", "s1"])
    assert ids(four, timestamp=f"ne({at(0)})") == (3, ["s4", "s3", "s2"])
    # other offsets name the same instant
    assert ids(four, timestamp="2024-01-06T17:21:27.433+01:00") == (1, ["s2"])


def test_paging_counts_all_matches(four):
    assert ids(four, _limit="2") == (4, ["s4", "s3"])
    assert ids(four, _limit="2", _skip="3") == (4, ["s1"])
    assert ids(four, _skip="4") == (4, [])
    assert ids(four, status="success", _limit="1") == (2, ["s4"])


def test_sort_puts_nulls_last_and_breaks_ties_by_newest(four):
    assert ids(four, _sort="name") == (4, ["s1", "s4", "s3", "s2"])
    assert ids(four, _sort="-name") == (4, ["s3", "s4", "s1", "s2"])
    assert ids(four, _sort="status") == (4, ["s3", "s4", "s1", "s2"])
    assert ids(four, _sort='{"size":-1}') == (4, ["s4", "s2", "s3", "s1"])
    with pytest.raises(InvalidInput):
        summaries.list_summaries(Reader(four, SCOPE), "all", q(_sort="body_hash"))
    with pytest.raises(InvalidInput):
        summaries.list_summaries(Reader(four, SCOPE), "all", q(tenant="tenant-other"))


def test_ne_keeps_rows_where_the_field_is_null(four):
    assert ids(four, name="ne(alpha)") == (3, ["s4", "s3", "s2"])
    assert ids(four, size="in(1,5)") == (2, ["s4", "s1"])


def test_search_escapes_like_wildcards(four):
    assert ids(four, _search="ALPH") == (1, ["s1"])
    assert ids(four, _search="a%a") == (0, [])
    assert ids(four, _search="g_mma") == (0, [])
    assert ids(four, _search="warn")[0] == 0  # status is not searched; message is
    assert ids(four, _search="completed")[0] == 4


def test_object_lists_on_postgresql(session):
    later = T0 + timedelta(seconds=1)

    def row(ident, doc, *, version=1, updated=T0, batch="ob-1", scope=SCOPE):
        return StoredObject(
            tenant=scope.tenant,
            environment=scope.environment,
            id=ident,
            doc=doc,
            version=version,
            created=T0,
            updated=updated,
            user="u",
            batch=batch,
        )

    with session.begin():
        session.add_all(
            [
                row("B", {"name": "bee", "kind": "x"}),
                row("#A", {"name": "pub"}),
                row("C", {"kind": "x", "n": 2}, version=2, updated=later, batch="ob-2"),
                row("C", {"kind": "x"}, scope=Scope("tenant-other", "production")),
            ]
        )

    def object_ids(source="all", **params):
        total, items = objects.list_objects(Reader(session, SCOPE), source, q(**params))
        return total, [item["_id"] for item in items]

    assert object_ids() == (3, ["C", "#A", "B"])
    assert object_ids("private") == (2, ["C", "B"])
    assert object_ids("public") == (1, ["#A"])
    assert object_ids(kind="x") == (2, ["C", "B"])
    assert object_ids(n="2") == (1, ["C"])
    assert object_ids(_version="2") == (1, ["C"])
    assert object_ids(_batch="ob-1") == (2, ["#A", "B"])
    assert object_ids(_timestamp=f"gt({iso(T0)})") == (1, ["C"])
    assert object_ids("private", _sort="-_id") == (2, ["C", "B"])
    assert object_ids(_search="BEE") == (1, ["B"])
    assert object_ids(_version="gt(1)", kind="x") == (1, ["C"])
    assert objects.list_objects(Reader(session, Scope("tenant-other", "production")), "all", ListQuery())[0] == 1
    assert objects.list_objects(Reader(session, Scope("tenant-q", "staging")), "all", ListQuery()) == (0, [])
