"""Typed data inside objects (SPEC §3, §6): series, curves, matrices and event lists.

Written through POST /api/batch, read back through /api/data/…, /api/event/… and the
object route; invalid data lands in summary.failures; a large series grows by chunks only.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from conftest import assert_error, auth, connect, db_rows, make_token, sdk_client, truncate

EMPTY_SUMMARY = {"curves": {}, "series": {}, "matrix": {}, "events": {}, "failures": {}}
DATA_TABLES = ("curves", "matrices", "events")
SERIES_POINTS = "series points"  # observations stored in series_chunks


# --- helpers ---------------------------------------------------------------------------------


def post(client, body, *, query="", headers=None):
    """POST a raw JSON body the way the odsl SDK does: no Content-Type header."""
    return client.post("/api/batch" + query, data=json.dumps(body).encode(), headers=headers or auth())


def posted(client, body, *, status=201, query="", headers=None) -> dict:
    response = post(client, body, query=query, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def read(client, path, *, status=200, headers=None, **params):
    response = client.get(path, query_string=params, headers=headers or auth())
    assert response.status_code == status, response.get_data(as_text=True)
    return response


def data(client, ref, *, source="private", status=200, headers=None, **params):
    return read(
        client, f"/api/data/v1/{source}/{quote(ref, safe='')}", status=status, headers=headers, **params
    ).get_json()


def events(client, ref, *, source="private", headers=None, **params):
    response = read(client, f"/api/event/v1/{source}/{quote(ref, safe='')}", headers=headers, **params)
    return int(response.headers["x-total-count"]), response.get_json()


def get_object(client, object_id, *, source="private", status=200, headers=None):
    return read(
        client, f"/api/object/v1/{source}/{quote(object_id, safe='')}", status=status, headers=headers
    ).get_json()


def series(data_points, **meta):
    return {"_type": "VarTimeSeries", **meta, "data": [{"time": t, "value": v} for t, v in data_points]}


def curve(ondate, contracts, **extra):
    return {
        "_type": "VarCurve",
        "ondate": ondate,
        "contracts": [{"tenor": t, "value": v} for t, v in contracts],
        **extra,
    }


def stored_points(db_url, object_id=None) -> int:
    """Observations stored in series chunks (of one object, or all)."""
    return db_rows(
        db_url,
        """SELECT coalesce(sum(cardinality(c.times)), 0) FROM series_chunks c
           JOIN series s ON s.tenant_key = c.tenant_key AND s.id = c.series_id
           WHERE %(object_id)s::text IS NULL OR s.object_id = %(object_id)s""",
        {"object_id": object_id},
    )[0][0]


def data_rows(db_url, object_id=None) -> dict[str, int]:
    """Stored series points and row counts of the other data tables (for one object, or all)."""
    counts = {SERIES_POINTS: stored_points(db_url, object_id)}
    for table in DATA_TABLES:
        if object_id is None:
            counts[table] = db_rows(db_url, f"SELECT count(*) FROM {table}")[0][0]
        else:
            counts[table] = db_rows(db_url, f"SELECT count(*) FROM {table} WHERE object_id = %s", (object_id,))[0][0]
    return counts


NO_ROWS = dict.fromkeys((SERIES_POINTS, *DATA_TABLES), 0)


# --- a mixed batch: summary, message, reads ---------------------------------------------------

MIXED = {
    "_id": "mixed-1",
    "name": "MIXED_LOADER",
    "elements": [
        {"_id": "PLAIN_A", "name": "plain a"},
        {
            "_id": "POWER",
            "_type": "#Market",
            "region": "NL",
            "PRICE": series([("2021-07-01", 10.5), ("2021-07-02T00:00:00Z", 11.5)], calendar="daily", units="EUR/MWh"),
            "VOLUME": series([("2021-07-01", 100)], calendar="daily", units="MWh"),
            "FWD": curve(
                {"_type": "VarCurveDate", "curveDate": "2021-07-01"}, [("M01", 50), ("M02", 51)], calendar="business"
            ),
        },
        {"_id": "PLAIN_B", "name": "plain b"},
        {
            "_id": "GAS",
            "VOLS": {"_type": "VarMatrix", "ondate": "2021-07-01", "data": [[1, 2], [3, 4]], "units": "%"},
            "OUTAGES": [
                {"_type": "VarEvent", "_id": "o1", "eventtime": "2021-07-01T08:00:00Z", "unit": "G1"},
                {
                    "_type": "VarEvent",
                    "eventid": "o2",
                    "eventtime": "2021-07-02T09:30:00Z",
                    "eventtype": "#Outage",
                    "eventstart": "2021-07-02T09:00:00Z",
                    "eventend": "2021-07-03T00:00:00Z",
                },
            ],
        },
        # the same object again: one more observation, the same series (no duplicate ids)
        {"_id": "POWER", "PRICE": series([("2021-07-01", 10.75)])},
    ],
}


def test_mixed_batch_summary_message_and_reads(client):
    body = post(client, MIXED)
    assert body.status_code == 201, body.get_data(as_text=True)
    assert body.headers["Location"] == "/api/batch/v1/mixed-1"
    summary = body.get_json()
    assert summary["status"] == "success"
    assert summary["size"] == 5
    assert summary["summary"] == {
        "curves": {"2021-07-01": ["POWER:FWD"]},
        "series": {"2021-07-01": ["POWER:PRICE", "POWER:VOLUME"], "2021-07-02": ["POWER:PRICE"]},
        "matrix": {"2021-07-01": ["GAS:VOLS"]},
        "events": {"2021-07-01": ["GAS:OUTAGES"], "2021-07-02": ["GAS:OUTAGES"]},
        "failures": {},
    }
    assert list(summary["summary"]) == ["curves", "series", "matrix", "events", "failures"]
    assert (
        summary["message"]
        == "Updated 4 objects, 2 series, 1 curve, 1 matrix, 1 event list for 2021-07-01 to 2021-07-02"
    )
    assert read(client, "/api/batch/v1/mixed-1").get_json() == summary

    # the series, with the later element's value for 2021-07-01
    assert data(client, "POWER:PRICE") == {
        "_id": "POWER:PRICE",
        "_type": "VarTimeSeries",
        "calendar": "daily",
        "units": "EUR/MWh",
        "data": [{"time": "2021-07-01", "value": 10.75}, {"time": "2021-07-02T00:00:00Z", "value": 11.5}],
    }
    assert data(client, "POWER:VOLUME") == {
        "_id": "POWER:VOLUME",
        "_type": "VarTimeSeries",
        "calendar": "daily",
        "units": "MWh",
        "data": [{"time": "2021-07-01", "value": 100}],
    }
    expected_curve = {
        "_id": "POWER:FWD:2021-07-01",
        "_type": "VarCurve",
        "calendar": "business",
        "ondate": {"_type": "VarCurveDate", "curveDate": "2021-07-01"},
        "contracts": [{"tenor": "M01", "value": 50}, {"tenor": "M02", "value": 51}],
    }
    assert data(client, "POWER:FWD") == expected_curve
    assert data(client, "POWER:FWD:2021-07-01") == expected_curve
    assert data(client, "GAS:VOLS") == {
        "_id": "GAS:VOLS:2021-07-01",
        "_type": "VarMatrix",
        "units": "%",
        "ondate": "2021-07-01",
        "data": [[1, 2], [3, 4]],
    }
    assert data(client, "GAS:VOLS:2021-07-01") == data(client, "GAS:VOLS")
    total, items = events(client, "GAS:OUTAGES")
    assert total == 2
    assert items == [
        {
            "_type": "VarEvent",
            "_id": "o2",
            "eventid": "o2",
            "eventtime": "2021-07-02T09:30:00Z",
            "eventtype": "#Outage",
            "eventstart": "2021-07-02T09:00:00Z",
            "eventend": "2021-07-03T00:00:00Z",
        },
        {
            "_type": "VarEvent",
            "_id": "o1",
            "eventtime": "2021-07-01T08:00:00Z",
            "unit": "G1",
            "eventtype": "#Event",
            "eventstart": "2021-07-01T08:00:00Z",
            "eventend": "2021-07-01T08:00:00Z",
        },
    ]

    # the object route: headers and a _ref to the data route, never the bulk data
    power = get_object(client, "POWER")
    assert power["_type"] == "#Market" and power["region"] == "NL" and power["_version"] == 1  # one batch
    assert power["PRICE"] == {
        "_type": "VarTimeSeries",
        "calendar": "daily",
        "units": "EUR/MWh",
        "_ref": "/api/data/v1/private/POWER:PRICE",
    }
    assert power["VOLUME"] == {
        "_type": "VarTimeSeries",
        "calendar": "daily",
        "units": "MWh",
        "_ref": "/api/data/v1/private/POWER:VOLUME",
    }
    assert power["FWD"] == {"_type": "VarCurve", "calendar": "business", "_ref": "/api/data/v1/private/POWER:FWD"}
    gas = get_object(client, "GAS")
    assert gas["VOLS"] == {"_type": "VarMatrix", "units": "%", "_ref": "/api/data/v1/private/GAS:VOLS"}
    assert gas["OUTAGES"] == {"_type": "VarEventList", "_ref": "/api/event/v1/private/GAS:OUTAGES"}
    for obj, prop in (("POWER", "PRICE"), ("POWER", "VOLUME"), ("POWER", "FWD"), ("GAS", "VOLS"), ("GAS", "OUTAGES")):
        header = (power if obj == "POWER" else gas)[prop]
        assert not {"data", "contracts", "ondate", "_merge", "_replace"} & set(header)
        assert read(client, header["_ref"]).status_code == 200  # the reference is followable as is
    assert get_object(client, "PLAIN_A")["name"] == "plain a"
    assert "_batch" in get_object(client, "PLAIN_B")
    # the object list shows headers too
    listed = read(client, "/api/object/v1/private", _sort="_id").get_json()
    assert [o["_id"] for o in listed] == ["GAS", "PLAIN_A", "PLAIN_B", "POWER"]
    assert listed[3]["PRICE"] == power["PRICE"]


def test_single_date_message(client):
    summary = posted(
        client,
        {
            "elements": [
                {
                    "_id": "A",
                    "S1": series([("2021-07-01", 1)]),
                    "S2": series([("2021-07-01T10:00:00+02:00", 2)]),
                    "C": curve("2021-07-01", [("M01", 1)]),
                    "M": {"_type": "VarMatrix", "ondate": "2021-07-01", "data": [[1]]},
                },
                {"_id": "B", "E": [{"_type": "VarEvent", "_id": "x", "eventtime": "2021-07-01"}]},
            ]
        },
    )
    assert summary["message"] == "Updated 2 objects, 2 series, 1 curve, 1 matrix, 1 event list for 2021-07-01"
    assert summary["summary"] == {
        "curves": {"2021-07-01": ["A:C"]},
        "series": {"2021-07-01": ["A:S1", "A:S2"]},
        "matrix": {"2021-07-01": ["A:M"]},
        "events": {"2021-07-01": ["B:E"]},
        "failures": {},
    }
    plain = posted(client, {"elements": [{"_id": "P", "v": 1}]})
    assert plain["message"] == "Completed Successfully"
    assert plain["summary"] == EMPTY_SUMMARY


def test_ids_with_colons_slashes_and_hashes(client):
    posted(client, {"elements": [{"_id": "a/b:c", "PRICE": series([("2021-07-01", 1)])}]})
    assert data(client, "a/b:c:PRICE")["data"] == [{"time": "2021-07-01", "value": 1}]
    assert get_object(client, "a/b:c")["PRICE"]["_ref"] == "/api/data/v1/private/a/b:c:PRICE"
    posted(client, {"elements": [{"_id": "#PUB", "FWD": curve("2021-07-01", [("M01", 1)])}]})
    assert data(client, "#PUB:FWD", source="public")["_id"] == "#PUB:FWD:2021-07-01"
    assert data(client, "#PUB:FWD", source="all")["_id"] == "#PUB:FWD:2021-07-01"
    data(client, "#PUB:FWD", source="private", status=404)
    data(client, "a/b:c:PRICE", source="public", status=404)
    ref = get_object(client, "#PUB", source="public")["FWD"]["_ref"]
    assert ref == "/api/data/v1/public/%23PUB:FWD"
    assert read(client, ref).get_json()["contracts"] == [{"tenor": "M01", "value": 1}]


# --- series ------------------------------------------------------------------------------------


def test_series_merge_over_batches_replace_and_range(client, db_url):
    posted(
        client,
        {
            "elements": [
                {
                    "_id": "S",
                    "PRICE": series(
                        [("2021-07-01", 1), ("2021-07-02", 2), ("2021-07-03", 3)], calendar="daily", units="EUR"
                    ),
                }
            ]
        },
    )
    posted(client, {"elements": [{"_id": "S", "PRICE": series([("2021-07-02", 20), ("2021-07-04", 4)], units="USD")}]})
    third = posted(
        client,
        {
            "elements": [
                {
                    "_id": "S",
                    "other": "kept",
                    "PRICE": {
                        "_type": "VarTimeSeries",
                        "data": [
                            {"time": "2021-07-03T00:00:00Z", "value": 30, "flag": "revised"},
                            {"time": "2021-07-05T12:00:00Z", "value": 5},
                        ],
                    },
                }
            ]
        },
    )
    assert third["summary"]["series"] == {"2021-07-03": ["S:PRICE"], "2021-07-05": ["S:PRICE"]}
    assert third["message"] == "Updated 1 object, 1 series for 2021-07-03 to 2021-07-05"

    full = data(client, "S:PRICE")
    assert full == {
        "_id": "S:PRICE",
        "_type": "VarTimeSeries",
        "calendar": "daily",
        "units": "USD",
        "data": [
            {"time": "2021-07-01", "value": 1},
            {"time": "2021-07-02", "value": 20},
            {"time": "2021-07-03T00:00:00Z", "value": 30, "flag": "revised"},
            {"time": "2021-07-04", "value": 4},
            {"time": "2021-07-05T12:00:00Z", "value": 5},
        ],
    }
    assert stored_points(db_url, "S") == 5
    obj = get_object(client, "S")
    assert obj["_version"] == 3 and obj["other"] == "kept"
    assert obj["PRICE"] == {
        "_type": "VarTimeSeries",
        "calendar": "daily",
        "units": "USD",
        "_ref": "/api/data/v1/private/S:PRICE",
    }

    values = lambda body: [p["value"] for p in body["data"]]  # noqa: E731
    assert values(data(client, "S:PRICE", _range="last(2)")) == [4, 5]
    assert values(data(client, "S:PRICE", _range="last(100)")) == [1, 20, 30, 4, 5]
    assert values(data(client, "S:PRICE", _range="from(2021-07-03)")) == [30, 4, 5]
    assert values(data(client, "S:PRICE", _range="from(2021-07-05T12:00:00Z)")) == [5]
    assert values(data(client, "S:PRICE", _range="between(2021-07-02,2021-07-04)")) == [20, 30, 4]
    assert values(data(client, "S:PRICE", _range="between(2021-07-02, 2021-07-03)")) == [20, 30]
    assert values(data(client, "S:PRICE", _range="between(2021-08-01,2021-09-01)")) == []
    assert data(client, "S:PRICE", _range="last(1)")["units"] == "USD"

    # _replace inside the series: the stored observations go, the new ones stay
    replaced = posted(
        client,
        {
            "elements": [
                {
                    "_id": "S",
                    "PRICE": {
                        "_type": "VarTimeSeries",
                        "_replace": True,
                        "data": [{"time": "2021-08-01", "value": 99}],
                    },
                }
            ]
        },
    )
    assert replaced["summary"]["series"] == {"2021-08-01": ["S:PRICE"]}
    after = data(client, "S:PRICE")
    assert after["data"] == [{"time": "2021-08-01", "value": 99}]
    assert "_replace" not in after and "_replace" not in get_object(client, "S")["PRICE"]
    assert stored_points(db_url, "S") == 1


@pytest.mark.parametrize(
    "bad",
    [
        "last(0)",
        "last(-1)",
        "last(x)",
        "last()",
        "last(1,2)",
        "next(3)",
        "from()",
        "from(not-a-date)",
        "between(2021-07-01)",
        "between(2021-07-01,nope)",
        "between(2021-07-01,2021-07-02,2021-07-03)",
        "2021-07-01T25",
        "",
    ],
)
def test_bad_range_is_400(client, bad):
    posted(client, {"elements": [{"_id": "S", "PRICE": series([("2021-07-01", 1)])}]})
    body = assert_error(client.get("/api/data/v1/private/S:PRICE", query_string={"_range": bad}, headers=auth()), 400)
    assert "_range" in body["message"] or "last(n)" in body["message"] or "date" in body["message"]


def test_unknown_data_query_parameter_and_missing_data(client):
    posted(client, {"elements": [{"_id": "S", "plain": "x", "PRICE": series([("2021-07-01", 1)])}]})
    assert (
        "_rnage"
        in assert_error(client.get("/api/data/v1/private/S:PRICE?_rnage=last(1)", headers=auth()), 400)["message"]
    )
    assert_error(client.get("/api/data/v1/private/S:NOPE", headers=auth()), 404)
    assert_error(client.get("/api/data/v1/private/S:plain", headers=auth()), 404)
    assert_error(client.get("/api/data/v1/private/NOPE:PRICE", headers=auth()), 404)
    assert_error(client.get("/api/data/v1/private/S", headers=auth()), 400)
    assert_error(client.get("/api/data/v1/elsewhere/S:PRICE", headers=auth()), 400)
    assert_error(client.get("/api/event/v1/private/S:PRICE", headers=auth()), 404)
    assert_error(client.get("/api/data/v1/private/S:PRICE", headers=auth(roles=())), 403)
    assert_error(client.get("/api/data/v1/private/S:PRICE"), 401)


def test_replacing_an_object_wipes_its_data(client, db_url):
    posted(
        client,
        {
            "elements": [
                {
                    "_id": "W",
                    "PRICE": series([("2021-07-01", 1)]),
                    "FWD": curve("2021-07-01", [("M01", 1)]),
                    "E": [{"_type": "VarEvent", "_id": "e", "eventtime": "2021-07-01"}],
                }
            ]
        },
    )
    assert data_rows(db_url, "W") == {SERIES_POINTS: 1, "curves": 1, "matrices": 0, "events": 1}
    posted(client, {"elements": [{"_id": "W", "_replace": True, "PRICE": series([("2021-07-02", 2)])}]})
    assert data_rows(db_url, "W") == {SERIES_POINTS: 1, "curves": 0, "matrices": 0, "events": 0}
    assert data(client, "W:PRICE")["data"] == [{"time": "2021-07-02", "value": 2}]
    data(client, "W:FWD", status=404)
    assert set(get_object(client, "W")) >= {"PRICE"} and "FWD" not in get_object(client, "W")
    posted(client, {"elements": [{"_id": "W", "x": 1}]}, query="?_replace=true")
    assert data_rows(db_url, "W") == NO_ROWS
    data(client, "W:PRICE", status=404)


# --- curves and matrices ------------------------------------------------------------------------


def test_curves_by_date_latest_and_merge(client, db_url):
    first = posted(
        client,
        {
            "elements": [
                {
                    "_id": "C",
                    "FWD": curve({"_type": "VarCurveDate", "curveDate": "2021-07-01"}, [("M01", 10), ("M02", 11)]),
                }
            ]
        },
    )
    assert first["summary"]["curves"] == {"2021-07-01": ["C:FWD"]}
    assert first["message"] == "Updated 1 object, 1 curve for 2021-07-01"
    posted(client, {"elements": [{"_id": "C", "FWD": curve("2021-07-02", [("M01", 20), ("M02", 21), ("Q01", 22)])}]})

    tenors = lambda body: [(c["tenor"], c["value"]) for c in body["contracts"]]  # noqa: E731
    latest = data(client, "C:FWD")
    assert latest["_id"] == "C:FWD:2021-07-02" and latest["ondate"] == "2021-07-02"
    assert tenors(latest) == [("M01", 20), ("M02", 21), ("Q01", 22)]
    assert tenors(data(client, "C:FWD:2021-07-01")) == [("M01", 10), ("M02", 11)]
    assert data(client, "C:FWD:2021-07-01")["ondate"] == {"_type": "VarCurveDate", "curveDate": "2021-07-01"}
    data(client, "C:FWD:2021-07-03", status=404)
    assert_error(client.get("/api/data/v1/private/C:FWD:2021-02-30", headers=auth()), 400)
    assert db_rows(db_url, "SELECT ondate::text FROM curves WHERE object_id = 'C' ORDER BY ondate") == [
        ("2021-07-01",),
        ("2021-07-02",),
    ]

    # _merge: contracts merge by tenor into the stored curve of that date
    merged = posted(
        client, {"elements": [{"_id": "C", "FWD": curve("2021-07-01", [("M02", 110), ("M03", 12)], _merge=True)}]}
    )
    assert merged["summary"]["curves"] == {"2021-07-01": ["C:FWD"]}
    first_date = data(client, "C:FWD:2021-07-01")
    assert tenors(first_date) == [("M01", 10), ("M02", 110), ("M03", 12)]
    assert "_merge" not in first_date
    # without _merge the date's contracts are replaced
    posted(client, {"elements": [{"_id": "C", "FWD": curve("2021-07-02", [("M01", 200)])}]})
    assert tenors(data(client, "C:FWD:2021-07-02")) == [("M01", 200)]
    assert tenors(data(client, "C:FWD")) == [("M01", 200)]
    assert tenors(data(client, "C:FWD:2021-07-01")) == [("M01", 10), ("M02", 110), ("M03", 12)]
    # _merge onto a date with nothing stored is just the incoming curve
    posted(client, {"elements": [{"_id": "C", "FWD": curve("2021-06-30", [("M01", 1)], _merge=True)}]})
    assert tenors(data(client, "C:FWD:2021-06-30")) == [("M01", 1)]
    assert data(client, "C:FWD")["_id"] == "C:FWD:2021-07-02"
    assert db_rows(db_url, "SELECT count(*) FROM curves WHERE object_id = 'C'") == [(3,)]


def test_curve_merge_within_one_batch(client):
    posted(client, {"elements": [{"_id": "C", "FWD": curve("2021-07-01", [("M01", 1), ("M02", 2)])}]})
    posted(
        client,
        {
            "elements": [
                {"_id": "C", "FWD": curve("2021-07-01", [("M01", 10)])},  # replaces the stored M01, M02
                {"_id": "C", "FWD": curve("2021-07-01", [("M03", 30)], _merge=True)},  # merges over the element above
                {"_id": "D", "FWD": curve("2021-07-01", [("M01", 5)], _merge=True)},
                {"_id": "D", "FWD": curve("2021-07-01", [("M01", 6), ("M02", 7)], _merge=True)},
            ]
        },
    )
    assert [c["tenor"] for c in data(client, "C:FWD")["contracts"]] == ["M01", "M03"]
    assert data(client, "D:FWD")["contracts"] == [{"tenor": "M01", "value": 6}, {"tenor": "M02", "value": 7}]


def test_matrix_by_date(client):
    posted(client, {"elements": [{"_id": "M", "VOLS": {"_type": "VarMatrix", "ondate": "2021-07-01", "data": [[1]]}}]})
    posted(
        client,
        {
            "elements": [
                {"_id": "M", "VOLS": {"_type": "VarMatrix", "ondate": {"curveDate": "2021-07-02"}, "data": [[2]]}}
            ]
        },
    )
    posted(
        client, {"elements": [{"_id": "M", "VOLS": {"_type": "VarMatrix", "ondate": "2021-07-01", "data": [[3, 3]]}}]}
    )
    assert data(client, "M:VOLS")["data"] == [[2]]
    assert data(client, "M:VOLS")["_id"] == "M:VOLS:2021-07-02"
    assert data(client, "M:VOLS:2021-07-01")["data"] == [[3, 3]]
    data(client, "M:VOLS:2021-06-01", status=404)


# --- events -------------------------------------------------------------------------------------


def test_events_upsert_defaults_top_level_and_paging(client, db_url):
    posted(
        client,
        {
            "elements": [
                {
                    "_id": "G",
                    "name": "gas",
                    "OUTAGES": [
                        {"_type": "VarEvent", "_id": "e1", "eventtime": "2021-07-01T10:00:00Z", "mw": 100},
                        {
                            "_type": "VarEvent",
                            "eventid": "e2",
                            "eventtime": "2021-07-02T10:00:00Z",
                            "eventtype": "#Outage",
                            "eventstart": "2021-07-02T00:00:00Z",
                            "eventend": "2021-07-04T00:00:00Z",
                        },
                    ],
                }
            ]
        },
    )
    total, items = events(client, "G:OUTAGES")
    assert total == 2 and [e["_id"] for e in items] == ["e2", "e1"]
    assert items[1] == {
        "_type": "VarEvent",
        "_id": "e1",
        "eventtime": "2021-07-01T10:00:00Z",
        "mw": 100,
        "eventstart": "2021-07-01T10:00:00Z",
        "eventend": "2021-07-01T10:00:00Z",
        "eventtype": "#Event",
    }
    assert (items[0]["eventtype"], items[0]["eventstart"], items[0]["eventend"]) == (
        "#Outage",
        "2021-07-02T00:00:00Z",
        "2021-07-04T00:00:00Z",
    )

    # re-sent: changed, not duplicated
    resent = posted(
        client,
        {
            "elements": [
                {
                    "_id": "G",
                    "OUTAGES": [{"_type": "VarEvent", "_id": "e1", "eventtime": "2021-07-05T10:00:00Z", "mw": 50}],
                }
            ]
        },
    )
    assert resent["summary"]["events"] == {"2021-07-05": ["G:OUTAGES"]}
    total, items = events(client, "G:OUTAGES")
    assert total == 2 and [e["_id"] for e in items] == ["e1", "e2"]
    assert items[0] == {
        "_type": "VarEvent",
        "_id": "e1",
        "eventtime": "2021-07-05T10:00:00Z",
        "mw": 50,
        "eventstart": "2021-07-05T10:00:00Z",
        "eventend": "2021-07-05T10:00:00Z",
        "eventtype": "#Event",
    }
    assert db_rows(db_url, "SELECT count(*) FROM events WHERE object_id = 'G'") == [(2,)]
    first = get_object(client, "G")
    assert first["_version"] == 1  # its data changed, its document did not: no new object version

    # a top-level event into the existing object
    top = posted(
        client,
        {
            "elements": [
                {"_type": "VarEvent", "_id": "e3", "event": "G:OUTAGES", "eventtime": "2021-07-03T00:00:00Z", "mw": 7}
            ]
        },
    )
    assert top["status"] == "success"
    assert top["summary"] == {**EMPTY_SUMMARY, "events": {"2021-07-03": ["G:OUTAGES"]}}
    assert top["message"] == "Updated 1 object, 1 event list for 2021-07-03"
    obj = get_object(client, "G")
    assert obj["_version"] == 1 and obj["_batch"] == first["_batch"] and obj["name"] == "gas"
    assert obj["OUTAGES"] == {"_type": "VarEventList", "_ref": "/api/event/v1/private/G:OUTAGES"}
    total, items = events(client, "G:OUTAGES")
    assert total == 3 and [e["_id"] for e in items] == ["e1", "e3", "e2"]
    assert items[1] == {
        "_type": "VarEvent",
        "_id": "e3",
        "eventtime": "2021-07-03T00:00:00Z",
        "mw": 7,
        "eventstart": "2021-07-03T00:00:00Z",
        "eventend": "2021-07-03T00:00:00Z",
        "eventtype": "#Event",
    }
    # a top-level event may target a new list of an object written earlier in the same batch
    posted(
        client,
        {
            "elements": [
                {"_id": "H", "kind": "new"},
                {"_type": "VarEvent", "eventid": "h1", "event": "H:TRIPS", "eventtime": "2021-07-01"},
            ]
        },
    )
    assert events(client, "H:TRIPS")[1][0]["_id"] == "h1"

    # paging, sorting and filtering of the list
    total, page = events(client, "G:OUTAGES", _limit=2)
    assert total == 3 and [e["_id"] for e in page] == ["e1", "e3"]
    total, page = events(client, "G:OUTAGES", _limit=2, _skip=2)
    assert total == 3 and [e["_id"] for e in page] == ["e2"]
    total, page = events(client, "G:OUTAGES", _sort="eventtime")
    assert [e["_id"] for e in page] == ["e2", "e3", "e1"]
    total, page = events(client, "G:OUTAGES", eventtype="#Outage")
    assert total == 1 and [e["_id"] for e in page] == ["e2"]
    total, page = events(client, "G:OUTAGES", eventtime="gte(2021-07-03T00:00:00Z)", _sort="_id")
    assert total == 2 and [e["_id"] for e in page] == ["e1", "e3"]
    assert_error(client.get("/api/event/v1/private/G:OUTAGES?mw=7", headers=auth()), 400)
    assert_error(client.get("/api/event/v1/private/G:NOPE", headers=auth()), 404)


# --- invalid typed data ---------------------------------------------------------------------------

INVALID = {
    "curve-without-date": (
        {"_id": "BAD", "FWD": {"_type": "VarCurve", "contracts": [{"tenor": "M01", "value": 1}]}},
        "BAD",
        "property 'FWD': curve has no curve date (ondate.curveDate)",
    ),
    "curve-date-object-without-curveDate": (
        {"_id": "BAD", "FWD": {"_type": "VarCurve", "ondate": {"_type": "VarCurveDate"}, "contracts": []}},
        "BAD",
        "property 'FWD': curve has no curve date (ondate.curveDate)",
    ),
    "observation-without-time": (
        {"_id": "BAD", "PRICE": {"_type": "VarTimeSeries", "data": [{"time": "2021-07-01", "value": 1}, {"value": 2}]}},
        "BAD",
        "property 'PRICE': observation #1 has no time; values without a time need a regular calendar (DAILY, BUSINESS or an ISO-8601 duration such as PT5M, PT1H or P1D), this series has no calendar",
    ),
    "unparseable-time": (
        {"_id": "BAD", "PRICE": {"_type": "VarTimeSeries", "data": [{"time": "2021-13-45", "value": 1}]}},
        "BAD",
        "property 'PRICE': observation #0 time '2021-13-45' is not an ISO-8601 date or date-time",
    ),
    "event-without-eventtime": (
        {
            "_id": "BAD",
            "OUTAGES": [
                {"_type": "VarEvent", "_id": "ok", "eventtime": "2021-07-01"},
                {"_type": "VarEvent", "_id": "e1"},
            ],
        },
        "BAD",
        "property 'OUTAGES': event 'e1' has no eventtime",
    ),
    "top-level-event-object-missing": (
        {"_type": "VarEvent", "_id": "ev1", "event": "BAD:OUTAGES", "eventtime": "2021-07-01T00:00:00Z"},
        "ev1",
        "event object 'BAD' does not exist",
    ),
    "top-level-event-malformed": (
        {"_type": "VarEvent", "_id": "ev2", "event": "BAD", "eventtime": "2021-07-01T00:00:00Z"},
        "ev2",
        "event must be 'OBJECT:LIST' (the object id and its event-list property)",
    ),
    "top-level-event-without-eventtime": (
        {"_type": "VarEvent", "_id": "ev3", "event": "GOOD:OUTAGES"},
        "ev3",
        "property 'OUTAGES': event 'ev3' has no eventtime",
    ),
}
GOOD = {"_id": "GOOD", "PRICE": series([("2021-07-01", 1)]), "FWD": curve("2021-07-01", [("M01", 1)])}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_typed_data_is_an_element_failure(client, db_url, case):
    element, label, reason = INVALID[case]
    summary = posted(client, {"_id": f"bad-{case}", "elements": [GOOD, element]})
    assert summary["status"] == "warning"
    assert summary["message"] == "1 of 2 elements failed"
    assert summary["summary"] == {
        "curves": {"2021-07-01": ["GOOD:FWD"]},
        "series": {"2021-07-01": ["GOOD:PRICE"]},
        "matrix": {},
        "events": {},
        "failures": {label: reason},
    }
    read(client, "/api/object/v1/private/BAD", status=404)
    assert data_rows(db_url, "BAD") == NO_ROWS
    assert data_rows(db_url, "GOOD") == {SERIES_POINTS: 1, "curves": 1, "matrices": 0, "events": 0}
    if label.startswith("ev"):  # the top-level event wrote nothing into GOOD either
        assert "OUTAGES" not in get_object(client, "GOOD")
    assert get_object(client, "GOOD")["_version"] == 1


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_typed_data_atomic_writes_nothing(client, db_url, case):
    element, label, reason = INVALID[case]
    response = post(client, {"_id": f"atomic-{case}", "elements": [GOOD, element]}, query="?_atomic=true")
    assert response.status_code == 422, response.get_data(as_text=True)
    summary = response.get_json()
    assert summary["status"] == "failed"
    assert summary["message"] == "1 of 2 elements failed; nothing was written (_atomic)"
    assert summary["summary"] == {**EMPTY_SUMMARY, "failures": {label: reason}}
    assert read(client, f"/api/batch/v1/atomic-{case}").get_json() == summary
    read(client, "/api/object/v1/private/GOOD", status=404)
    read(client, "/api/object/v1/private/BAD", status=404)
    assert data_rows(db_url) == NO_ROWS
    assert db_rows(db_url, "SELECT count(*) FROM objects") == [(0,)]


def test_only_invalid_elements_fail_the_batch(client, db_url):
    response = post(client, {"elements": [INVALID["unparseable-time"][0]]})
    assert response.status_code == 422
    assert response.get_json()["status"] == "failed"
    assert data_rows(db_url) == NO_ROWS


def test_other_invalid_shapes(client, db_url):
    summary = posted(
        client,
        {
            "elements": [
                {"_id": "OK", "v": 1},
                {"_id": "B1", "PRICE": {"_type": "VarTimeSeries", "data": {"time": "2021-07-01"}}},
                {"_id": "B2", "PRICE": {"_type": "VarTimeSeries", "data": [5]}},
                {"_id": "B3", "FWD": {"_type": "VarCurve", "ondate": "July 1st", "contracts": []}},
                {"_id": "B4", "FWD": {"_type": "VarCurve", "ondate": "2021-07-01", "contracts": {"M01": 1}}},
                {"_id": "B5", "VOLS": {"_type": "VarMatrix", "data": [[1]]}},
                {"_id": "B6", "E": [{"_type": "VarEvent", "eventtime": "2021-07-01"}]},
                {"_id": "B7", "E": [{"_type": "VarEvent", "_id": "x", "eventtime": "2021-07-01"}, {"not": "an event"}]},
                {"_id": "B8", "E": [{"_type": "VarEvent", "_id": "x", "eventtime": "2021-07-01", "eventend": "soon"}]},
                {"_id": "B9", "PRICE": {"_type": "VarTimeSeries", "data": [{"time": 20210701, "value": 1}]}},
            ]
        },
    )
    failures = summary["summary"]["failures"]
    assert failures == {
        "B1": "property 'PRICE': data must be an array of observations",
        "B2": "property 'PRICE': observation #0 has no time; values without a time need a regular calendar (DAILY, BUSINESS or an ISO-8601 duration such as PT5M, PT1H or P1D), this series has no calendar",
        "B3": "property 'FWD': curve date must be a date YYYY-MM-DD",
        "B4": "property 'FWD': contracts must be an array",
        "B5": "property 'VOLS': matrix has no ondate",
        "B6": "property 'E': event #0 has no _id or eventid",
        "B7": "property 'E': item #1 is not a VarEvent",
        "B8": "property 'E': event 'x' eventend 'soon' is not an ISO-8601 date or date-time",
        "B9": "property 'PRICE': observation #0 time must be an ISO-8601 date or date-time string",
    }
    assert summary["message"] == "9 of 10 elements failed"
    assert data_rows(db_url) == NO_ROWS
    assert [o["_id"] for o in read(client, "/api/object/v1/private").get_json()] == ["OK"]


# --- idempotency, tenancy, environments ----------------------------------------------------------------


def test_repost_is_a_replay_that_applies_nothing(client, db_url):
    batch = {
        "_id": "typed-replay",
        "elements": [
            {
                "_id": "R",
                "PRICE": series([("2021-07-01", 1), ("2021-07-02", 2)]),
                "FWD": curve("2021-07-01", [("M01", 1)]),
                "E": [{"_type": "VarEvent", "_id": "e", "eventtime": "2021-07-01"}],
            },
            {"_type": "VarEvent", "_id": "e2", "event": "R:E", "eventtime": "2021-07-02"},
        ],
    }
    first = posted(client, batch)

    def versions():
        return db_rows(
            db_url,
            """
        SELECT 'o', xmin::text FROM objects UNION ALL SELECT 's', xmin::text FROM series_chunks
        UNION ALL SELECT 'c', xmin::text FROM curves UNION ALL SELECT 'e', xmin::text FROM events ORDER BY 1, 2""",
        )

    before = versions()
    assert len(before) == 1 + 1 + 1 + 2  # the object, one chunk holding both points, a curve, two events
    again = post(client, batch)
    assert again.status_code == 200
    assert again.get_json() == first
    assert versions() == before
    assert get_object(client, "R")["_version"] == 1
    assert events(client, "R:E")[0] == 2
    changed = post(client, {**batch, "elements": [{"_id": "R", "PRICE": series([("2021-07-01", 100)])}]})
    assert_error(changed, 409)
    assert data(client, "R:PRICE")["data"][0]["value"] == 1
    assert versions() == before


def test_failed_typed_batch_can_be_retried(client):
    bad = {"_id": "retry-typed", "elements": [INVALID["observation-without-time"][0]]}
    assert post(client, bad).status_code == 422
    good = {"_id": "retry-typed", "elements": [{"_id": "BAD", "PRICE": series([("2021-07-01", 1)])}]}
    assert posted(client, good)["status"] == "success"
    assert data(client, "BAD:PRICE")["data"] == [{"time": "2021-07-01", "value": 1}]


def test_data_routes_are_per_tenant(client):
    posted(
        client,
        {
            "elements": [
                {
                    "_id": "T",
                    "PRICE": series([("2021-07-01", 1)]),
                    "FWD": curve("2021-07-01", [("M01", 1)]),
                    "E": [{"_type": "VarEvent", "_id": "e", "eventtime": "2021-07-01"}],
                }
            ]
        },
    )
    other = auth(tenant="tenant-b")
    for path in (
        "/api/data/v1/private/T:PRICE",
        "/api/data/v1/all/T:PRICE",
        "/api/data/v1/private/T:FWD",
        "/api/data/v1/private/T:FWD:2021-07-01",
        "/api/event/v1/private/T:E",
        "/api/object/v1/private/T",
    ):
        assert_error(client.get(path, headers=other), 404)
    # a top-level event of tenant b cannot target tenant a's object
    failed = post(
        client,
        {"elements": [{"_type": "VarEvent", "_id": "x", "event": "T:E", "eventtime": "2021-07-02"}]},
        headers=other,
    )
    assert failed.status_code == 422
    assert failed.get_json()["summary"]["failures"] == {"x": "event object 'T' does not exist"}
    # tenant b's own T is separate
    posted(client, {"elements": [{"_id": "T", "PRICE": series([("2021-07-01", 2)])}]}, headers=other)
    assert data(client, "T:PRICE", headers=other)["data"] == [{"time": "2021-07-01", "value": 2}]
    assert data(client, "T:PRICE")["data"] == [{"time": "2021-07-01", "value": 1}]
    assert events(client, "T:E")[0] == 1


def test_data_routes_are_per_environment(client):
    staging = auth(environment="staging")
    posted(
        client,
        {
            "elements": [
                {
                    "_id": "ENV",
                    "PRICE": series([("2021-07-01", 1)]),
                    "E": [{"_type": "VarEvent", "_id": "e", "eventtime": "2021-07-01"}],
                }
            ]
        },
        headers=staging,
    )
    assert data(client, "ENV:PRICE", headers=staging)["data"] == [{"time": "2021-07-01", "value": 1}]
    assert events(client, "ENV:E", headers=staging)[0] == 1
    assert_error(client.get("/api/data/v1/private/ENV:PRICE", headers=auth()), 404)
    assert_error(client.get("/api/event/v1/private/ENV:E", headers=auth()), 404)
    assert_error(client.get("/api/data/v1/private/ENV:PRICE", headers=auth(environment="dev")), 404)
    # production's own ENV, and a top-level event there cannot see staging's object
    failed = post(
        client, {"elements": [{"_type": "VarEvent", "_id": "x", "event": "ENV:E", "eventtime": "2021-07-02"}]}
    )
    assert failed.status_code == 422
    posted(client, {"elements": [{"_id": "ENV", "PRICE": series([("2021-07-02", 5)])}]})
    assert data(client, "ENV:PRICE")["data"] == [{"time": "2021-07-02", "value": 5}]
    assert data(client, "ENV:PRICE", headers=staging)["data"] == [{"time": "2021-07-01", "value": 1}]


# --- a large series grows by chunks only --------------------------------------------------------------

SEED_POINTS = 200_000
NEW_POINTS = 1_000
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _app_backend_pids(app) -> list[int]:
    """The backends held by the app's connection pool (idle, checked in)."""
    engine = app.extensions["batchsvc"].database.engine
    pids = []
    for record in list(engine.pool._pool.queue):  # noqa: SLF001 - test introspection
        connection = record.dbapi_connection
        if connection is not None and not connection.closed:
            pids.append(connection.get_backend_pid())
    return pids


