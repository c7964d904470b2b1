"""The read side of SPEC §6: `_range` forms, tenor histories, the data list, single events and
?event= lists — through the Flask test client on PostgreSQL, and with the real odsl SDK."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import pytest
from conftest import assert_error, auth, make_token, sdk_client, truncate

from batchsvc.core.periods import RANGE_FORMS, Span, period, zone_named

EXPECTED_FORMS = "last(n), from(d[,tz]), between(d1,d2[,tz]), within(d[,tz]) or a bare d"


# --- helpers ---------------------------------------------------------------------------------


def post(client, elements, *, headers=None) -> dict:
    response = client.post("/api/batch", data=json.dumps({"elements": elements}).encode(), headers=headers or auth())
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def get(client, path, *, status=200, headers=None, **params):
    response = client.get(path, query_string=params, headers=headers or auth())
    assert response.status_code == status, (path, params, response.get_data(as_text=True))
    return response


def data(client, ref, *, source="private", status=200, headers=None, **params):
    path = f"/api/data/v1/{source}/{quote(ref, safe='')}"
    return get(client, path, status=status, headers=headers, **params).get_json()


def values(client, ref, **params) -> list:
    return [point["value"] for point in data(client, ref, **params)["data"]]


def series(points, **meta) -> dict:
    return {"_type": "VarTimeSeries", **meta, "data": [{"time": t, "value": v} for t, v in points]}


def curve(day, contracts, **meta) -> dict:
    return {
        "_type": "VarCurve",
        **meta,
        "ondate": {"_type": "VarCurveDate", "curveDate": day},
        "contracts": [{"tenor": t, "value": v} for t, v in contracts],
    }


# Values are their position, so a range's answer reads as a list of numbers.
UTC_POINTS = [
    ("2023-12-31T23:00:00Z", 1),
    ("2024-01-01T00:00:00Z", 2),
    ("2024-03-31T12:00:00Z", 3),
    ("2024-04-01T00:00:00Z", 4),
    ("2024-12-01T00:00:00Z", 5),
    ("2024-12-05T09:59:59Z", 6),
    ("2024-12-05T10:00:00Z", 7),
    ("2024-12-05T10:30:00Z", 8),
    ("2024-12-05T11:00:00Z", 9),
    ("2024-12-31T23:59:59Z", 10),
    ("2025-01-01T00:00:00Z", 11),
]


@pytest.fixture
def utc_series(client):
    post(client, [{"_id": "P", "PRICE": series(UTC_POINTS, units="EUR")}])
    return client


# --- _range --------------------------------------------------------------------------------------

RANGES = {
    # bare partial dates: the whole period
    "2024": [2, 3, 4, 5, 6, 7, 8, 9, 10],
    "2024-12": [5, 6, 7, 8, 9, 10],
    "2024-12-05": [6, 7, 8, 9],
    "2024-12-05T10": [7, 8],
    "2024-12-05T10:30": [8],
    "2024-12-05T10:30:00Z": [8],
    "2024-12-05T10:30:00.000+00:00": [8],
    "2024-11": [],
    # absolute tenors
    "2024Y": [2, 3, 4, 5, 6, 7, 8, 9, 10],
    "2024H1": [2, 3, 4],
    "2024h2": [5, 6, 7, 8, 9, 10],
    "2024Q1": [2, 3],
    "2024Q2": [4],
    "2024M12": [5, 6, 7, 8, 9, 10],
    "2024M3": [3],
    "2024W49": [6, 7, 8, 9],  # Monday 2 to Sunday 8 December
    # within(d) is the same as a bare d
    "within(2024-12-05)": [6, 7, 8, 9],
    "within(2024Q1)": [2, 3],
    # from(d): from the start of d's period
    "from(2024-12-05T10)": [7, 8, 9, 10, 11],
    "from(2024-12)": [5, 6, 7, 8, 9, 10, 11],
    "from(2025)": [11],
    "from(2024-12-05T10:30:00Z)": [8, 9, 10, 11],
    # between(d1,d2): from d1's start to the end of d2's period
    "between(2024-12-05,2024-12)": [6, 7, 8, 9, 10],
    "between(2024Q1,2024-04-01)": [2, 3, 4],
    "between(2024-12-05T10,2024-12-05T10)": [7, 8],
    "between( 2023 , 2024-01-01 )": [1, 2],
    "between(2024-12-05T10:00:00Z,2024-12-05T11:00:00Z)": [7, 8, 9],
    # last(n)
    "last(2)": [10, 11],
    "last(1000)": list(range(1, 12)),
    # a tz argument: partial dates read in that zone; an explicit offset wins over it
    "within(2024,Europe/Paris)": [1, 2, 3, 4, 5, 6, 7, 8, 9],
    "from(2024-12-05T10:30,Asia/Tokyo)": [6, 7, 8, 9, 10, 11],
    "between(2024-12-05,2024-12-05,America/New_York)": [6, 7, 8, 9],
    "within(2024-12-05T11+01:00,Asia/Tokyo)": [7, 8],
    "within(2025,UTC)": [11],
}


@pytest.mark.parametrize("text", sorted(RANGES))
def test_every_range_form(utc_series, text):
    assert values(utc_series, "P:PRICE", _range=text) == RANGES[text]


def test_no_range_is_the_whole_series_with_its_header(utc_series):
    body = data(utc_series, "P:PRICE")
    assert body["_id"] == "P:PRICE" and body["units"] == "EUR" and body["_type"] == "VarTimeSeries"
    assert [p["value"] for p in body["data"]] == list(range(1, 12))
    assert data(utc_series, "P:PRICE", _range="2024-12-05T10")["units"] == "EUR"


def test_partial_dates_default_to_the_series_timezone(client):
    points = [("2023-12-31T23:30:00Z", "paris-2024"), ("2024-12-31T23:30:00Z", "paris-2025")]
    post(client, [{"_id": "L", "LOCAL": series(points, timezone="Europe/Paris")}])
    assert values(client, "L:LOCAL", _range="2024") == ["paris-2024"]
    assert values(client, "L:LOCAL", _range="2025-01-01") == ["paris-2025"]
    assert values(client, "L:LOCAL", _range="from(2025)") == ["paris-2025"]
    # a tz argument overrides the series' zone; explicit offsets ignore both
    assert values(client, "L:LOCAL", _range="within(2024,UTC)") == ["paris-2025"]
    assert values(client, "L:LOCAL", _range="within(2023-12-31T23Z)") == ["paris-2024"]
    # the same points in a series without a timezone are read in UTC
    post(client, [{"_id": "L", "INUTC": series(points)}])
    assert values(client, "L:INUTC", _range="2024") == ["paris-2025"]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "next(3)",
        "2024-13",
        "2024-02-30",
        "2024-12-05T25",
        "2024-12-05T10:61",
        "2024M13",
        "2024M0",
        "2024Q5",
        "2024H3",
        "2023W53",
        "24",
        "2024-1",
        "yesterday",
        "2024-12-05T10+25:00",
        "last(0)",
        "last(-1)",
        "last(x)",
        "last(1,2)",
        "last(10000000)",
        "from()",
        "from(2024,UTC,extra)",
        "within()",
        "within(2024,2025)",
        "between(2024)",
        "between(2024,nope)",
        "between(2024,2025,2026)",
        "within(2024,Mars/Olympus_Mons)",
        "from(2024,../../etc/passwd)",
        "2024,2025",
    ],
)
def test_unreadable_ranges_are_400_naming_the_forms(utc_series, bad):
    response = utc_series.get("/api/data/v1/private/P:PRICE", query_string={"_range": bad}, headers=auth())
    body = assert_error(response, 400)
    assert "_range" in body["message"] and EXPECTED_FORMS in body["message"], body["message"]
    assert RANGE_FORMS in body["message"]


def test_other_range_refusals(utc_series):
    body = assert_error(utc_series.get("/api/data/v1/private/P:PRICE?_range=between(2025,2024)", headers=auth()), 400)
    assert "ends before" in body["message"]
    twice = utc_series.get("/api/data/v1/private/P:PRICE?_range=2024&_range=2025", headers=auth())
    assert "more than once" in assert_error(twice, 400)["message"]
    unknown = utc_series.get("/api/data/v1/private/P:PRICE?_rnage=2024", headers=auth())
    assert "_rnage" in assert_error(unknown, 400)["message"]


def test_periods_across_daylight_saving_changes():
    paris = zone_named("Europe/Paris")
    start, end = period("2024-03-31", paris)  # the spring-forward day is 23 hours long
    assert (start, end - start) == (datetime(2024, 3, 30, 23, tzinfo=UTC), timedelta(hours=23))
    start, end = period("2024-10-27", paris)
    assert end - start == timedelta(hours=25)
    start, end = period("2024-10-27T02", paris)  # an hour is an hour, the first 02:00 of the day
    assert (start, end - start) == (datetime(2024, 10, 27, 0, tzinfo=UTC), timedelta(hours=1))
    first, stop = Span(*period("2024-12", paris)).dates(paris)
    assert (first, stop) == (date(2024, 12, 1), date(2025, 1, 1))


# --- tenor history -----------------------------------------------------------------------------------


@pytest.fixture
def curves(client):
    days = {
        "2024-11-29": [("M01", 50.0), ("M02", 51.0), ("2025M01", 60.0)],
        "2024-12-02": [("M01", 52.0), ("M02", 53.0), ("2025M01", 61.0)],
        "2024-12-03": [("M02", 54.0), ("2025M01", 62.0)],  # no M01 that day
        "2025-01-02": [("M01", 55.0), ("M02", 56.0)],
    }
    post(client, [{"_id": "C", "FWD": curve(day, contracts, units="EUR/MWh")} for day, contracts in days.items()])
    post(
        client,
        [{"_id": "NY", "FWD": curve(day, [("M01", n)], timezone="America/New_York")} for n, day in enumerate(days)],
    )
    post(client, [{"_id": "a:b", "FWD": curve("2024-12-02", [("Q1", 7)])}, {"_id": "S", "PRICE": series([])}])
    return client


def history(client, ref, **params) -> list[tuple[str, float]]:
    return [(p["time"], p["value"]) for p in data(client, ref, **params)["data"]]


def test_tenor_history_by_path_and_by_parameter(curves):
    body = data(curves, "C:FWD:M01")
    assert body == {
        "_id": "C:FWD:M01",
        "_type": "VarTimeSeries",
        "units": "EUR/MWh",
        "tenor": "M01",
        "data": [
            {"time": "2024-11-29", "value": 50.0},
            {"time": "2024-12-02", "value": 52.0},
            {"time": "2025-01-02", "value": 55.0},
        ],
    }
    assert data(curves, "C:FWD", tenor="M01") == body
    assert history(curves, "C:FWD:2025M01") == [("2024-11-29", 60.0), ("2024-12-02", 61.0), ("2024-12-03", 62.0)]
    assert history(curves, "C:FWD", tenor="M02", _range="2024-12") == [("2024-12-02", 53.0), ("2024-12-03", 54.0)]
    assert history(curves, "C:FWD:M02", _range="last(2)") == [("2024-12-03", 54.0), ("2025-01-02", 56.0)]
    assert history(curves, "C:FWD:M01", _range="between(2024-11,2024-12)") == [
        ("2024-11-29", 50.0),
        ("2024-12-02", 52.0),
    ]
    assert history(curves, "C:FWD:M01", _range="from(2024-12-02T12)") == [("2025-01-02", 55.0)]
    assert history(curves, "C:FWD", tenor="M01", _range="2025Q1") == [("2025-01-02", 55.0)]
    assert history(curves, "C:FWD:M01", _range="2024W49") == [("2024-12-02", 52.0)]
    assert history(curves, "C:FWD:Y01") == []  # a tenor no curve has: an empty history
    # the latest curve and a dated curve are still what OBJ:PROP and OBJ:PROP:DATE give
    assert data(curves, "C:FWD")["_id"] == "C:FWD:2025-01-02"
    assert data(curves, "C:FWD:2024-12-03")["contracts"][0] == {"tenor": "M02", "value": 54.0}
    # object ids with ':'
    assert history(curves, "a:b:FWD:Q1") == [("2024-12-02", 7)]
    assert data(curves, "a:b:FWD")["_id"] == "a:b:FWD:2024-12-02"


def test_tenor_ranges_follow_the_curve_timezone(curves):
    # 03:00Z on 2 December is before New York's midnight of that day, after UTC's
    assert history(curves, "NY:FWD:M01", _range="from(2024-12-02T03:00Z)") == [
        ("2024-12-02", 1),
        ("2024-12-03", 2),
        ("2025-01-02", 3),
    ]
    assert history(curves, "C:FWD:M02", _range="from(2024-12-02T03:00Z)") == [
        ("2024-12-03", 54.0),
        ("2025-01-02", 56.0),
    ]
    assert history(curves, "NY:FWD:M01", _range="within(2024-12,Asia/Tokyo)") == [("2024-12-02", 1), ("2024-12-03", 2)]


def test_tenor_refusals(curves):
    assert_error(curves.get("/api/data/v1/private/S:PRICE?tenor=M01", headers=auth()), 404)
    assert_error(curves.get("/api/data/v1/private/S:PRICE:M01", headers=auth()), 404)
    assert_error(curves.get("/api/data/v1/private/C:NOPE:M01", headers=auth()), 404)
    assert_error(curves.get("/api/data/v1/private/NOPE:FWD:M01", headers=auth()), 404)
    assert (
        "curve date"
        in assert_error(curves.get("/api/data/v1/private/C:FWD:2024-12-02?tenor=M01", headers=auth()), 400)["message"]
    )
    assert (
        "twice" in assert_error(curves.get("/api/data/v1/private/C:FWD:M01?tenor=M02", headers=auth()), 400)["message"]
    )
    assert "tenor" in assert_error(curves.get("/api/data/v1/private/C:FWD?tenor=", headers=auth()), 400)["message"]
    body = assert_error(curves.get("/api/data/v1/private/C:FWD:M01?_range=2024-13", headers=auth()), 400)
    assert EXPECTED_FORMS in body["message"]


# --- the data list ------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(client):
    post(
        client,
        [
            {
                "_id": "P",
                "name": "power",
                "PRICE": series([("2024-12-01", 1)], units="EUR", name="Day-ahead price"),
                "VOLUME": series([("2024-12-01", 9)], units="MWh"),
                "label": {"_type": "NotData", "x": 1},
                "plain": {"a": 1},
            },
            {"_id": "C", "FWD": curve("2024-12-02", [("M01", 1)], units="EUR", description="forward prices")},
            {"_id": "G", "OUTAGES": [{"_type": "VarEvent", "_id": "e1", "eventtime": "2024-12-01T00:00:00Z"}]},
            {"_id": "M", "VOLS": {"_type": "VarMatrix", "ondate": "2024-12-02", "data": [[1]]}},
            {"_id": "X", "name": "no data here"},
            {"_id": "#PUB", "PRICE": series([("2024-12-01", 5)], units="USD")},
        ],
    )
    return client


def data_list(client, *, source="private", status=200, headers=None, **params):
    response = get(client, f"/api/data/v1/{source}", status=status, headers=headers, **params)
    return int(response.headers["x-total-count"]), response.get_json()


def ids(items) -> list[str]:
    return [item["_id"] for item in items]


def test_data_list_headers(catalogue):
    total, items = data_list(catalogue)
    assert total == 5 and ids(items) == ["C:FWD", "G:OUTAGES", "M:VOLS", "P:PRICE", "P:VOLUME"]
    by_id = {item["_id"]: item for item in items}
    assert by_id["P:PRICE"] == {
        "_id": "P:PRICE",
        "_type": "VarTimeSeries",
        "units": "EUR",
        "name": "Day-ahead price",
        "_ref": "/api/data/v1/private/P:PRICE",
    }
    assert by_id["C:FWD"] == {
        "_id": "C:FWD",
        "_type": "VarCurve",
        "units": "EUR",
        "description": "forward prices",
        "_ref": "/api/data/v1/private/C:FWD",
    }
    assert by_id["G:OUTAGES"] == {
        "_id": "G:OUTAGES",
        "_type": "VarEventList",
        "_ref": "/api/event/v1/private/G:OUTAGES",
    }
    assert by_id["M:VOLS"]["_type"] == "VarMatrix" and "data" not in by_id["M:VOLS"]
    # public and all
    total, items = data_list(catalogue, source="public")
    assert total == 1 and items == [
        {"_id": "#PUB:PRICE", "_type": "VarTimeSeries", "units": "USD", "_ref": "/api/data/v1/public/%23PUB:PRICE"}
    ]
    assert data_list(catalogue, source="all")[0] == 6


def test_data_list_paging_filters_search_sort(catalogue):
    total, items = data_list(catalogue, _limit=2, _skip=1)
    assert total == 5 and ids(items) == ["G:OUTAGES", "M:VOLS"]
    assert ids(data_list(catalogue, _sort="-_id", _limit=2)[1]) == ["P:VOLUME", "P:PRICE"]
    assert ids(data_list(catalogue, _sort="_type,-_id")[1]) == ["C:FWD", "G:OUTAGES", "M:VOLS", "P:VOLUME", "P:PRICE"]
    assert data_list(catalogue, _type="VarTimeSeries") == (2, data_list(catalogue, _id="in(P:PRICE,P:VOLUME)")[1])
    assert ids(data_list(catalogue, _type="in(VarCurve,VarMatrix)")[1]) == ["C:FWD", "M:VOLS"]
    assert ids(data_list(catalogue, _id="P:PRICE")[1]) == ["P:PRICE"]
    assert ids(data_list(catalogue, _type="ne(VarTimeSeries)")[1]) == ["C:FWD", "G:OUTAGES", "M:VOLS"]
    assert ids(data_list(catalogue, units="EUR")[1]) == ["C:FWD", "P:PRICE"]
    assert ids(data_list(catalogue, units="EUR", _type="VarCurve")[1]) == ["C:FWD"]
    assert ids(data_list(catalogue, _search="OUT")[1]) == ["G:OUTAGES"]
    assert ids(data_list(catalogue, _search="day-AHEAD")[1]) == ["P:PRICE"]
    assert ids(data_list(catalogue, _search="forward")[1]) == ["C:FWD"]
    assert data_list(catalogue, _search="%") == (0, [])
    assert data_list(catalogue, _id="P") == (0, [])
    for params, needle in (
        ({"_sort": "units"}, "cannot sort"),
        ({"_version": "1"}, "_version"),
        ({"_limit": "0"}, "_limit"),
        ({"_filterz": "x"}, "_filterz"),
        ({"bad name": "x"}, "filter field"),
    ):
        body = assert_error(catalogue.get("/api/data/v1/private", query_string=params, headers=auth()), 400)
        assert needle in body["message"], body
    assert_error(catalogue.get("/api/data/v1/elsewhere", headers=auth()), 400)


# --- events ------------------------------------------------------------------------------------------


@pytest.fixture
def event_lists(client):
    post(
        client,
        [
            {
                "_id": "G",
                "OUTAGES": [
                    {"_type": "VarEvent", "_id": "e1", "eventtime": "2024-12-01T10:00:00Z", "mw": 100},
                    {"_type": "VarEvent", "_id": "e2", "eventtime": "2024-12-03T10:00:00Z", "mw": 200},
                    {"_type": "VarEvent", "_id": "u:2024:3", "eventtime": "2024-12-02T10:00:00Z", "mw": 300},
                ],
                "PRICE": series([("2024-12-01", 1)]),
            },
            {"_id": "g:1", "TRIPS": [{"_type": "VarEvent", "eventid": "t1", "eventtime": "2024-12-05"}]},
        ],
    )
    return client


def event_path(ref, source="private") -> str:
    return f"/api/event/v1/{source}/{quote(ref, safe='')}"


def test_one_event(event_lists):
    event = get(event_lists, event_path("G:OUTAGES:e1")).get_json()
    assert event == {
        "_type": "VarEvent",
        "_id": "e1",
        "eventtime": "2024-12-01T10:00:00Z",
        "eventstart": "2024-12-01T10:00:00Z",
        "eventend": "2024-12-01T10:00:00Z",
        "eventtype": "#Event",
        "mw": 100,
    }
    assert get(event_lists, event_path("G:OUTAGES:u:2024:3")).get_json()["mw"] == 300  # an event id with ':'
    assert get(event_lists, event_path("g:1:TRIPS:t1")).get_json()["_id"] == "t1"  # an object id with ':'
    listed = get(event_lists, event_path("g:1:TRIPS"))
    assert listed.headers["x-total-count"] == "1" and listed.get_json()[0]["_id"] == "t1"
    body = assert_error(event_lists.get(event_path("G:OUTAGES:nope"), headers=auth()), 404)
    assert "nope" in body["message"]
    for ref in ("G:NOPE:e1", "NOPE:OUTAGES:e1", "G:PRICE:e1", "G:PRICE"):
        assert_error(event_lists.get(event_path(ref), headers=auth()), 404)
    assert_error(event_lists.get(event_path("G"), headers=auth()), 400)


def test_event_list_by_parameter(event_lists):
    response = get(event_lists, "/api/event/v1/private", event="G:OUTAGES")
    assert response.headers["x-total-count"] == "3" and ids(response.get_json()) == ["e2", "u:2024:3", "e1"]
    assert response.get_json() == get(event_lists, event_path("G:OUTAGES")).get_json()
    page = get(event_lists, "/api/event/v1/private", event="G:OUTAGES", _sort="eventtime", _limit=2)
    assert page.headers["x-total-count"] == "3" and ids(page.get_json()) == ["e1", "u:2024:3"]
    page = get(event_lists, "/api/event/v1/private", event="G:OUTAGES", _sort="-eventtime", _skip=2)
    assert ids(page.get_json()) == ["e1"]
    page = get(event_lists, "/api/event/v1/private", event="G:OUTAGES", eventtime="gte(2024-12-02T00:00:00Z)")
    assert page.headers["x-total-count"] == "2"
    assert ids(get(event_lists, "/api/event/v1/private", event="g:1:TRIPS").get_json()) == ["t1"]
    assert "event=" in assert_error(event_lists.get("/api/event/v1/private", headers=auth()), 400)["message"]
    twice = event_lists.get("/api/event/v1/private?event=G:OUTAGES&event=G:OUTAGES", headers=auth())
    assert_error(twice, 400)
    assert_error(event_lists.get("/api/event/v1/private?event=G:NOPE", headers=auth()), 404)
    assert_error(event_lists.get("/api/event/v1/private?event=G:OUTAGES:e1", headers=auth()), 404)
    assert_error(event_lists.get("/api/event/v1/private?event=G:OUTAGES&_sort=mw", headers=auth()), 400)
    assert_error(event_lists.get("/api/event/v1/public?event=G:OUTAGES", headers=auth()), 404)
    assert_error(event_lists.get("/api/event/v1/private?event=G:OUTAGES", headers=auth(roles=())), 403)
    assert_error(event_lists.get("/api/event/v1/private?event=G:OUTAGES"), 401)


# --- tenancy -----------------------------------------------------------------------------------------


def test_other_tenants_and_environments_see_nothing(client):
    post(
        client,
        [
            {
                "_id": "T",
                "PRICE": series([("2024-12-01", 1)]),
                "FWD": curve("2024-12-02", [("M01", 1)]),
                "EV": [{"_type": "VarEvent", "_id": "e1", "eventtime": "2024-12-01"}],
            }
        ],
    )
    assert values(client, "T:PRICE", _range="2024-12") == [1]
    other, staging = auth(tenant="tenant-b"), auth(environment="staging")
    for headers in (other, staging):
        for path in (
            "/api/data/v1/private/T:PRICE?_range=2024-12",
            "/api/data/v1/private/T:FWD:M01",
            "/api/data/v1/private/T:FWD?tenor=M01",
            "/api/event/v1/private/T:EV:e1",
            "/api/event/v1/private?event=T:EV",
        ):
            assert_error(client.get(path, headers=headers), 404)
        response = get(client, "/api/data/v1/all", headers=headers)
        assert response.get_json() == [] and response.headers["x-total-count"] == "0"
    assert data_list(client)[0] == 3


# --- the object route keeps showing data headers ------------------------------------------------------


def test_object_route_shows_headers_with_refs(catalogue):
    obj = get(catalogue, "/api/object/v1/private/P").get_json()
    assert obj["PRICE"] == {
        "_type": "VarTimeSeries",
        "units": "EUR",
        "name": "Day-ahead price",
        "_ref": "/api/data/v1/private/P:PRICE",
    }
    assert obj["label"] == {"_type": "NotData", "x": 1}


# --- the real odsl SDK ---------------------------------------------------------------------------------


def test_sdk_reads(odsl_sdk, live_server, db_url, capsys):
    o = sdk_client(odsl_sdk, live_server, make_token(tenant="sdk-reads", user="sdk@example.com"))
    try:
        o.update(
            "batch",
            "private",
            {
                "_id": "sdk-reads",
                "elements": [
                    {
                        "_id": "SDK.OBJ",
                        "PRICE": series(
                            [("2024-11-30", 1), ("2024-12-01", 2), ("2024-12-31", 3), ("2025-01-01", 4)], units="EUR"
                        ),
                        "FWD": curve("2024-12-02", [("M01", 10), ("M02", 11)]),
                        "EVENTS": [{"_type": "VarEvent", "_id": "s1", "eventtime": "2024-12-01T00:00:00Z"}],
                    }
                ],
            },
        )
        assert capsys.readouterr().out.split() == ["201"]
        got = o.get("data", "private", "SDK.OBJ:PRICE", {"_range": "2024-12"})
        assert got == {
            "_id": "SDK.OBJ:PRICE",
            "_type": "VarTimeSeries",
            "units": "EUR",
            "data": [{"time": "2024-12-01", "value": 2}, {"time": "2024-12-31", "value": 3}],
        }
        assert [
            p["value"] for p in o.get("data", "private", "SDK.OBJ:PRICE", {"_range": "between(2024,2025Q1)"})["data"]
        ] == [
            1,
            2,
            3,
            4,
        ]
        assert o.get("data", "private", "SDK.OBJ:FWD:M02")["data"] == [{"time": "2024-12-02", "value": 11}]
        assert o.get("data", "private", "SDK.OBJ:FWD", {"tenor": "M01"})["data"] == [
            {"time": "2024-12-02", "value": 10}
        ]
        assert [d["_id"] for d in o.list("data", "private")] == ["SDK.OBJ:EVENTS", "SDK.OBJ:FWD", "SDK.OBJ:PRICE"]
        assert o.headers("data", "private", {"_type": "VarCurve"})["x-total-count"] == "1"
        assert o.get("event", "private", "SDK.OBJ:EVENTS:s1")["_id"] == "s1"
        assert [e["_id"] for e in o.list("event", "private", {"event": "SDK.OBJ:EVENTS"})] == ["s1"]
        bad = o.get("data", "private", "SDK.OBJ:PRICE", {"_range": "2024-13"})
        out = capsys.readouterr().out
        assert isinstance(bad, str) and "ODSL error 400: [400]" in out and "between(d1,d2[,tz])" in out
    finally:
        truncate(db_url)


def test_data_list_takes_filter_and_project(client):
    body = {
        "elements": [
            {
                "_id": "FP",
                "spot": {"_type": "VarTimeSeries", "units": "EUR", "data": [{"time": "2024-01-01", "value": 1}]},
                "fwd": {"_type": "VarCurve", "units": "USD", "ondate": "2024-01-01", "contracts": []},
            }
        ]
    }
    assert client.post("/api/batch/v1", json=body, headers=auth()).status_code == 201
    curves = client.get(
        "/api/data/v1/private", query_string={"_filter": '{"_type":"VarCurve"}'}, headers=auth()
    ).get_json()
    assert [item["_id"] for item in curves] == ["FP:fwd"]
    euros = client.get(
        "/api/data/v1/private",
        query_string={"_filter": '{"units":{"$in":["EUR"]}}', "_project": "units"},
        headers=auth(),
    )
    assert euros.headers["x-total-count"] == "1" and euros.get_json() == [{"_id": "FP:spot", "units": "EUR"}]
    bad = client.get("/api/data/v1/private", query_string={"_filter": '{"units":{"$where":1}}'}, headers=auth())
    assert bad.status_code == 400
