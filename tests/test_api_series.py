"""Series calendars and time zones through the API (SPEC §6): positional series, alignment
failures, zones and DST, posted as batches and read back from /api/data/v1/private/OBJ:PROP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import SERIES_POINTS, auth, db_rows


def post(client, body, *, query=""):
    return client.post("/api/batch" + query, data=json.dumps(body).encode(), headers=auth())


def posted(client, body, *, status=201, query="") -> dict:
    response = post(client, body, query=query)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def read_series(client, ref, *, status=200, **params):
    response = client.get(f"/api/data/v1/private/{ref}", query_string=params, headers=auth())
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def observations(client, ref) -> list[tuple]:
    return [(point["time"], point["value"]) for point in read_series(client, ref)["data"]]


def stored_instants(db_url, object_id) -> list[datetime]:
    return [
        row[0]
        for row in db_rows(db_url, f"SELECT time FROM {SERIES_POINTS} WHERE object_id = %s ORDER BY time", (object_id,))
    ]


def series(**fields):
    return {"_type": "VarTimeSeries", **fields}


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- positional series -----------------------------------------------------------------------------


def test_positional_daily_series_reads_like_explicit_observations(client, db_url):
    summary = posted(
        client,
        {
            "_id": "positional-daily",
            "elements": [
                {
                    "_id": "PWR",
                    "PRICE": series(start="2022-11-01", calendar="DAILY", units="EUR", data=[12.5, 12.6, 12.7]),
                }
            ],
        },
    )
    assert summary["status"] == "success"
    assert summary["message"] == "Updated 1 object, 1 series for 2022-11-01 to 2022-11-03"
    assert summary["summary"]["series"] == {d: ["PWR:PRICE"] for d in ("2022-11-01", "2022-11-02", "2022-11-03")}
    assert read_series(client, "PWR:PRICE") == {
        "_id": "PWR:PRICE",
        "_type": "VarTimeSeries",
        "start": "2022-11-01",
        "calendar": "DAILY",
        "units": "EUR",
        "data": [
            {"time": "2022-11-01T00:00:00+00:00", "value": 12.5},
            {"time": "2022-11-02T00:00:00+00:00", "value": 12.6},
            {"time": "2022-11-03T00:00:00+00:00", "value": 12.7},
        ],
    }
    assert stored_instants(db_url, "PWR") == [utc(2022, 11, d) for d in (1, 2, 3)]
    # an explicit observation at the same instant, written differently, replaces the positional one
    posted(
        client,
        {"elements": [{"_id": "PWR", "PRICE": series(calendar="DAILY", data=[{"time": "2022-11-02", "value": 99}])}]},
    )
    assert observations(client, "PWR:PRICE") == [
        ("2022-11-01T00:00:00+00:00", 12.5),
        ("2022-11-02", 99),
        ("2022-11-03T00:00:00+00:00", 12.7),
    ]


@pytest.mark.parametrize(
    "start, expected",
    [
        ("2024-01-05", ["2024-01-05", "2024-01-08", "2024-01-09"]),  # a Friday: on to Monday
        ("2024-01-06", ["2024-01-08", "2024-01-09", "2024-01-10"]),  # a Saturday: the first business day after
    ],
)
def test_positional_business_series(client, start, expected):
    summary = posted(
        client, {"elements": [{"_id": "B", "P": series(start=start, calendar="BUSINESS", data=[1, 2, 3])}]}
    )
    assert summary["summary"]["series"] == {day: ["B:P"] for day in expected}
    assert observations(client, "B:P") == [(f"{day}T00:00:00+00:00", n) for n, day in enumerate(expected, 1)]


@pytest.mark.parametrize(
    "calendar, start, expected",
    [
        ("PT5M", "2024-01-06T23:50:00Z", ["2024-01-06T23:50:00", "2024-01-06T23:55:00", "2024-01-07T00:00:00"]),
        ("PT5M", "2024-01-06T10:03:00Z", ["2024-01-06T10:05:00", "2024-01-06T10:10:00", "2024-01-06T10:15:00"]),
        ("PT1H", "2024-01-06T22:00:00", ["2024-01-06T22:00:00", "2024-01-06T23:00:00", "2024-01-07T00:00:00"]),
        ("P1D", "2024-02-28", ["2024-02-28T00:00:00", "2024-02-29T00:00:00", "2024-03-01T00:00:00"]),
    ],
)
def test_positional_duration_series(client, calendar, start, expected):
    summary = posted(client, {"elements": [{"_id": "D", "P": series(start=start, calendar=calendar, data=[1, 2, 3])}]})
    assert summary["status"] == "success"
    assert sorted(summary["summary"]["series"]) == sorted({t[:10] for t in expected})
    assert observations(client, "D:P") == [(f"{t}+00:00", n) for n, t in enumerate(expected, 1)]


def test_positional_values_keep_their_extra_fields_and_mix_with_explicit_ones(client):
    posted(
        client,
        {
            "elements": [
                {
                    "_id": "M",
                    "P": series(
                        start="2024-01-01",
                        calendar="DAILY",
                        data=[1, {"value": 2, "status": "E"}, {"time": "2024-01-10", "value": 10}, None],
                    ),
                }
            ]
        },
    )
    assert read_series(client, "M:P")["data"] == [
        {"time": "2024-01-01T00:00:00+00:00", "value": 1},
        {"time": "2024-01-02T00:00:00+00:00", "value": 2, "status": "E"},
        {"time": "2024-01-04T00:00:00+00:00", "value": None},
        {"time": "2024-01-10", "value": 10},
    ]


# --- calendars check explicit times -----------------------------------------------------------------


@pytest.mark.parametrize(
    "calendar, good, bad",
    [
        ("BUSINESS", "2024-01-05", "2024-01-06"),  # Friday fine, Saturday not
        ("PT5M", "2024-01-06T10:05:00Z", "2024-01-06T10:02:00Z"),
    ],
)
def test_misaligned_explicit_time_is_an_element_failure(client, db_url, calendar, good, bad):
    response = post(
        client,
        {
            "_id": f"misaligned-{calendar}",
            "elements": [
                {"_id": "GOOD", "P": series(calendar=calendar, data=[{"time": good, "value": 1}])},
                {
                    "_id": "BAD",
                    "P": series(calendar=calendar, data=[{"time": good, "value": 1}, {"time": bad, "value": 2}]),
                },
            ],
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["x-odsl-failures"] == "1"
    summary = response.get_json()
    assert summary["status"] == "warning"
    assert summary["message"] == "1 of 2 elements failed"
    assert summary["summary"]["failures"] == {
        "BAD": f"[9001] {bad} does not align with calendar {calendar} (property 'P', observation #1)"
    }
    assert summary["summary"]["series"] == {good[:10]: ["GOOD:P"]}
    assert observations(client, "GOOD:P") == [(good, 1)]
    assert client.get("/api/object/v1/private/BAD", headers=auth()).status_code == 404
    assert stored_instants(db_url, "BAD") == []


def test_misaligned_time_with_atomic_writes_nothing(client, db_url):
    response = post(
        client,
        {
            "elements": [
                {"_id": "GOOD", "P": series(calendar="DAILY", data=[{"time": "2024-01-06", "value": 1}])},
                {"_id": "BAD", "P": series(calendar="DAILY", data=[{"time": "2024-01-06T12:00:00Z", "value": 1}])},
            ]
        },
        query="?_atomic=true",
    )
    assert response.status_code == 422
    assert response.headers["x-odsl-error"].startswith("[422] ")
    assert response.get_json()["summary"]["failures"] == {
        "BAD": "[9001] 2024-01-06T12:00:00Z does not align with calendar DAILY (property 'P', observation #0)"
    }
    assert db_rows(db_url, f"SELECT count(*) FROM {SERIES_POINTS}") == [(0,)]


def test_series_without_a_calendar_take_any_time(client):
    posted(client, {"elements": [{"_id": "S", "P": series(data=[{"time": "2024-01-06T10:02:07Z", "value": 1}])}]})
    assert observations(client, "S:P") == [("2024-01-06T10:02:07Z", 1)]


# --- time zones --------------------------------------------------------------------------------------


def test_positional_series_in_a_time_zone_across_dst(client, db_url):
    summary = posted(
        client,
        {
            "elements": [
                {
                    "_id": "LDN",
                    "DAY": series(timezone="Europe/London", calendar="DAILY", start="2024-03-30", data=[1, 2, 3]),
                    "HH": series(timezone="Europe/London", calendar="PT30M", start="2024-03-31T00:30", data=[1, 2]),
                }
            ]
        },
    )
    # London changes to BST at 01:00 UTC on 2024-03-31: that day's midnight is GMT, the next day's BST
    assert observations(client, "LDN:DAY") == [
        ("2024-03-30T00:00:00+00:00", 1),
        ("2024-03-31T00:00:00+00:00", 2),
        ("2024-04-01T00:00:00+01:00", 3),
    ]
    # half-hours step in absolute time: 00:30 GMT, then 02:00 BST
    assert observations(client, "LDN:HH") == [("2024-03-31T00:30:00+00:00", 1), ("2024-03-31T02:00:00+01:00", 2)]
    assert db_rows(
        db_url, f"SELECT property, time FROM {SERIES_POINTS} WHERE object_id = 'LDN' ORDER BY property, time"
    ) == [
        ("DAY", utc(2024, 3, 30)),
        ("DAY", utc(2024, 3, 31)),
        ("DAY", utc(2024, 3, 31, 23)),
        ("HH", utc(2024, 3, 31, 0, 30)),
        ("HH", utc(2024, 3, 31, 1)),
    ]
    # summary dates are London dates: 2024-03-31T23:00Z is 1 April in London
    assert summary["summary"]["series"] == {
        "2024-03-30": ["LDN:DAY"],
        "2024-03-31": ["LDN:DAY", "LDN:HH"],
        "2024-04-01": ["LDN:DAY"],
    }


def test_naive_times_are_read_in_the_series_zone(client, db_url):
    summary = posted(
        client,
        {
            "elements": [
                {
                    "_id": "NY",
                    "P": series(
                        timezone="America/New_York",
                        calendar="PT1H",
                        data=[
                            {"time": "2024-07-01T21:00", "value": 1},  # naive: New York time, 01:00Z on the 2nd
                            {"time": "2024-07-01T22:00:00+00:00", "value": 2},  # an offset keeps its offset
                        ],
                    ),
                }
            ]
        },
    )
    assert stored_instants(db_url, "NY") == [utc(2024, 7, 1, 22), utc(2024, 7, 2, 1)]
    assert summary["summary"]["series"] == {"2024-07-01": ["NY:P"]}  # both on 1 July in New York
    assert observations(client, "NY:P") == [("2024-07-01T22:00:00+00:00", 2), ("2024-07-01T21:00", 1)]
    # UTC midnight is 20:00 in New York: on an hourly calendar, off a daily one
    response = post(
        client,
        {
            "elements": [
                {
                    "_id": "NY2",
                    "P": series(
                        timezone="America/New_York",
                        calendar="DAILY",
                        data=[{"time": "2024-07-02T00:00:00Z", "value": 1}],
                    ),
                }
            ]
        },
    )
    assert response.get_json()["summary"]["failures"] == {
        "NY2": "[9001] 2024-07-02T00:00:00Z does not align with calendar DAILY (property 'P', observation #0)"
    }


def test_summary_dates_without_a_zone_are_utc_dates(client):
    summary = posted(
        client, {"elements": [{"_id": "U", "P": series(data=[{"time": "2024-07-01T22:00:00-05:00", "value": 1}])}]}
    )
    assert summary["summary"]["series"] == {"2024-07-02": ["U:P"]}


# --- bad calendars and zones -------------------------------------------------------------------------


def test_unknown_calendars_and_zones_and_positional_without_a_calendar_fail_the_element(client, db_url):
    regular = "a regular calendar (DAILY, BUSINESS or an ISO-8601 duration such as PT5M, PT1H or P1D)"
    summary = posted(
        client,
        {
            "elements": [
                {"_id": "OK", "P": series(calendar="PT15M", start="2024-01-01", data=[1])},
                {"_id": "CAL", "P": series(calendar="FORTNIGHTLY", start="2024-01-01", data=[1])},
                {"_id": "DUR", "P": series(calendar="PT7M", data=[])},
                {"_id": "TZ", "P": series(timezone="Europe/Atlantis", data=[{"time": "2024-01-01", "value": 1}])},
                {"_id": "NOCAL", "P": series(start="2024-01-01", data=[1, 2])},
                {"_id": "SPARSE", "P": series(calendar="SPARSE", start="2024-01-01", data=[1, 2])},
                {"_id": "NOSTART", "P": series(calendar="DAILY", data=[1])},
            ]
        },
    )
    assert summary["status"] == "warning"
    assert summary["message"] == "6 of 7 elements failed"
    failures = summary["summary"]["failures"]
    assert failures["CAL"] == (
        "property 'P': unknown calendar 'FORTNIGHTLY' (SPARSE, DAILY, BUSINESS or an ISO-8601 duration such as"
        " PT5M, PT1H or P1D)"
    )
    assert failures["DUR"] == (
        "property 'P': calendar PT7M is not supported: a time duration must divide a day (PT5M, PT1H, …)"
    )
    assert failures["TZ"] == "property 'P': unknown time zone 'Europe/Atlantis'"
    assert failures["NOCAL"] == (
        f"property 'P': observation #0 has no time; values without a time need {regular}, this series has no calendar"
    )
    assert failures["SPARSE"] == (
        f"property 'P': observation #0 has no time; values without a time need {regular}, this series has calendar SPARSE"
    )
    assert (
        failures["NOSTART"] == "property 'P': observation #0 has no time; values without a time need the series' start"
    )
    assert [o["_id"] for o in client.get("/api/object/v1/private", headers=auth()).get_json()] == ["OK"]
    assert db_rows(db_url, f"SELECT object_id, count(*) FROM {SERIES_POINTS} GROUP BY object_id") == [("OK", 1)]