def _wait_backends_gone(db_url, pids, timeout=10.0):
    """A backend flushes its pending statistics before it leaves pg_stat_activity (before_shmem_exit)."""
    deadline = time.monotonic() + timeout
    while pids and db_rows(db_url, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),))[0][0]:
        assert time.monotonic() < deadline, f"backends {pids} did not exit"
        time.sleep(0.02)


def _flush_app_stats(app, db_url):
    pids = _app_backend_pids(app)
    app.extensions["batchsvc"].database.dispose()
    _wait_backends_gone(db_url, pids)


def _table_stats(db_url) -> dict:
    row = db_rows(
        db_url,
        """
        SELECT n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, seq_scan
        FROM pg_stat_user_tables WHERE relname = 'series_chunks'""",
    )[0]
    return dict(zip(("ins", "upd", "del", "hot_upd", "seq_scan"), row, strict=True))


def _quiet(db_url, sql, params=()) -> list[tuple]:
    """Run one statement on a connection of its own and wait until its backend has exited,
    so that its table statistics are flushed before anything is measured."""
    connection = connect(db_url)
    try:
        with connection, connection.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        pid = connection.get_backend_pid()
    finally:
        connection.close()
    _wait_backends_gone(db_url, [pid])
    return rows


def _old_chunks_fingerprint(db_url, before) -> tuple:
    """The stored chunks of BIG before day `before`: count, and a digest of where each lies
    (ctid), which transaction wrote it (xmin) and what it holds."""
    return _quiet(
        db_url,
        """
        SELECT count(*), md5(string_agg(c.ctid::text || '/' || c.xmin::text || '/' || md5(c.times::text || c.vals::text),
                                        ',' ORDER BY c.day))
        FROM series_chunks c JOIN series s ON s.tenant_key = c.tenant_key AND s.id = c.series_id
        WHERE s.object_id = 'BIG' AND c.day < %s""",
        (before,),
    )[0]


