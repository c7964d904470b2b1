"""History of curves, matrices and events (SPEC §12): unchanged writes change nothing, changes are
archived, as-of reads of the data and event routes, and the store's undo of a batch's rows."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

from conftest import assert_error, auth, db_rows

from batchsvc.core.documents import same_json
from batchsvc.core.history import RECREATE, REMOVE, RESTORE, WAS_CREATED, WAS_REMOVED, WAS_UPDATED
from batchsvc.core.identity import Scope
from batchsvc.core.typed import DataWrites
from batchsvc.store import datarows, series
from batchsvc.store.batches import PREPARED, BatchStore
from batchsvc.store.transaction import raw_transaction

TENANT, ENVIRONMENT = "tenant-a", "production"  # conftest's default token, the default environment
EMPTY = {"created": 0, "updated": 0, "unchanged": 0, "removed": 0}
D1, D2, D3 = "2024-01-02", "2024-01-03", "2024-01-04"


# --- helpers ---------------------------------------------------------------------------------


def post(client, elements, batch_id, *, query="", status=201) -> dict:
    body = json.dumps({"_id": batch_id, "elements": elements}).encode()
    response = client.post("/api/batch" + query, data=body, headers=auth())
    assert response.status_code == status, response.get_data(as_text=True)
    time.sleep(0.003)  # distinct millisecond stamps between batches
    return response.get_json()


def read(client, path, *, status=200, headers=None, **params):
    response = client.get(path, query_string=params, headers=auth() if headers is None else headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return response


def data(client, ref, *, status=200, **params):
    return read(client, f"/api/data/v1/private/{quote(ref, safe='')}", status=status, **params).get_json()


def events(client, ref, **params) -> tuple[int, list[dict]]:
    response = read(client, f"/api/event/v1/private/{quote(ref, safe='')}", **params)
    return int(response.headers["x-total-count"]), response.get_json()


def curve(day, contracts, **extra):
    return {
        "_type": "VarCurve",
        "ondate": {"_type": "VarCurveDate", "curveDate": day},
        "contracts": [{"tenor": t, "value": v} for t, v in contracts],
        **extra,
    }


def matrix(day, values):
    return {"_type": "VarMatrix", "ondate": day, "data": values}


def event(ident, when, **fields):
    return {"_type": "VarEvent", "_id": ident, "eventtime": when, **fields}


def stored(db_url, table) -> list[tuple]:
    """The table's rows as tuples: key, the row's xmin and ctid (a rewritten row gets new ones), stamp."""
    key = "event_id" if table == "events" else "ondate::text"
    return db_rows(
        db_url, f"SELECT object_id, property, {key}, xmin::text, ctid::text, stamp FROM {table} ORDER BY 1, 2, 3"
    )


def versions(db_url) -> list[tuple]:
    return db_rows(
        db_url,
        "SELECT kind, object_id, property, key, doc FROM data_versions ORDER BY kind, object_id, property, key, superseded",
    )


def version_count(db_url) -> int:
    return db_rows(db_url, "SELECT count(*) FROM data_versions")[0][0]


def at(summary: dict) -> str:
    """The instant a batch's summary was stored: after its writes, before the next batch's."""
    return summary["timestamp"]


def before(summary: dict) -> str:
    moment = datetime.fromisoformat(summary["timestamp"].replace("Z", "+00:00")) - timedelta(seconds=5)
    return moment.isoformat()


FIRST = [
    {
        "_id": "MKT",
        "FWD": curve(D1, [("M01", 50), ("M02", 51)]),
        "VOLS": matrix(D1, [[1, 2], [3, 4]]),
        "OUTAGES": [event("o1", "2024-01-02T08:00:00Z", unit="G1"), event("o2", "2024-01-03T09:00:00Z", unit="G2")],
    },
    {"_id": "MKT", "FWD": curve(D2, [("M01", 60), ("M02", 61)])},
]


# --- counts, rows written, history rows --------------------------------------------------------


def test_new_unchanged_and_changed_items_are_counted_and_only_changes_write(client, db_url):
    first = post(client, FIRST, "h-1")
    assert first["counts"]["curves"] == {**EMPTY, "created": 2}
    assert first["counts"]["matrices"] == {**EMPTY, "created": 1}
    assert first["counts"]["events"] == {**EMPTY, "created": 2}
    rows = {table: stored(db_url, table) for table in ("curves", "matrices", "events")}

    again = post(client, FIRST, "h-2")  # the same data under a new id: nothing changes
    assert again["counts"]["curves"] == {**EMPTY, "unchanged": 2}
    assert again["counts"]["matrices"] == {**EMPTY, "unchanged": 1}
    assert again["counts"]["events"] == {**EMPTY, "unchanged": 2}
    assert again["summary"] == {"curves": {}, "series": {}, "matrix": {}, "events": {}, "failures": {}}
    assert {table: stored(db_url, table) for table in rows} == rows  # the same tuples, the same stamps
    assert version_count(db_url) == 0
    assert db_rows(db_url, "SELECT count(*) FROM batch_changes WHERE batch = 'h-2'") == [(0,)]

    changed = post(
        client,
        [
            {
                "_id": "MKT",
                "FWD": curve(D2, [("M01", 60), ("M02", 62)]),  # D1 not sent: kept as it is
                "VOLS": matrix(D1, [[1, 2], [3, 5]]),
                "OUTAGES": [
                    event("o1", "2024-01-02T08:00:00Z", unit="G1"),  # as stored
                    event("o2", "2024-01-03T10:00:00Z", unit="G2"),  # moved: a correction
                    event("o3", "2024-01-04T00:00:00Z"),
                ],
            }
        ],
        "h-3",
    )
    assert changed["counts"]["curves"] == {**EMPTY, "updated": 1}
    assert changed["counts"]["matrices"] == {**EMPTY, "updated": 1}
    assert changed["counts"]["events"] == {**EMPTY, "created": 1, "updated": 1, "unchanged": 1}
    # the date maps name only what changed: D2's curve, D1's matrix, the events of D3 (o2's new
    # time) and D4 (o3), not o1's D1
    assert changed["summary"]["curves"] == {D2: ["MKT:FWD"]}
    assert changed["summary"]["matrix"] == {D1: ["MKT:VOLS"]}
    assert changed["summary"]["events"] == {D2: ["MKT:OUTAGES"], D3: ["MKT:OUTAGES"]}

    curves_now = stored(db_url, "curves")
    assert curves_now[0] == rows["curves"][0]  # D1 untouched
    assert curves_now[1][3:5] != rows["curves"][1][3:5]  # D2 rewritten, with h-3's stamp
    assert curves_now[1][5] > rows["curves"][1][5]
    events_now = stored(db_url, "events")
    assert events_now[0] == rows["events"][0]  # o1 untouched
    # one archived state per changed item, each its previous value
    assert versions(db_url) == [
        ("curves", "MKT", "FWD", D2, curve(D2, [("M01", 60), ("M02", 61)])),
        ("events", "MKT", "OUTAGES", "o2", {**event("o2", "2024-01-03T09:00:00Z", unit="G2"),
                                            "eventstart": "2024-01-03T09:00:00Z", "eventend": "2024-01-03T09:00:00Z",
                                            "eventtype": "#Event"}),
        ("matrices", "MKT", "VOLS", D1, matrix(D1, [[1, 2], [3, 4]])),
    ]  # fmt: skip
    made = db_rows(
        db_url,
        """SELECT v.kind, m.batch, s.batch, v.superseded_at = s.at FROM data_versions v
           JOIN batch_stamps m ON m.stamp = v.made JOIN batch_stamps s ON s.stamp = v.superseded ORDER BY v.kind""",
    )
    assert made == [("curves", "h-1", "h-3", True), ("events", "h-1", "h-3", True), ("matrices", "h-1", "h-3", True)]
    logged = db_rows(
        db_url, "SELECT kind, created, updated, removed FROM batch_changes WHERE batch = 'h-3' ORDER BY kind"
    )
    assert logged == [
        ("curves", [], ['["MKT","FWD","2024-01-03"]'], []),
        ("events", ['["MKT","OUTAGES","o3"]'], ['["MKT","OUTAGES","o2"]'], []),
        ("matrices", [], ['["MKT","VOLS","2024-01-02"]'], []),
    ]


def test_one_changed_curve_date_archives_that_date_only(client, db_url):
    days = [f"2024-02-{n:02d}" for n in range(1, 21)]
    elements = [{"_id": "LONG", "FWD": curve(day, [("M01", n), ("M02", n + 1)])} for n, day in enumerate(days)]
    post(client, elements, "long-1")
    elements[7] = {"_id": "LONG", "FWD": curve(days[7], [("M01", 7), ("M02", 99)])}
    summary = post(client, elements, "long-2")
    assert summary["counts"]["curves"] == {**EMPTY, "updated": 1, "unchanged": 19}
    assert summary["summary"]["curves"] == {days[7]: ["LONG:FWD"]}
    assert [(kind, key) for kind, _, _, key, _ in versions(db_url)] == [("curves", days[7])]


def test_the_same_is_equal_json_values_as_objects_compare_them(client, db_url):
    post(client, [{"_id": "EQ", "FWD": curve(D1, [("M01", 1), ("M02", True)], units="EUR")}], "eq-1")
    reordered = {"contracts": [{"value": 1, "tenor": "M01"}, {"value": True, "tenor": "M02"}], "units": "EUR"}
    same = post(
        client,
        [
            {
                "_id": "EQ",
                "FWD": {**reordered, "_type": "VarCurve", "ondate": {"curveDate": D1, "_type": "VarCurveDate"}},
            }
        ],
        "eq-2",
    )
    assert same["counts"]["curves"] == {**EMPTY, "unchanged": 1}  # key order is no change
    one = post(client, [{"_id": "EQ", "FWD": curve(D1, [("M01", 1.0), ("M02", True)], units="EUR")}], "eq-3")
    assert one["counts"]["curves"] == {**EMPTY, "unchanged": 1}  # 1.0 is the number 1
    changed = post(client, [{"_id": "EQ", "FWD": curve(D1, [("M01", 1), ("M02", 1)], units="EUR")}], "eq-4")
    assert changed["counts"]["curves"] == {**EMPTY, "updated": 1}  # true is not 1
    assert version_count(db_url) == 1
    # a large whole float reads back from jsonb as an integer: still the same number
    post(client, [{"_id": "EQ", "FWD": curve(D2, [("M01", 2.5e17)])}], "eq-5")
    again = post(client, [{"_id": "EQ", "FWD": curve(D2, [("M01", 2.5e17)])}], "eq-6")
    assert again["counts"]["curves"] == {**EMPTY, "unchanged": 1}


def test_same_json_is_jsonb_equality():
    assert same_json({"a": 1, "b": [1.5, "x"]}, {"b": [1.5, "x"], "a": 1.0})
    assert same_json({"a": 10**18}, {"a": 1e18})
    assert not same_json([True], [1])
    assert not same_json({"a": {"b": [1, False]}}, {"a": {"b": [1, 0]}})
    assert not same_json({"a": 1}, {"a": 1, "b": None})
    assert not same_json({"a": "1"}, {"a": 1})


def test_a_merge_curve_that_merges_to_the_stored_curve_is_unchanged(client, db_url):
    post(client, [{"_id": "MC", "FWD": curve(D1, [("M01", 50), ("M02", 51)])}], "m-1")
    rows = stored(db_url, "curves")
    same = post(client, [{"_id": "MC", "FWD": curve(D1, [("M02", 51)], _merge=True)}], "m-2")
    assert same["counts"]["curves"] == {**EMPTY, "unchanged": 1}
    assert same["summary"]["curves"] == {}
    assert stored(db_url, "curves") == rows and version_count(db_url) == 0
    merged = post(client, [{"_id": "MC", "FWD": curve(D1, [("M03", 52)], _merge=True)}], "m-3")
    assert merged["counts"]["curves"] == {**EMPTY, "updated": 1}
    assert [c["tenor"] for c in data(client, f"MC:FWD:{D1}")["contracts"]] == ["M01", "M02", "M03"]
    assert version_count(db_url) == 1


def test_a_replaced_object_archives_the_rows_it_does_not_send_again(client, db_url):
    first = post(client, FIRST, "r-1")
    replaced = post(
        client,
        [
            {
                "_id": "MKT",
                "FWD": curve(D2, [("M01", 60), ("M02", 61)]),
                "OUTAGES": [event("o9", "2024-01-05T00:00:00Z")],
            }
        ],
        "r-2",
        query="?_replace=true",
    )
    # D2 re-sent as stored: unchanged; D1, the matrix and o1, o2 not sent: removed
    assert replaced["counts"]["curves"] == {**EMPTY, "unchanged": 1, "removed": 1}
    assert replaced["counts"]["matrices"] == {**EMPTY, "removed": 1}
    assert replaced["counts"]["events"] == {**EMPTY, "created": 1, "removed": 2}
    assert [row[2] for row in stored(db_url, "curves")] == [D2]
    assert stored(db_url, "matrices") == []
    assert [(kind, key) for kind, _, _, key, _ in versions(db_url)] == [
        ("curves", D1),
        ("events", "o1"),
        ("events", "o2"),
        ("matrices", D1),
    ]
    logged = db_rows(
        db_url, "SELECT kind, removed FROM batch_changes WHERE batch = 'r-2' AND removed <> '{}' ORDER BY 1"
    )
    assert logged == [
        ("curves", ['["MKT","FWD","2024-01-02"]']),
        ("events", ['["MKT","OUTAGES","o1"]', '["MKT","OUTAGES","o2"]']),
        ("matrices", ['["MKT","VOLS","2024-01-02"]']),
    ]
    # as of before the replace, the removed rows are there again
    assert data(client, f"MKT:FWD:{D1}", _asof=at(first))["contracts"][0]["value"] == 50
    assert data(client, "MKT:VOLS", _asof=at(first))["data"] == [[1, 2], [3, 4]]
    assert events(client, "MKT:OUTAGES", _asof=at(first))[0] == 2
    assert [e["_id"] for e in events(client, "MKT:OUTAGES")[1]] == ["o9"]
    data(client, "MKT:VOLS", status=404)  # the replaced object has no matrix now


# --- as-of reads --------------------------------------------------------------------------------


def test_as_of_a_curve_replacement_a_matrix_change_and_tenor_history(client):
    first = post(client, FIRST, "a-1")
    second = post(
        client,
        [
            {
                "_id": "MKT",
                "FWD": curve(D2, [("M01", 65), ("M02", 66)]),
                "VOLS": matrix(D1, [[9, 9], [9, 9]]),
            },
            {"_id": "MKT", "FWD": curve(D3, [("M01", 70)])},
        ],
        "a-2",
    )
    # now
    assert data(client, f"MKT:FWD:{D2}")["contracts"][0]["value"] == 65
    assert data(client, "MKT:FWD")["_id"] == f"MKT:FWD:{D3}"
    assert data(client, "MKT:VOLS")["data"] == [[9, 9], [9, 9]]
    # as of the first batch: D2 as it was, D3 not yet there, the matrix as it was
    old = data(client, f"MKT:FWD:{D2}", _asof=at(first))
    assert old == {
        "_id": f"MKT:FWD:{D2}",
        **curve(D2, [("M01", 60), ("M02", 61)]),
    }
    assert data(client, "MKT:FWD", _asof=at(first))["_id"] == f"MKT:FWD:{D2}"  # the latest then
    assert_error(read(client, f"/api/data/v1/private/MKT:FWD:{D3}", status=404, _asof=at(first)), 404, D3)
    assert data(client, "MKT:VOLS", _asof=at(first))["data"] == [[1, 2], [3, 4]]
    assert data(client, f"MKT:VOLS:{D1}", _asof=at(first))["data"] == [[1, 2], [3, 4]]
    # as of the second: today's answers
    assert data(client, f"MKT:FWD:{D2}", _asof=at(second)) == data(client, f"MKT:FWD:{D2}")
    assert data(client, "MKT:VOLS", _asof=at(second)) == data(client, "MKT:VOLS")
    # tenor history, by path and by parameter, then and now
    then = [{"time": D1, "value": 50}, {"time": D2, "value": 60}]
    assert data(client, "MKT:FWD:M01", _asof=at(first))["data"] == then
    assert data(client, "MKT:FWD", tenor="M01", _asof=at(first))["data"] == then
    assert data(client, "MKT:FWD:M01")["data"] == [
        {"time": D1, "value": 50},
        {"time": D2, "value": 65},
        {"time": D3, "value": 70},
    ]
    assert data(client, "MKT:FWD:M01", _range="last(1)", _asof=at(first))["data"] == [{"time": D2, "value": 60}]
    assert data(client, "MKT:FWD:M02", _range=f"from({D2})", _asof=at(second))["data"] == [{"time": D2, "value": 66}]
    # before the object existed there is nothing
    assert_error(read(client, "/api/data/v1/private/MKT:FWD", status=404, _asof=before(first)), 404, "not found")


def test_as_of_an_event_correction_and_an_event_added_later(client):
    first = post(client, FIRST, "e-1")
    second = post(
        client,
        [
            {
                "_id": "MKT",
                "OUTAGES": [event("o2", "2024-01-03T11:00:00Z", unit="G2b"), event("o3", "2024-01-06T00:00:00Z")],
            }
        ],
        "e-2",
    )
    total, now = events(client, "MKT:OUTAGES")
    assert total == 3 and [e["_id"] for e in now] == ["o3", "o2", "o1"]  # newest first
    total, then = events(client, "MKT:OUTAGES", _asof=at(first))
    assert total == 2 and [(e["_id"], e["unit"]) for e in then] == [("o2", "G2"), ("o1", "G1")]
    assert then[0]["eventtime"] == "2024-01-03T09:00:00Z"
    # the single event and the ?event= list, then and now
    one = read(client, "/api/event/v1/private/MKT:OUTAGES:o2", _asof=at(first)).get_json()
    assert one["unit"] == "G2" and one["eventtime"] == "2024-01-03T09:00:00Z"
    assert read(client, "/api/event/v1/private/MKT:OUTAGES:o2").get_json()["unit"] == "G2b"
    response = read(client, "/api/event/v1/private/MKT:OUTAGES:o3", status=404, _asof=at(first))
    assert_error(response, 404, "o3", "not found")
    listed = read(client, "/api/event/v1/private", event="MKT:OUTAGES", _asof=at(first), _sort="eventtime")
    assert listed.headers["x-total-count"] == "2"
    assert [e["_id"] for e in listed.get_json()] == ["o1", "o2"]
    # paged, filtered and sorted as of then, on the values of then
    page = read(client, "/api/event/v1/private/MKT:OUTAGES", _asof=at(first), _limit=1, _skip=1, _sort="-eventtime")
    assert page.headers["x-total-count"] == "2" and [e["_id"] for e in page.get_json()] == ["o1"]
    late = read(client, "/api/event/v1/private/MKT:OUTAGES", _asof=at(first), eventtime="gte(2024-01-03T10:00:00Z)")
    assert late.get_json() == []  # o2 was at 09:00 then
    late = read(client, "/api/event/v1/private/MKT:OUTAGES", eventtime="gte(2024-01-03T10:00:00Z)")
    assert [e["_id"] for e in late.get_json()] == ["o3", "o2"]
    filtered = read(client, "/api/event/v1/private/MKT:OUTAGES", _asof=at(first), _filter='{"unit":"G2"}')
    assert [e["_id"] for e in filtered.get_json()] == ["o2"]
    assert events(client, "MKT:OUTAGES", _asof=at(second)) == events(client, "MKT:OUTAGES")


def test_as_of_the_object_header_is_the_object_as_it_was(client):
    first = post(client, [{"_id": "HDR", "FWD": curve(D1, [("M01", 1)], units="EUR")}], "hd-1")
    post(client, [{"_id": "HDR", "FWD": curve(D1, [("M01", 1)], units="USD")}], "hd-2")
    assert data(client, "HDR:FWD")["units"] == "USD"
    assert data(client, "HDR:FWD", _asof=at(first))["units"] == "EUR"


def test_series_as_of_reaches_the_series_store(client, monkeypatch):
    """The route hands the series read its instant (what series.read_points does with it is series.py's)."""
    first = post(client, [{"_id": "SER", "PRICE": {"_type": "VarTimeSeries", "units": "EUR", "data": []}}], "sp-1")
    post(client, [{"_id": "SER", "PRICE": {"_type": "VarTimeSeries", "units": "USD", "data": []}}], "sp-2")
    asked = []

    def read_points(connection, scope, object_id, prop, *, start, end, last, asof=None):
        asked.append((object_id, prop, start, end, last, asof))
        return [{"time": "2024-01-01", "value": 1}]

    monkeypatch.setattr(series, "read_points", read_points)
    answer = data(client, "SER:PRICE", _asof=at(first), _range="last(3)")
    assert answer == {
        "_id": "SER:PRICE",
        "_type": "VarTimeSeries",
        "units": "EUR",
        "data": [{"time": "2024-01-01", "value": 1}],
    }
    instant = datetime.fromisoformat(at(first).replace("Z", "+00:00"))
    assert asked == [("SER", "PRICE", None, None, 3, instant)]
    data(client, "SER:PRICE")
    assert asked[-1][-1] is None  # no _asof: the current points


def test_series_as_of_reads_the_points_as_they_were(client):
    """The data route's `_asof` on a series (the points as of an instant are store/series's)."""
    series = {
        "_type": "VarTimeSeries",
        "data": [{"time": "2024-01-01", "value": 1}, {"time": "2024-01-02", "value": 2}],
    }
    first = post(client, [{"_id": "SER", "PRICE": series}], "s-1")
    corrected = {
        "_type": "VarTimeSeries",
        "data": [{"time": "2024-01-02", "value": 20}, {"time": "2024-01-03", "value": 3}],
    }
    post(client, [{"_id": "SER", "PRICE": corrected}], "s-2")
    assert [p["value"] for p in data(client, "SER:PRICE")["data"]] == [1, 20, 3]
    assert [p["value"] for p in data(client, "SER:PRICE", _asof=at(first))["data"]] == [1, 2]
    assert [p["value"] for p in data(client, "SER:PRICE", _asof=at(first), _range="last(1)")["data"]] == [2]


# --- refusals -----------------------------------------------------------------------------------

AS_OF_ROUTES = (
    "/api/data/v1/private/MKT:FWD",
    f"/api/data/v1/private/MKT:FWD:{D1}",
    "/api/data/v1/private/MKT:FWD:M01",
    "/api/event/v1/private/MKT:OUTAGES",
    "/api/event/v1/private/MKT:OUTAGES:o1",
    "/api/event/v1/private?event=MKT:OUTAGES",
)


def _with(route: str, query: str) -> str:
    return route + ("&" if "?" in route else "?") + query


def test_bad_asof_is_400_and_changes_nothing(client, db_url):
    summary = post(client, FIRST, "b-1")
    rows = {table: stored(db_url, table) for table in ("curves", "matrices", "events")}
    for route in AS_OF_ROUTES:
        assert_error(client.get(_with(route, "_asof=yesterday"), headers=auth()), 400, "_asof", "yesterday")
        twice = _with(route, f"_asof={quote(at(summary))}&_asof={quote(at(summary))}")
        assert_error(client.get(twice, headers=auth()), 400, "_asof", "more than once")
        assert client.get(_with(route, f"_asof={quote(at(summary))}"), headers=auth()).status_code == 200
    assert {table: stored(db_url, table) for table in rows} == rows
    assert version_count(db_url) == 0
    assert db_rows(db_url, "SELECT count(*) FROM batch_summaries") == [(1,)]
    # the data list takes no _asof
    assert_error(client.get("/api/data/v1/private?_asof=2024-01-01", headers=auth()), 400, "_asof")


def test_as_of_routes_401_403_404(client):
    summary = post(client, FIRST, "p-1")
    when = quote(at(summary))
    for route in AS_OF_ROUTES:
        query = _with(route, f"_asof={when}")
        response = client.get(query)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(client.get(query, headers=auth(roles=())), 403)
        assert_error(client.get(query, headers=auth(tenant="tenant-b")), 404)  # another tenant's data
        assert_error(client.get(query, headers=auth(environment="staging")), 404)
        assert_error(client.get(query.replace("MKT", "NOPE"), headers=auth()), 404)
        assert client.get(query.replace("/private", "/public"), headers=auth()).status_code == 404


def test_as_of_before_the_history_watermark_is_410(client, db_url):
    first = post(client, FIRST, "w-1")
    post(client, [{"_id": "MKT", "FWD": curve(D1, [("M01", 1)])}], "w-2")
    db_rows(
        db_url,
        "INSERT INTO history_watermarks (tenant, environment, pruned_before) VALUES (%s, %s, now())",
        (TENANT, ENVIRONMENT),
    )
    for route in AS_OF_ROUTES:
        assert_error(client.get(_with(route, f"_asof={quote(at(first))}"), headers=auth()), 410, "pruned")
        assert client.get(_with(route, "_asof=2999-01-01"), headers=auth()).status_code == 200
    assert_error(client.get(_with(AS_OF_ROUTES[0], "_asof=bad"), headers=auth()), 400)  # 400 first


def test_as_of_routes_are_documented(client):
    spec = read(client, "/api/batch/openapi.json").get_json()
    for path in ("/api/data/v1/{source}/{ref}", "/api/event/v1/{source}/{ref}", "/api/event/v1/{source}"):
        operation = spec["paths"][path]["get"]
        assert "_asof" in [p["name"] for p in operation["parameters"]], path
        assert "410" in operation["responses"], path


# --- undoing a batch's rows, in the store -------------------------------------------------------

SCOPE = Scope("t-undo", "e")
SCOPE_PARAMS = {"tenant": SCOPE.tenant, "environment": SCOPE.environment}
DAY1, DAY2 = date(2024, 3, 1), date(2024, 3, 2)
T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


def write(database, batch_id, writes, *, minutes, wiped=()):
    """Write `writes` as batch `batch_id` at T0 + minutes: (DataChanges, stamp, change log entries)."""
    with raw_transaction(database, PREPARED) as cursor:
        store = BatchStore(cursor, SCOPE)
        changes = store.write_data(list(wiped), writes, batch_id=batch_id, now=T0 + timedelta(minutes=minutes))
        stamp = store.stamp(batch_id, T0)
    return changes, stamp, _entries(store.log)


def _entries(log) -> dict:
    return {kind: tuple(sorted(keys) for keys in sets) for kind, sets in log.kinds.items()}


def undo_items(database, stamp, entries):
    with raw_transaction(database, PREPARED) as cursor:
        return {item.label: item for item in datarows.undo_items(cursor, SCOPE_PARAMS, stamp.value, entries)}


def apply_undo(database, batch_id, actions, *, minutes):
    with raw_transaction(database, PREPARED) as cursor:
        store = BatchStore(cursor, SCOPE)
        stamp = store.stamp(batch_id, T0 + timedelta(minutes=minutes))
        changes = datarows.apply_undo(cursor, SCOPE_PARAMS, actions, stamp=stamp, log=store.log)
    return changes, stamp, _entries(store.log)


def rows(db_url) -> dict:
    """Every current curve, matrix and event of the test scope: label -> document."""
    found = {}
    for table, key in (("curves", "ondate::text"), ("matrices", "ondate::text"), ("events", "event_id")):
        for label, doc in db_rows(
            db_url,
            f"SELECT object_id || ':' || property || ':' || {key}, doc FROM {table} WHERE tenant = %s",
            (SCOPE.tenant,),
        ):
            found[label] = doc
    return found


def writes(curves=None, matrices=None, events=None) -> dict[str, DataWrites]:
    return {
        "A": DataWrites(
            curves={("FWD", day): (doc, False) for day, doc in (curves or {}).items()},
            matrices={("VOLS", day): doc for day, doc in (matrices or {}).items()},
            events={("LIST", ident): (when, doc) for ident, (when, doc) in (events or {}).items()},
        )
    }


def test_undo_finds_what_a_batch_changed_and_puts_the_earlier_states_back(database, db_url):
    e1 = {"_id": "e1", "v": 1}
    _, s1, _ = write(
        database,
        "b-1",
        writes(curves={DAY1: {"c": 1}}, matrices={DAY1: {"m": 1}}, events={"e1": (T0, e1)}),
        minutes=1,
    )
    first = rows(db_url)
    changes, s2, log2 = write(
        database,
        "b-2",
        writes(curves={DAY1: {"c": 2}, DAY2: {"c": 2}}, matrices={DAY1: {"m": 1}}, events={"e1": (T0, {**e1, "v": 2})}),
        minutes=2,
    )
    assert changes.tallies["curves"].as_dict() == {**EMPTY, "created": 1, "updated": 1}
    assert changes.tallies["matrices"].as_dict() == {**EMPTY, "unchanged": 1}
    assert changes.kept["matrices"] == {("A", "VOLS"): {DAY1}}
    assert set(log2) == {"curves", "events"}  # the unchanged matrix is no change of b-2's

    items = undo_items(database, s2, log2)
    assert set(items) == {"A:FWD:2024-03-01", "A:FWD:2024-03-02", "A:LIST:e1"}
    updated, created, corrected = items["A:FWD:2024-03-01"], items["A:FWD:2024-03-02"], items["A:LIST:e1"]
    assert (updated.kind, updated.change, updated.present, updated.current_by, updated.before, updated.later) == (
        "curves",
        WAS_UPDATED,
        True,
        "b-2",
        True,
        (),
    )
    assert (created.change, created.present, created.current_by, created.before) == (WAS_CREATED, True, "b-2", False)
    assert (corrected.kind, corrected.change, corrected.before) == ("events", WAS_UPDATED, True)
    assert updated.key == ("A", "FWD", DAY1, s2.value)

    # undo b-2: the created curve removed, the updated one and the event restored
    changes, r1, log_r1 = apply_undo(
        database, "undo-2", [(updated, RESTORE), (created, REMOVE), (corrected, RESTORE)], minutes=3
    )
    assert changes.tallies["curves"].as_dict() == {**EMPTY, "updated": 1, "removed": 1}
    assert changes.tallies["events"].as_dict() == {**EMPTY, "updated": 1}
    assert rows(db_url) == first
    # what the undo replaced or removed is archived like any write's: b-2's states, superseded by it
    archived = db_rows(
        db_url,
        "SELECT kind, key, doc FROM data_versions WHERE superseded = %s ORDER BY kind, key",
        (r1.value,),
    )
    assert archived == [
        ("curves", "2024-03-01", {"c": 2}),
        ("curves", "2024-03-02", {"c": 2}),
        ("events", "e1", {**e1, "v": 2}),
    ]
    assert set(log_r1["curves"][1]) == {datarows.log_key("A", "FWD", DAY1)}
    assert set(log_r1["curves"][2]) == {datarows.log_key("A", "FWD", DAY2)}

    # the undone batch's items now answer as changed by the undo
    assert undo_items(database, s2, log2)["A:FWD:2024-03-01"].later == ("undo-2",)

    # undoing the undo applies b-2 again: restores what the undo superseded, re-creates what it removed
    again = undo_items(database, r1, log_r1)
    assert {label: item.change for label, item in again.items()} == {
        "A:FWD:2024-03-01": WAS_UPDATED,
        "A:FWD:2024-03-02": WAS_REMOVED,
        "A:LIST:e1": WAS_UPDATED,
    }
    assert again["A:FWD:2024-03-02"].present is False and again["A:FWD:2024-03-02"].before is True
    actions = [(item, RECREATE if item.change == WAS_REMOVED else RESTORE) for item in again.values()]
    changes, r2, _ = apply_undo(database, "undo-undo-2", actions, minutes=4)
    assert changes.tallies["curves"].as_dict() == {**EMPTY, "created": 1, "updated": 1}
    assert rows(db_url) == {
        **first,
        "A:FWD:2024-03-01": {"c": 2},
        "A:FWD:2024-03-02": {"c": 2},
        "A:LIST:e1": {**e1, "v": 2},
    }
    stamps = db_rows(db_url, "SELECT DISTINCT stamp FROM curves WHERE tenant = %s", (SCOPE.tenant,))
    assert stamps == [(r2.value,)]  # written anew, with the undo's own stamp


def test_undo_items_name_the_later_batches_that_changed_an_item(database):
    _, s1, log1 = write(database, "c-1", writes(curves={DAY1: {"c": 1}}, events={"e": (T0, {"_id": "e"})}), minutes=1)
    write(database, "c-2", writes(curves={DAY1: {"c": 2}}), minutes=2)
    write(database, "c-3", writes(curves={DAY1: {"c": 3}}), minutes=3)
    write(database, "c-4", writes(curves={DAY2: {"c": 4}}), wiped=["A"], minutes=4)  # removes DAY1 and the event
    items = undo_items(database, s1, log1)
    changed, removed = items["A:FWD:2024-03-01"], items["A:LIST:e"]
    assert (changed.change, changed.present, changed.current_by, changed.before) == (WAS_CREATED, False, None, False)
    assert changed.later == ("c-2", "c-3", "c-4")  # oldest first
    assert removed.later == ("c-4",) and removed.present is False
    # a batch that wrote nothing of an item is no later change of it; a re-created item names its creator
    write(database, "c-5", writes(curves={DAY1: {"c": 5}}), minutes=5)
    again = undo_items(database, s1, log1)["A:FWD:2024-03-01"]
    assert (again.present, again.current_by, again.later) == (True, "c-5", ("c-2", "c-3", "c-4", "c-5"))


def test_data_writers_are_the_stamps_of_current_rows(database):
    _, s1, _ = write(database, "w-1", writes(curves={DAY1: {"c": 1}}, events={"e": (T0, {"_id": "e"})}), minutes=1)
    _, s2, _ = write(database, "w-2", writes(curves={DAY2: {"c": 2}}), minutes=2)
    write(database, "w-3", writes(curves={DAY2: {"c": 2}}), minutes=3)  # unchanged: not a writer
    with raw_transaction(database, PREPARED) as cursor:
        assert datarows.data_writers(cursor, SCOPE_PARAMS, ["A", "NONE"]) == {"A": {s1.value, s2.value}}
        assert datarows.data_writers(cursor, SCOPE_PARAMS, []) == {}
