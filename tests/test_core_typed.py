"""Pure unit tests of typed-data recognition (batchsvc.core.typed): no database, no app."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from batchsvc.core.data import split_ref
from batchsvc.core.errors import InvalidInput
from batchsvc.core.objects import PendingWrite
from batchsvc.core.summaries import SummaryBuilder
from batchsvc.core.typed import (
    InvalidData,
    extract_data,
    merge_contracts,
    merge_headers,
    normalise_event,
    parse_date,
    parse_time,
)

UTC = UTC
NO_TIME_NO_CALENDAR = (
    "property 'P': observation #0 has no time; values without a time need a regular calendar"
    " (DAILY, BUSINESS or an ISO-8601 duration such as PT5M, PT1H or P1D), this series has no calendar"
)


# --- parse_time / parse_date ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, instant, day",
    [
        ("2021-07-01", datetime(2021, 7, 1, tzinfo=UTC), "2021-07-01"),
        ("2021-07-01T10:30:00", datetime(2021, 7, 1, 10, 30, tzinfo=UTC), "2021-07-01"),
        ("2021-07-01T10:30:00Z", datetime(2021, 7, 1, 10, 30, tzinfo=UTC), "2021-07-01"),
        ("2021-07-01T01:00:00+02:00", datetime(2021, 6, 30, 23, 0, tzinfo=UTC), "2021-07-01"),  # the date as written
        ("2021-07-01T22:00:00-05:00", datetime(2021, 7, 2, 3, 0, tzinfo=UTC), "2021-07-01"),
        ("2021-07-01T10:30:00.123456Z", datetime(2021, 7, 1, 10, 30, 0, 123456, tzinfo=UTC), "2021-07-01"),
    ],
)
def test_parse_time(text, instant, day):
    assert parse_time(text, "t") == (instant, day)
    assert parse_time(text, "t")[0].tzinfo == UTC


@pytest.mark.parametrize(
    "value, message",
    [
        ("2021-13-45", "t '2021-13-45' is not an ISO-8601 date or date-time"),
        ("yesterday", "t 'yesterday' is not an ISO-8601 date or date-time"),
        ("", "t must be an ISO-8601 date or date-time string"),
        (None, "t must be an ISO-8601 date or date-time string"),
        (20210701, "t must be an ISO-8601 date or date-time string"),
        (["2021-07-01"], "t must be an ISO-8601 date or date-time string"),
    ],
)
def test_parse_time_rejects(value, message):
    with pytest.raises(InvalidData) as raised:
        parse_time(value, "t")
    assert str(raised.value) == message


def test_parse_date():
    assert parse_date("2021-07-01", "d") == date(2021, 7, 1)
    assert parse_date("2021-07-01T00:00:00Z", "d") == date(2021, 7, 1)
    for bad in ("2021-02-30", "July 1st", "21-7-1", None, 20210701, ""):
        with pytest.raises(InvalidData, match="^d must be a date YYYY-MM-DD$"):
            parse_date(bad, "d")


# --- extract_data ------------------------------------------------------------------------------------


def test_plain_objects_have_no_data():
    doc = {"name": "x", "nested": {"_type": "#Thing"}, "list": [1, 2], "empty": []}
    out, data = extract_data(doc)
    assert out is doc and data is None


def test_series_header_and_points():
    doc = {
        "name": "x",
        "PRICE": {
            "_type": "VarTimeSeries",
            "calendar": "daily",
            "units": "EUR",
            "data": [
                {"time": "2021-07-01", "value": 1},
                {"time": "2021-07-02T00:00:00Z", "value": 2, "status": "F"},
                {"time": "2021-07-01T00:00:00+00:00", "value": 3},
            ],
        },
    }
    out, data = extract_data(doc)
    assert out == {"name": "x", "PRICE": {"_type": "VarTimeSeries", "calendar": "daily", "units": "EUR"}}
    assert "data" in doc["PRICE"]  # the input is not mutated
    # same instant twice: the later observation wins
    assert data.points == {
        ("PRICE", datetime(2021, 7, 1, tzinfo=UTC)): {"time": "2021-07-01T00:00:00+00:00", "value": 3},
        ("PRICE", datetime(2021, 7, 2, tzinfo=UTC)): {"time": "2021-07-02T00:00:00Z", "value": 2, "status": "F"},
    }
    assert data.dates == [
        ("series", "2021-07-01", "PRICE"),
        ("series", "2021-07-02", "PRICE"),
        ("series", "2021-07-01", "PRICE"),
    ]
    assert data.wipe_props == set() and bool(data)


@pytest.mark.parametrize("kind", ["VarTimeSeries", "VarEventTimeSeries", "VarSmartTimeSeries"])
def test_series_types_and_replace(kind):
    out, data = extract_data({"S": {"_type": kind, "_replace": True, "data": []}})
    assert out == {"S": {"_type": kind}}
    assert data.wipe_props == {"S"} and data.points == {} and bool(data)


@pytest.mark.parametrize("kind", ["VarCurve", "VarEventCurve", "VarSmartCurve"])
def test_curves(kind):
    value = {
        "_type": kind,
        "ondate": {"_type": "VarCurveDate", "curveDate": "2021-07-01"},
        "calendar": "c",
        "contracts": [{"tenor": "M01", "value": 1}],
        "_merge": True,
    }
    out, data = extract_data({"FWD": value})
    assert out == {"FWD": {"_type": kind, "calendar": "c"}}
    stored = {k: v for k, v in value.items() if k != "_merge"}
    assert data.curves == {("FWD", date(2021, 7, 1)): (stored, True)}
    assert data.dates == [("curves", "2021-07-01", "FWD")]
    _, data = extract_data({"FWD": {**value, "ondate": "2021-07-02", "_merge": "yes"}})
    assert list(data.curves) == [("FWD", date(2021, 7, 2))]
    assert data.curves[("FWD", date(2021, 7, 2))][1] is False  # only a literal true merges


def test_matrix():
    value = {"_type": "VarMatrix", "ondate": "2021-07-01", "data": [[1, 2]], "units": "%"}
    out, data = extract_data({"M": value})
    assert out == {"M": {"_type": "VarMatrix", "units": "%"}}
    assert data.matrices == {("M", date(2021, 7, 1)): value}
    assert data.dates == [("matrix", "2021-07-01", "M")]


def test_event_list():
    items = [
        {"_type": "VarEvent", "_id": "a", "eventtime": "2021-07-01T10:00:00Z"},
        {
            "_type": "VarEvent",
            "eventid": "b",
            "eventtime": "2021-07-02",
            "eventtype": "#Trip",
            "eventend": "2021-07-03",
        },
    ]
    out, data = extract_data({"E": items})
    assert out == {"E": {"_type": "VarEventList"}}
    assert data.events == {
        ("E", "a"): (
            datetime(2021, 7, 1, 10, tzinfo=UTC),
            {
                "_type": "VarEvent",
                "_id": "a",
                "eventtime": "2021-07-01T10:00:00Z",
                "eventstart": "2021-07-01T10:00:00Z",
                "eventend": "2021-07-01T10:00:00Z",
                "eventtype": "#Event",
            },
        ),
        ("E", "b"): (
            datetime(2021, 7, 2, tzinfo=UTC),
            {
                "_type": "VarEvent",
                "_id": "b",
                "eventid": "b",
                "eventtime": "2021-07-02",
                "eventstart": "2021-07-02",
                "eventend": "2021-07-03",
                "eventtype": "#Trip",
            },
        ),
    }
    assert data.dates == [("events", "2021-07-01", "E"), ("events", "2021-07-02", "E")]


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"P": {"_type": "VarTimeSeries", "data": "x"}}, "property 'P': data must be an array of observations"),
        (
            {"P": {"_type": "VarTimeSeries", "data": [1]}},
            NO_TIME_NO_CALENDAR,
        ),
        (
            {"P": {"_type": "VarTimeSeries", "data": [{"value": 1}]}},
            NO_TIME_NO_CALENDAR,
        ),
        (
            {"P": {"_type": "VarTimeSeries", "data": [{"time": "2021-07-01"}, {"time": "x"}]}},
            "property 'P': observation #1 time 'x' is not an ISO-8601 date or date-time",
        ),
        ({"C": {"_type": "VarCurve", "contracts": []}}, "property 'C': curve has no curve date (ondate.curveDate)"),
        (
            {"C": {"_type": "VarCurve", "ondate": {}, "contracts": []}},
            "property 'C': curve has no curve date (ondate.curveDate)",
        ),
        ({"C": {"_type": "VarCurve", "ondate": "soon"}}, "property 'C': curve date must be a date YYYY-MM-DD"),
        (
            {"C": {"_type": "VarCurve", "ondate": "2021-07-01", "contracts": {}}},
            "property 'C': contracts must be an array",
        ),
        ({"M": {"_type": "VarMatrix", "data": []}}, "property 'M': matrix has no ondate"),
        ({"M": {"_type": "VarMatrix", "ondate": "x"}}, "property 'M': matrix ondate must be a date YYYY-MM-DD"),
        ({"E": [{"_type": "VarEvent", "_id": "e"}]}, "property 'E': event 'e' has no eventtime"),
        ({"E": [{"_type": "VarEvent", "eventtime": "2021-07-01"}]}, "property 'E': event #0 has no _id or eventid"),
        (
            {"E": [{"_type": "VarEvent", "_id": "e", "eventtime": "2021-07-01"}, 5]},
            "property 'E': item #1 is not a VarEvent",
        ),
        (
            {"E": [{"_type": "VarEvent", "_id": "e", "eventtime": "2021-07-01", "eventstart": "?"}]},
            "property 'E': event 'e' eventstart '?' is not an ISO-8601 date or date-time",
        ),
    ],
)
def test_invalid_data_names_property_and_problem(doc, message):
    with pytest.raises(InvalidData) as raised:
        extract_data(doc)
    assert str(raised.value) == message


# --- merging ---------------------------------------------------------------------------------------------


def test_merge_contracts_by_tenor():
    stored = {
        "_type": "VarCurve",
        "ondate": "2021-07-01",
        "calendar": "old",
        "contracts": [{"tenor": "M01", "value": 1}, {"tenor": "M02", "value": 2}],
    }
    incoming = {
        "_type": "VarCurve",
        "ondate": "2021-07-01",
        "calendar": "new",
        "contracts": [{"tenor": "M03", "value": 3}, {"tenor": "M01", "value": 10}],
    }
    assert merge_contracts(stored, incoming) == {
        "_type": "VarCurve",
        "ondate": "2021-07-01",
        "calendar": "new",
        "contracts": [{"tenor": "M01", "value": 10}, {"tenor": "M02", "value": 2}, {"tenor": "M03", "value": 3}],
    }
    assert merge_contracts({}, {"contracts": [{"tenor": "A"}]}) == {"contracts": [{"tenor": "A"}]}
    assert merge_contracts({"contracts": [{"tenor": "A"}]}, {})["contracts"] == [{"tenor": "A"}]


def test_merge_headers():
    stored = {"S": {"_type": "VarTimeSeries", "calendar": "daily", "units": "EUR"}, "C": {"_type": "VarCurve", "x": 1}}
    incoming = {"S": {"_type": "VarTimeSeries", "units": "USD"}, "C": {"_type": "VarMatrix"}, "n": 1}
    assert merge_headers(stored, incoming) == {
        "S": {"_type": "VarTimeSeries", "calendar": "daily", "units": "USD"},
        "C": {"_type": "VarMatrix"},
        "n": 1,
    }
    assert merge_headers({}, incoming) is incoming


def test_data_writes_fold_later_over_earlier():
    _, first = extract_data(
        {
            "S": {
                "_type": "VarTimeSeries",
                "data": [{"time": "2021-07-01", "value": 1}, {"time": "2021-07-02", "value": 2}],
            },
            "C": {"_type": "VarCurve", "ondate": "2021-07-01", "contracts": [{"tenor": "A", "value": 1}]},
        }
    )
    _, second = extract_data(
        {
            "S": {"_type": "VarTimeSeries", "_replace": True, "data": [{"time": "2021-07-03", "value": 3}]},
            "C": {
                "_type": "VarCurve",
                "ondate": "2021-07-01",
                "_merge": True,
                "contracts": [{"tenor": "B", "value": 2}],
            },
        }
    )
    first.update(second)
    assert [obs["value"] for obs in first.points.values()] == [3]  # _replace dropped the earlier points
    assert first.wipe_props == {"S"}
    curve, merge = first.curves[("C", date(2021, 7, 1))]
    assert [c["tenor"] for c in curve["contracts"]] == ["A", "B"] and merge is False
    assert ("series", "2021-07-03", "S") in first.dates and ("curves", "2021-07-01", "C") in first.dates


def test_pending_write_fold_merges_data_headers():
    doc1, data1 = extract_data({"S": {"_type": "VarTimeSeries", "calendar": "daily", "units": "EUR", "data": []}})
    write = PendingWrite("X", doc1, False, data1)
    doc2, data2 = extract_data({"S": {"_type": "VarTimeSeries", "units": "USD", "data": []}, "n": 1})
    write.fold(doc2, False, data2)
    assert write.doc == {"S": {"_type": "VarTimeSeries", "calendar": "daily", "units": "USD"}, "n": 1}


def test_normalise_event_keeps_given_bounds_and_type():
    ident, instant, day, stored = normalise_event(
        "E",
        0,
        {
            "_type": "VarEvent",
            "eventid": "x",
            "eventtime": "2021-07-01T23:30:00-02:00",
            "eventtype": "#T",
            "eventstart": "2021-07-01",
        },
    )
    assert (ident, instant, day) == ("x", datetime(2021, 7, 2, 1, 30, tzinfo=UTC), "2021-07-01")
    assert stored == {
        "_type": "VarEvent",
        "_id": "x",
        "eventid": "x",
        "eventtime": "2021-07-01T23:30:00-02:00",
        "eventtype": "#T",
        "eventstart": "2021-07-01",
        "eventend": "2021-07-01T23:30:00-02:00",
    }


# --- read-side helpers and the summary message --------------------------------------------------------------


def test_split_ref():
    assert split_ref("OBJ:PROP") == ("OBJ", "PROP", None)
    assert split_ref("OBJ:PROP:2021-07-01") == ("OBJ", "PROP", date(2021, 7, 1))
    assert split_ref("a/b:c:PROP") == ("a/b:c", "PROP", None)
    assert split_ref("a:b:PROP:2021-07-01") == ("a:b", "PROP", date(2021, 7, 1))
    for bad in ("OBJ", ":PROP", "OBJ:", "OBJ:PROP:2021-02-30"):
        with pytest.raises(InvalidInput):
            split_ref(bad)


def test_summary_message_formats():
    builder = SummaryBuilder()
    assert builder.message(size=1, written=1, atomic_abort=False) == "Completed Successfully"
    for kind, day, ident in (
        ("series", "2021-07-02", "A:S"),
        ("series", "2021-07-01", "A:S"),
        ("series", "2021-07-01", "A:T"),
        ("curves", "2021-07-01", "A:C"),
        ("curves", "2021-07-01", "B:C"),
        ("matrix", "2021-06-30", "A:M"),
        ("events", "2021-07-01", "A:E"),
        ("events", "2021-07-01", "B:E"),
        ("events", "2021-07-01", "A:E"),
    ):
        builder.touched(kind, day, ident)
    assert builder.message(size=3, written=2, atomic_abort=False) == (
        "Updated 2 objects, 2 series, 2 curves, 1 matrix, 2 event lists for 2021-06-30 to 2021-07-02"
    )
    builder.fail("x", "bad")
    assert builder.message(size=3, written=2, atomic_abort=False) == "1 of 3 elements failed"
    assert (
        builder.message(size=3, written=0, atomic_abort=True) == "1 of 3 elements failed; nothing was written (_atomic)"
    )
    only_one = SummaryBuilder()
    only_one.touched("matrix", "2021-07-01", "A:M")
    only_one.touched("matrix", "2021-07-01", "A:N")
    assert only_one.message(size=1, written=1, atomic_abort=False) == "Updated 1 object, 2 matrices for 2021-07-01"