# An hourly series (span: one UTC day per chunk) of SEED_POINTS points, written straight in the
# chunk layout: integer values (code 1: int, ...Z time), times in microseconds since 1970.
SEED_SQL = """
INSERT INTO objects (tenant, environment, id, doc, version, created, updated, "user", batch)
VALUES ('tenant-a', 'production', 'BIG',
        '{"_type": "#Object", "PRICE": {"_type": "VarTimeSeries", "calendar": "hourly", "units": "EUR"}}',
        1, now(), now(), 'seed@example.com', 'seed');
INSERT INTO tenants (tenant) VALUES ('tenant-a') ON CONFLICT DO NOTHING;
INSERT INTO series (tenant_key, environment, object_id, property, span)
SELECT key, 'production', 'BIG', 'PRICE', 'D' FROM tenants WHERE tenant = 'tenant-a';
INSERT INTO series_chunks (tenant_key, series_id, day, times, vals, codes)
SELECT s.tenant_key, s.id, p.day, array_agg(p.t ORDER BY p.t), array_agg(p.n::float8 ORDER BY p.t), '{1}'
FROM series s,
     LATERAL (SELECT n, (%(epoch_us)s + n * 3600000000)::int8 AS t,
                     (%(epoch)s::timestamptz + n * interval '1 hour')::date AS day
              FROM generate_series(0, %(n)s - 1) AS n) AS p
WHERE s.object_id = 'BIG'
GROUP BY s.tenant_key, s.id, p.day;
"""


def test_appending_to_a_large_series_does_not_rewrite_it(client, app, db_url):
    epoch_us = (EPOCH - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    _quiet(db_url, SEED_SQL, {"n": SEED_POINTS, "epoch": EPOCH, "epoch_us": epoch_us})
    first_new = EPOCH + timedelta(hours=SEED_POINTS)
    old_before = _old_chunks_fingerprint(db_url, first_new.date())
    seed_chunks = -(-SEED_POINTS // 24)
    assert old_before[0] == seed_chunks - 1  # every chunk but the last, which the new points share
    _flush_app_stats(app, db_url)
    stats_before = _table_stats(db_url)

    times = [first_new + timedelta(hours=n) for n in range(NEW_POINTS)]
    points = [{"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": -n} for n, t in enumerate(times)]
    summary = posted(
        client,
        {
            "_id": "append-1k",
            "elements": [{"_id": "BIG", "PRICE": {"_type": "VarTimeSeries", "units": "USD", "data": points}}],
        },
    )

    # table statistics of the app's work alone: one new chunk per new day, one update (the stored
    # day the new points begin in), no delete, no sequential scan
    days = sorted({t.date().isoformat() for t in times})
    new_chunks = len(days) - 1
    _flush_app_stats(app, db_url)
    deadline = time.monotonic() + 5
    while True:
        stats_after = _table_stats(db_url)
        if stats_after["ins"] - stats_before["ins"] >= new_chunks or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    delta = {k: stats_after[k] - stats_before[k] for k in stats_after}
    assert delta["hot_upd"] in (0, 1)  # the rewritten chunk may stay on its page
    assert {k: v for k, v in delta.items() if k != "hot_upd"} == {"ins": new_chunks, "upd": 1, "del": 0, "seq_scan": 0}

    assert summary["summary"]["series"] == {day: ["BIG:PRICE"] for day in days}
    assert summary["message"] == f"Updated 1 object, 1 series for {days[0]} to {days[-1]}"
    assert stored_points(db_url, "BIG") == SEED_POINTS + NEW_POINTS
    # the stored chunks before the first new day are physically untouched: same tuple (ctid),
    # same writing transaction (xmin), same content
    assert _old_chunks_fingerprint(db_url, first_new.date()) == old_before
    # the new and the one merged chunk came from one transaction that wrote nothing else in the table
    assert db_rows(
        db_url,
        """
        SELECT count(*) FROM series_chunks
        WHERE xmin::text = (SELECT xmin::text FROM series_chunks WHERE day = %s)""",
        (first_new.date(),),
    ) == [(new_chunks + 1,)]

    last = data(client, "BIG:PRICE", _range="last(2)")
    assert last == {
        "_id": "BIG:PRICE",
        "_type": "VarTimeSeries",
        "calendar": "hourly",
        "units": "USD",
        "data": points[-2:],
    }
    assert data(client, "BIG:PRICE", _range="between(2000-01-01T00:00:00Z,2000-01-01T02:00:00Z)")["data"] == [
        {"time": "2000-01-01T00:00:00Z", "value": 0},
        {"time": "2000-01-01T01:00:00Z", "value": 1},
        {"time": "2000-01-01T02:00:00Z", "value": 2},
    ]
    # the day the new points began in holds both: the seeded hours, then the appended ones
    boundary = data(client, "BIG:PRICE", _range=f"between({first_new.date()}T00:00:00Z,{first_new.date()}T23:59:59Z)")
    assert [p["value"] for p in boundary["data"]] == [
        *range(SEED_POINTS - SEED_POINTS % 24, SEED_POINTS),
        *range(0, -(24 - SEED_POINTS % 24), -1),
    ]
    assert get_object(client, "BIG")["_version"] == 2


# --- the real odsl SDK --------------------------------------------------------------------------------


def test_sdk_reads_a_series_with_a_range(odsl_sdk, live_server, db_url, capsys):
    o = sdk_client(odsl_sdk, live_server, make_token(tenant="sdk-data-tenant", user="sdk@example.com"))
    try:
        o.update(
            "batch",
            "private",
            {
                "_id": "sdk-data",
                "elements": [
                    {
                        "_id": "SDK.OBJ",
                        "PRICE": series([("2021-07-01", 1), ("2021-07-02", 2), ("2021-07-03", 3)], units="EUR"),
                    },
                    {"_type": "VarEvent", "_id": "s1", "event": "SDK.OBJ:EVENTS", "eventtime": "2021-07-01T00:00:00Z"},
                ],
            },
        )
        assert capsys.readouterr().out.split() == ["201"]
        got = o.get("data", "private", "SDK.OBJ:PRICE", {"_range": "last(2)"})
        assert got == {
            "_id": "SDK.OBJ:PRICE",
            "_type": "VarTimeSeries",
            "units": "EUR",
            "data": [{"time": "2021-07-02", "value": 2}, {"time": "2021-07-03", "value": 3}],
        }
        assert o.get("event", "private", "SDK.OBJ:EVENTS")[0]["_id"] == "s1"
        assert o.get("object", "private", "SDK.OBJ")["PRICE"]["_ref"] == "/api/data/v1/private/SDK.OBJ:PRICE"
        summary = o.get("batch", "private", "sdk-data")
        assert summary["summary"]["series"] == {
            d: ["SDK.OBJ:PRICE"] for d in ("2021-07-01", "2021-07-02", "2021-07-03")
        }
        missing = o.get("data", "private", "SDK.OBJ:NOPE")
        assert isinstance(missing, str) and "ODSL error 404: [404]" in capsys.readouterr().out
        bad = o.get("data", "private", "SDK.OBJ:PRICE", {"_range": "last(zero)"})
        assert isinstance(bad, str) and "ODSL error 400: [400]" in capsys.readouterr().out
    finally:
        truncate(db_url)
