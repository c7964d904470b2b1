"""Series storage (SPEC §6, §8): observations packed into chunks, read back exactly as sent.

Through POST /api/batch and GET /api/data (Flask test client, and a real gunicorn for
concurrency and crashes), with the chunk rows inspected directly where the layout is the point.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import quote

import orjson
import pytest
import requests
from alembic import command
from conftest import auth, connect, db_rows, start_live_server, truncate
from support import scratch
from support.scratch import alembic_config, server_url

from batchsvc import create_app
from batchsvc.config import normalise_database_url
from batchsvc.core.times import parse_instant
from batchsvc.core.typed import DataWrites
from batchsvc.store import series as series_store

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIVE_MINUTES = timedelta(minutes=5)


# --- helpers ------------------------------------------------------------------------------------


def post(client, elements, *, status=201, query="", headers=None) -> dict:
    response = client.post("/api/batch" + query, data=orjson.dumps({"elements": elements}), headers=headers or auth())
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def raw_points(client, ref, headers=None, **params) -> bytes:
    response = client.get(f"/api/data/v1/private/{quote(ref, safe='')}", query_string=params, headers=headers or auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data()


def points(client, ref, **params) -> list[dict]:
    return orjson.loads(raw_points(client, ref, **params))["data"]


def series(data, **header) -> dict:
    return {"_type": "VarTimeSeries", **header, "data": data}


def five_minute_day(day: date, values) -> list[dict]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [
        {"time": (start + n * FIVE_MINUTES).strftime("%Y-%m-%dT%H:%M:%SZ"), "value": value}
        for n, value in enumerate(values)
    ]


def day_range(day: date) -> str:
    return f"between({day}T00:00:00Z,{day}T23:59:59.999999Z)"


def chunk_rows(db_url, object_id, prop="PRICE") -> list[tuple]:
    """(day, number of points, codes, extras, ctid, xmin) of each chunk of one series, in day order."""
    return db_rows(
        db_url,
        """SELECT c.day, cardinality(c.times), c.codes, c.extras, c.ctid::text, c.xmin::text
           FROM series_chunks c JOIN series s ON s.tenant_key = c.tenant_key AND s.id = c.series_id
           WHERE s.object_id = %s AND s.property = %s ORDER BY c.day""",
        (object_id, prop),
    )


def span_of(db_url, object_id, prop="PRICE") -> str | None:
    rows = db_rows(db_url, "SELECT span FROM series WHERE object_id = %s AND property = %s", (object_id, prop))
    return rows[0][0] if rows else None


def prices(rng, count) -> list[float]:
    return [round(40 + rng.random() * 30, 2) for _ in range(count)]


# --- growth: appending never rewrites the history ------------------------------------------------------


def test_appending_to_a_series_of_100k_points_touches_only_the_new_day(client, db_url):
    rng = random.Random(1)
    first = date(2023, 1, 1)
    stored = []
    for batch in range(12):  # 12 x 30 days of 5-minute prices: 103,680 points
        data = []
        for d in range(batch * 30, (batch + 1) * 30):
            data += five_minute_day(first + timedelta(days=d), prices(rng, 288))
        post(client, [{"_id": "LONG", "PRICE": series(data, calendar="PT5M")}])
        stored += data
    assert len(stored) == 103_680
    history = chunk_rows(db_url, "LONG")
    assert span_of(db_url, "LONG") == "D" and len(history) == 360

    new_day = first + timedelta(days=360)
    appended = five_minute_day(new_day, prices(rng, 288))
    summary = post(client, [{"_id": "LONG", "PRICE": series(appended)}])
    assert summary["summary"]["series"] == {new_day.isoformat(): ["LONG:PRICE"]}

    after = chunk_rows(db_url, "LONG")
    assert after[:-1] == history  # same tuples, same writing transactions: not read into new versions
    assert after[-1][:2] == (new_day, 288)
    assert points(client, "LONG:PRICE", _range="last(3)") == appended[-3:]
    assert points(client, "LONG:PRICE", _range=day_range(new_day)) == appended
    boundary = f"between({new_day - timedelta(days=1)}T23:50:00Z,{new_day}T00:05:00Z)"
    assert points(client, "LONG:PRICE", _range=boundary) == stored[-2:] + appended[:2]
    assert points(client, "LONG:PRICE") == stored + appended

    # the new day again, half of it corrected: only that day's chunk gets a new version
    corrected = [{**p, "value": p["value"] + 1000} if n % 2 else p for n, p in enumerate(appended)]
    post(client, [{"_id": "LONG", "PRICE": series(corrected)}])
    again = chunk_rows(db_url, "LONG")
    assert again[:-1] == history and again[-1][5] != after[-1][5]
    assert points(client, "LONG:PRICE", _range=day_range(new_day)) == corrected


# --- corrections inside a packed day ---------------------------------------------------------------------


def test_corrections_inside_a_packed_day_merge_by_time(client, db_url):
    day = date(2024, 3, 5)
    original = five_minute_day(day, [float(n) + 0.5 for n in range(288)])
    post(client, [{"_id": "C", "PRICE": series(original, units="EUR")}])
    correction = [
        {"time": "2024-03-05T01:00:00Z", "value": -1.25},
        {"time": "2024-03-05T12:00:00Z", "value": 99.5, "flag": "estimated"},
        {"time": "2024-03-05T12:02:30Z", "value": 7.0},  # between two stored times
        {"time": "2024-03-05T23:55:00Z", "value": 0.0},
    ]
    summary = post(client, [{"_id": "C", "PRICE": series(correction)}])
    assert summary["summary"]["series"] == {"2024-03-05": ["C:PRICE"]}

    expected = {p["time"]: p for p in original}
    expected.update({p["time"]: p for p in correction})
    expected = [expected[t] for t in sorted(expected)]
    assert points(client, "C:PRICE") == expected
    [(chunk_day, count, codes, extras, _, _)] = chunk_rows(db_url, "C")
    assert (chunk_day, count, codes) == (day, 289, [0])  # every point a float with a ...Z time: one code
    assert extras == {
        str((datetime(2024, 3, 5, 12, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)): {"flag": "estimated"}
    }

    # the flagged observation sent again without its flag is replaced whole: the flag goes
    post(client, [{"_id": "C", "PRICE": series([{"time": "2024-03-05T12:00:00+00:00", "value": 98}])}])
    by_time = {p["time"]: p for p in points(client, "C:PRICE")}
    assert "2024-03-05T12:00:00Z" not in by_time
    assert by_time["2024-03-05T12:00:00+00:00"] == {"time": "2024-03-05T12:00:00+00:00", "value": 98}
    [(_, count, codes, extras, _, _)] = chunk_rows(db_url, "C")
    assert count == 289 and extras is None and len(codes) == 289  # now mixed: a code per point
    assert points(client, "C:PRICE", _range="between(2024-03-05T11:55:00Z,2024-03-05T12:05:00Z)") == [
        {"time": "2024-03-05T11:55:00Z", "value": 143.5},
        {"time": "2024-03-05T12:00:00+00:00", "value": 98},
        {"time": "2024-03-05T12:02:30Z", "value": 7.0},
        {"time": "2024-03-05T12:05:00Z", "value": 145.5},
    ]


# --- _replace -------------------------------------------------------------------------------------------


def test_series_replace_wipes_that_series_only_and_keeps_its_row(client, db_url):
    intraday = five_minute_day(date(2024, 1, 1), range(288)) + five_minute_day(date(2024, 1, 2), range(288))
    post(client, [{"_id": "R", "PRICE": series(intraday), "OTHER": series(intraday[:10])}])
    assert span_of(db_url, "R") == "D" and len(chunk_rows(db_url, "R")) == 2
    ids = db_rows(db_url, "SELECT property, id FROM series WHERE object_id = 'R' ORDER BY 1")

    daily = [{"time": f"2024-02-{d:02d}", "value": d} for d in range(1, 11)]
    summary = post(client, [{"_id": "R", "PRICE": {**series(daily), "_replace": True}}])
    assert summary["summary"]["series"] == {f"2024-02-{d:02d}": ["R:PRICE"] for d in range(1, 11)}
    assert summary["counts"]["points"] == {"created": 10, "updated": 0, "unchanged": 0, "removed": 576}
    assert points(client, "R:PRICE") == daily
    # the series keeps its row (its id, which its archived points carry, and its span)
    assert span_of(db_url, "R") == "D" and [row[:2] for row in chunk_rows(db_url, "R")] == [
        (date(2024, 2, d), 1) for d in range(1, 11)
    ]
    assert db_rows(db_url, "SELECT property, id FROM series WHERE object_id = 'R' ORDER BY 1") == ids
    assert points(client, "R:OTHER") == intraday[:10]

    # a replaced object loses every series it had; one sent with it is written afresh
    post(client, [{"_id": "R", "_replace": True, "OTHER": series(intraday[:1])}])
    assert chunk_rows(db_url, "R") == []
    assert points(client, "R:OTHER") == intraday[:1]
    post(client, [{"_id": "R", "x": 1}], query="?_replace=true")
    assert db_rows(db_url, "SELECT count(*) FROM series WHERE object_id = 'R'") == [(2,)]
    assert db_rows(db_url, "SELECT count(*) FROM series_chunks") == [(0,)]


# --- exact round trips ---------------------------------------------------------------------------------------


def test_extra_fields_and_non_numeric_values_round_trip(client, db_url):
    observations = [
        {"time": "2024-05-01T00:00:00Z", "value": 1.5, "flag": "E", "status": {"checked": [1, 2.5, None]}},
        {"time": "2024-05-01T01:00:00Z", "value": "N/A"},
        {"time": "2024-05-01T02:00:00Z", "value": None},
        {"time": "2024-05-01T03:00:00Z"},
        {"time": "2024-05-01T04:00:00Z", "value": True},
        {"time": "2024-05-01T05:00:00Z", "value": 2**60},
        {"time": "2024-05-01T06:00:00Z", "value": -(2**53)},
        {"time": "2024-05-01T07:00:00Z", "value": [1, 2]},
        {"time": "2024-05-01T08:00:00Z", "value": {"bid": 1.0, "ask": 1.25}},
        {"time": "2024-05-01T09:00:00Z", "value": 100},
        {"time": "2024-05-01T10:00:00Z", "value": 100.0},
        {"time": "2024-05-01T11:00:00Z", "value": 0.0, "status": "final"},
        {"time": "2024-05-01T12:00:00Z", "comment": "no value, a note"},
    ]
    post(client, [{"_id": "X", "PRICE": series(observations)}])
    body = raw_points(client, "X:PRICE")
    assert orjson.loads(body)["data"] == observations
    # integers stay integers and floats floats on the wire
    assert b'"value":100}' in body and b'"value":100.0}' in body and b'"value":-9007199254740992}' in body
    [(_, count, codes, extras, _, _)] = chunk_rows(db_url, "X")
    assert count == len(observations)
    # only the observations with more than a time and a float64 or exact integer carry extras
    carried = sorted(extras)
    expected = [
        (datetime(2024, 5, 1, hour, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
        for hour in (0, 1, 2, 4, 5, 7, 8, 11, 12)
    ]
    assert carried == sorted(map(str, expected))
    assert db_rows(
        db_url,
        "SELECT vals FROM series_chunks c JOIN series s ON s.id = c.series_id WHERE s.object_id = 'X'",
    ) == [([1.5, None, None, None, None, None, -(2.0**53), None, None, 100.0, 100.0, 0.0, None],)]


def random_double(rng: random.Random) -> float:
    while True:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if value == value and abs(value) != float("inf"):  # NaN and infinities are not JSON
            return value


def test_float64_and_microseconds_round_trip_exactly(client):
    rng = random.Random(5)
    edge = [0.1, 1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0**53 + 2, 1e22, 123.456]
    values = edge + [random_double(rng) for _ in range(300)] + [rng.uniform(-1e6, 1e6) for _ in range(300)]
    start = datetime(2024, 6, 1, tzinfo=UTC)
    micros = sorted(rng.sample(range(0, 86_400 * 10**6 * 3), len(values)))
    observations = [
        {"time": (start + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "value": v}
        for us, v in zip(micros, values, strict=True)
    ]
    post(client, [{"_id": "F", "PRICE": series(observations)}])
    read = points(client, "F:PRICE")
    assert [p["time"] for p in read] == [p["time"] for p in observations]
    assert [struct.pack("<d", p["value"]) for p in read] == [struct.pack("<d", v) for v in values]
    # and one microsecond apart, at the edges of time
    edges = [
        {"time": "0001-01-01T00:00:00Z", "value": 1.0},
        {"time": "0001-01-01T00:00:00.000001Z", "value": 2.0},
        {"time": "1969-12-31T23:59:59.999999Z", "value": 3.0},
        {"time": "1970-01-01T00:00:00Z", "value": 4.0},
        {"time": "9999-12-31T23:59:59.999998Z", "value": 5.0},
        {"time": "9999-12-31T23:59:59.999999Z", "value": 6.0},
    ]
    post(client, [{"_id": "EDGE", "PRICE": series(edges)}])
    assert points(client, "EDGE:PRICE") == edges
    assert points(client, "EDGE:PRICE", _range="last(2)") == edges[-2:]
    assert points(client, "EDGE:PRICE", _range="from(1969-12-31T23:59:59.999999Z)")[:2] == edges[2:4]


def test_time_forms_come_back_as_written(client, db_url):
    forms = [
        ("2024-07-01", None),
        ("2024-07-02T00:00:00Z", None),
        ("2024-07-03T10:00:00.123456Z", None),
        ("2024-07-04T10:00:00.123Z", None),
        ("2024-07-05T10:00:00+02:00", None),
        ("2024-07-06T10:00:00-05:00", None),
        ("2024-07-07T10:00:00+05:45", None),
        ("2024-07-08T10:00:00.000001+00:00", None),
        ("2024-07-09T10:00:00", None),
        ("2024-07-10T10:00:00.5Z", "kept"),  # not a form the codes know: the text goes in extras
        ("2024-07-11T10:00Z", "kept"),
        ("20240712T100000Z", "kept"),
        ("2024-07-13T10:00:00+01:00:30", "kept"),
    ]
    observations = [{"time": text, "value": n} for n, (text, _) in enumerate(forms)]
    post(client, [{"_id": "TF", "PRICE": series(observations)}])
    assert points(client, "TF:PRICE") == observations
    kept = {extra["time"] for row in chunk_rows(db_url, "TF") for extra in (row[3] or {}).values()}
    assert kept == {text for text, where in forms if where}


def test_the_same_instant_written_two_ways_is_one_observation(client):
    post(client, [{"_id": "SAME", "PRICE": series([{"time": "2024-01-01T12:00:00Z", "value": 1}])}])
    post(client, [{"_id": "SAME", "PRICE": series([{"time": "2024-01-01T13:00:00+01:00", "value": 2}])}])
    assert points(client, "SAME:PRICE") == [{"time": "2024-01-01T13:00:00+01:00", "value": 2}]


def test_times_past_the_ends_of_the_utc_calendar_are_element_failures(client, db_url):
    summary = post(
        client,
        [
            {"_id": "OK", "PRICE": series([{"time": "0001-01-01T00:30:00Z", "value": 1}])},
            {"_id": "EARLY", "PRICE": series([{"time": "0001-01-01T00:30:00+01:00", "value": 1}])},
            {"_id": "LATE", "E": [{"_type": "VarEvent", "_id": "e", "eventtime": "9999-12-31T23:30:00-01:00"}]},
        ],
    )
    assert summary["summary"]["failures"] == {
        "EARLY": "property 'PRICE': observation #0 falls outside the years 1 to 9999",
        "LATE": "property 'E': event 'e' eventtime '9999-12-31T23:30:00-01:00' is outside the years 1 to 9999 in UTC",
    }
    assert points(client, "OK:PRICE") == [{"time": "0001-01-01T00:30:00Z", "value": 1}]
    assert db_rows(db_url, "SELECT object_id FROM series") == [("OK",)]


def random_time_text(rng: random.Random, instant: datetime) -> str:
    """`instant` written one of the ways loaders write times, right or (rarely) wrong."""
    offset = timedelta(minutes=15 * rng.randint(-56, 56))
    local = instant.astimezone(timezone(offset))
    forms = [
        instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        instant.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        local.isoformat(),
        local.replace(tzinfo=None).isoformat(),
        local.date().isoformat(),
        instant.strftime("%Y%m%dT%H%M%SZ"),
        (instant + timedelta(seconds=rng.choice([1, 3600, 86400]))).strftime("%Y-%m-%dT%H:%M:%SZ"),  # another instant
        "x",
    ]
    return rng.choice(forms)


def test_encoded_points_decode_to_the_observations_sent():
    """The point codec alone, on any pairing of instant and text the store could be handed:
    whatever it does not recognise exactly it keeps as sent."""
    rng = random.Random(9)
    start = datetime(1999, 12, 31, tzinfo=UTC)
    sent = {}
    for _ in range(3000):
        instant = start + timedelta(
            microseconds=rng.randrange(0, 400 * 86_400 * 10**6, rng.choice([1, 10**6, 300 * 10**6]))
        )
        observation = {"time": random_time_text(rng, instant)}
        value = rng.choice([rng.random() * 100, rng.randint(-(2**53), 2**53), 2**60, "n/a", None, True, [1], None])
        if rng.random() < 0.9:
            observation["value"] = value
        if rng.random() < 0.1:
            observation["flag"] = rng.choice(["E", {"checked": True}, 0.5])
        sent[("P", instant)] = observation
    encoded = series_store.encode_series({"OBJ": DataWrites(points=sent)})[("OBJ", "P")]
    times = [point[0] for point in encoded]
    vals = [None if point[2] is None else float(point[2]) for point in encoded]  # float8, as the database returns them
    codes = [point[1] for point in encoded]
    extras = orjson.dumps({str(point[0]): point[3] for point in encoded if point[3] is not None}).decode()
    decoded = series_store.observations(times, vals, codes, extras, 0, len(encoded))
    expected = [sent[key] for key in sorted(sent, key=lambda key: key[1])]
    assert decoded == expected
    assert all(type(a.get("value")) is type(b.get("value")) for a, b in zip(decoded, expected, strict=True))


def test_observations_handed_over_without_a_time_read_back_with_their_instant():
    """What a positional series (values placed by a calendar) may hand the store."""
    instants = [datetime(2022, 11, 1, tzinfo=UTC) + timedelta(minutes=30 * n, microseconds=n) for n in range(3)]
    writes = {"OBJ": DataWrites(points={("P", t): {"value": float(n)} for n, t in enumerate(instants)})}
    encoded = series_store.encode_series(writes)[("OBJ", "P")]
    assert [point[3] for point in encoded] == [None, None, None]  # nothing extra to keep
    decoded = series_store.observations(
        [p[0] for p in encoded], [p[2] for p in encoded], [p[1] for p in encoded], None, 0, 3
    )
    assert decoded == [
        {"time": "2022-11-01T00:00:00Z", "value": 0.0},
        {"time": "2022-11-01T00:30:00.000001Z", "value": 1.0},
        {"time": "2022-11-01T01:00:00.000002Z", "value": 2.0},
    ]


# --- spans and reads across chunks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "span", "chunks"),
    [
        ([(f"2024-01-{d:02d}T{h:02d}:00:00Z", h) for d in (1, 2, 3) for h in range(24)], "D", 3),
        ([(f"2024-{m:02d}-{d:02d}", d) for m in (1, 2) for d in range(1, 29)], "M", 2),
        ([((date(2023, 1, 2) + timedelta(weeks=w)).isoformat(), w) for w in range(60)], "Y", 2),
        ([(f"2024-03-{d:02d}", d) for d in range(1, 29)] + [("2024-03-05T12:00:00Z", 0)], "M", 1),
        ([("2024-01-01T10:05:00Z", 1)], "D", 1),
        ([("2024-01-01", 1)], "M", 1),
    ],
    ids=["hourly", "daily", "weekly", "daily-with-a-stray-point", "one-intraday-point", "one-date"],
)
def test_a_series_span_follows_its_data(client, db_url, data, span, chunks):
    observations = [{"time": t, "value": v} for t, v in data]
    post(client, [{"_id": "SPAN", "PRICE": series(observations)}])
    assert span_of(db_url, "SPAN") == span
    assert len(chunk_rows(db_url, "SPAN")) == chunks
    assert points(client, "SPAN:PRICE") == sorted(observations, key=lambda o: parse_instant(o["time"]))


def test_ranges_and_last_across_chunks(client):
    days = [date(2024, 4, 1) + timedelta(days=d) for d in range(3)]
    stored = [p for n, day in enumerate(days) for p in five_minute_day(day, [n * 1000 + m for m in range(288)])]
    post(client, [{"_id": "RG", "PRICE": series(stored)}])
    for n in (1, 288, 300, 577, 864, 10_000):
        assert points(client, "RG:PRICE", _range=f"last({n})") == stored[-n:]
    assert points(client, "RG:PRICE", _range="from(2024-04-03T23:55:00Z)") == stored[-1:]
    assert points(client, "RG:PRICE", _range="between(2024-04-01T23:55:00Z,2024-04-02T00:00:00Z)") == stored[287:289]
    assert points(client, "RG:PRICE", _range="between(2024-05-01T00:00:00Z,2024-06-01T00:00:00Z)") == []
    reversed_range = {"_range": "between(2024-04-02T12:00:00Z,2024-04-02T11:00:00Z)"}
    assert client.get("/api/data/v1/private/RG:PRICE", query_string=reversed_range, headers=auth()).status_code == 400


# --- concurrency and crashes on a real gunicorn ------------------------------------------------------------


def test_concurrent_writers_on_one_series_all_land(db_url):
    server = start_live_server(db_url, workers=2)
    headers = {**auth(tenant="tenant-concurrent"), "Content-Type": "application/json"}
    day = datetime(2024, 8, 1, tzinfo=UTC)
    clients, batches = 6, 8
    statuses, sent = [], {}
    lock = threading.Lock()

    def writer(c: int) -> None:
        with requests.Session() as session:
            for b in range(batches):
                # 36 points of its own, over two days (so every batch merges into both days' chunks),
                # and one time that every batch writes
                own = [day + timedelta(seconds=((c * batches + b) * 36 + k) * 100) for k in range(36)]
                data = [
                    {"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": c * 1000 + b + k / 100}
                    for k, t in enumerate(own)
                ]
                data.append({"time": "2024-08-01T12:00:30Z", "value": float(c * 100 + b)})
                elements = [{"_id": "HOT", "PRICE": series(data)}, {"_id": f"SIDE.{c}", "n": b}]
                response = session.post(
                    server.url + "/api/batch/v1", data=orjson.dumps({"elements": elements}), headers=headers, timeout=60
                )
                with lock:
                    statuses.append(response.status_code)
                    sent.update({p["time"]: p for p in data[:-1]})

    try:
        threads = [threading.Thread(target=writer, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert statuses == [201] * (clients * batches)
        response = requests.get(server.url + "/api/data/v1/private/HOT:PRICE", headers=headers, timeout=30)
        assert response.status_code == 200
        read = response.json()["data"]
        hot = [p for p in read if p["time"] == "2024-08-01T12:00:30Z"]
        assert len(hot) == 1 and hot[0]["value"] in {float(c * 100 + b) for c in range(clients) for b in range(batches)}
        assert [p for p in read if p["time"] != "2024-08-01T12:00:30Z"] == [sent[t] for t in sorted(sent)]
        assert "deadlock" not in server.log()
    finally:
        server.stop()
        truncate(db_url)


def test_a_worker_killed_mid_write_leaves_no_series_behind(db_url):
    server = start_live_server(db_url, workers=1)
    tenant = "tenant-series-crash"
    headers = {**auth(tenant=tenant), "Content-Type": "application/json"}
    stored = five_minute_day(date(2024, 9, 1), range(288))
    try:
        seeded = requests.post(
            server.url + "/api/batch/v1",
            data=orjson.dumps({"elements": [{"_id": "K", "PRICE": series(stored)}]}),
            headers=headers,
            timeout=60,
        )
        assert seeded.status_code == 201
        before = chunk_rows(db_url, "K")
        # Hold K's chunk so the batch stops inside its chunk upsert, after its other writes.
        holder = connect(db_url)
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM series_chunks FOR UPDATE")
        batch = {
            "_id": "crash-series",
            "elements": [
                {"_id": "K", "note": "changed", "PRICE": series([{"time": "2024-09-01T00:00:00Z", "value": -1}])},
                {"_id": "K2", "PRICE": series(stored[:5])},
            ],
        }
        outcome = {}

        def send():
            try:
                outcome["response"] = requests.post(
                    server.url + "/api/batch/v1", data=orjson.dumps(batch), headers=headers, timeout=60
                )
            except requests.RequestException as exc:
                outcome["error"] = exc

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        waiting = None
        deadline = time.monotonic() + 30
        while waiting is None and time.monotonic() < deadline:
            rows = db_rows(
                db_url,
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query LIKE '%%INSERT INTO series_chunks%%'",
            )
            waiting = rows[0][0] if rows else None
            time.sleep(0.02)
        assert waiting is not None, "the batch never reached its chunk upsert"
        [worker] = server.worker_pids()
        os.kill(worker, signal.SIGKILL)
        sender.join(30)
        assert "error" in outcome
        holder.rollback()  # the blocked upsert runs now, then finds its client gone: it never commits
        holder.close()
        deadline = time.monotonic() + 30
        while db_rows(db_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (waiting,)):
            assert time.monotonic() < deadline, "the killed worker's session did not end"
            time.sleep(0.05)
        assert chunk_rows(db_url, "K") == before
        assert db_rows(db_url, "SELECT count(*) FROM series WHERE object_id = 'K2'") == [(0,)]
        assert db_rows(db_url, "SELECT count(*) FROM objects WHERE tenant = %s AND id = 'K2'", (tenant,)) == [(0,)]
        assert db_rows(db_url, "SELECT doc ? 'note' FROM objects WHERE tenant = %s AND id = 'K'", (tenant,)) == [
            (False,)
        ]
        assert db_rows(db_url, "SELECT count(*) FROM batch_summaries WHERE id = 'crash-series'") == [(0,)]
        # and the same batch lands once the worker is back
        deadline = time.monotonic() + 30
        while server.worker_pids() in ([], [worker]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        server.wait_ready(30)
        retry = requests.post(server.url + "/api/batch/v1", data=orjson.dumps(batch), headers=headers, timeout=60)
        assert retry.status_code == 201, retry.text
        read = requests.get(server.url + "/api/data/v1/private/K:PRICE", headers=headers, timeout=30).json()["data"]
        assert read == [{"time": "2024-09-01T00:00:00Z", "value": -1}] + stored[1:]
    finally:
        server.stop()
        truncate(db_url)


# --- the migration ------------------------------------------------------------------------------------------

OLD_POINTS = [
    # (tenant, environment, object, property, observation) as series_points held them
    ("tenant-m", "production", "M1", "PRICE", {"time": "2021-07-01", "value": 10.5}),
    ("tenant-m", "production", "M1", "PRICE", {"time": "2021-07-02", "value": 11}),
    ("tenant-m", "production", "M1", "PRICE", {"time": "2021-07-03T00:00:00Z", "value": 12.0, "flag": "revised"}),
    ("tenant-m", "production", "M1", "PRICE", {"time": "2021-07-04T00:00:00.250Z", "value": 1e-7}),
    ("tenant-m", "production", "M1", "PRICE", {"time": "2021-07-05T10:00:00+02:00", "value": "n/a"}),
    ("tenant-m", "production", "M1", "PRICE", {"time": "2021-07-06T10:00:00.000001", "value": 2**60}),
    ("tenant-m", "production", "M1", "PRICE", {"time": "2021-07-07T10:00:00+00:00"}),
    ("tenant-m", "production", "M1", "VOLUME", {"time": "2021-07-01T00:05:00Z", "value": 100}),
    ("tenant-m", "production", "M1", "VOLUME", {"time": "2021-07-01T00:10:00Z", "value": 0.1}),
    ("tenant-m", "staging", "M1", "PRICE", {"time": "2021-07-01T00:00:00Z", "value": -3.25}),
    ("tenant-n", "production", "N1", "PRICE", {"time": "2021-07-01T00:00:00.123456Z", "value": 1.7976931348623157e308}),
]


@pytest.fixture
def migration_database():
    name = os.environ.get("BATCHSVC_TEST_DATABASE", "batchsvc_test") + "_series_migration"
    url = normalise_database_url(scratch.recreate_database(server_url(), name))
    yield url
    scratch.drop_database(server_url(), name)


def old_rows(url) -> list[tuple]:
    connection = connect(url)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT tenant, environment, object_id, property, time, point::text FROM series_points ORDER BY 1, 2, 3, 4, 5"
            )
            return cur.fetchall()
    finally:
        connection.close()


def test_migration_carries_series_points_over_and_back(migration_database):
    config = alembic_config(migration_database)
    command.upgrade(config, "0003")
    connection = connect(migration_database)
    with connection, connection.cursor() as cur:
        for tenant, environment, object_id, prop, observation in OLD_POINTS:
            cur.execute(
                """INSERT INTO objects (tenant, environment, id, doc, version, created, updated, "user", batch)
                   VALUES (%s, %s, %s, %s, 1, now(), now(), 'm', 'm') ON CONFLICT DO NOTHING""",
                (
                    tenant,
                    environment,
                    object_id,
                    json.dumps({"PRICE": {"_type": "VarTimeSeries"}, "VOLUME": {"_type": "VarTimeSeries"}}),
                ),
            )
            cur.execute(
                "INSERT INTO series_points VALUES (%s, %s, %s, %s, %s::timestamptz, %s)",
                (tenant, environment, object_id, prop, observation["time"], json.dumps(observation)),
            )
    connection.close()
    before = old_rows(migration_database)

    command.upgrade(config, "head")
    assert db_rows(migration_database, "SELECT to_regclass('series_points')") == [(None,)]
    assert db_rows(migration_database, "SELECT sum(cardinality(times)) FROM series_chunks") == [(len(OLD_POINTS),)]
    assert db_rows(migration_database, "SELECT object_id, property, span FROM series ORDER BY 1, 2, span") == [
        ("M1", "PRICE", "M"), ("M1", "PRICE", "M"), ("M1", "VOLUME", "D"), ("N1", "PRICE", "D"),
    ]  # fmt: skip
    app = create_app(
        {"database_url": migration_database, "jwt_secret": "test-secret-that-is-long-enough-for-hs256-keys"}
    )
    client = app.test_client()
    for tenant, environment, object_id, prop in {row[:4] for row in OLD_POINTS}:
        expected = [row[4] for row in OLD_POINTS if row[:4] == (tenant, environment, object_id, prop)]
        expected.sort(key=lambda observation: parse_instant(observation["time"]))
        response = client.get(
            f"/api/data/v1/private/{object_id}:{prop}", headers=auth(tenant=tenant, environment=environment)
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["data"] == expected, (object_id, prop, environment)
    # written after the migration in every form the codes know, read with the rest
    forms = [
        {"time": "2021-07-08", "value": 13.5},
        {"time": "2021-07-09T10:00:00.123456+05:45", "value": 1},
        {"time": "2021-07-10T10:00:00-05:00", "value": -0.25, "flag": "E"},
        {"time": "2021-07-11T10:00:00.120Z", "value": 2.0},
        {"time": "2021-07-12T10:00:00", "value": 3},
        {"time": "2021-07-13T10:00Z", "value": 4},
    ]
    written = [(observation, parse_instant(observation["time"])) for observation in forms]
    post(client, [{"_id": "NEW", "PRICE": series(forms)}], headers=auth(tenant="tenant-m"))
    app.extensions["batchsvc"].database.dispose()
    # a date and a naive time written at an offset (as in a series' own zone) render back at it
    for kind, quarters, text, instant in (
        (series_store.T_DATE, 8, "2021-07-14", parse_instant("2021-07-13T22:00:00Z")),
        (series_store.T_NAIVE, -20, "2021-07-15T01:02:03.000004", parse_instant("2021-07-15T06:02:03.000004Z")),
    ):
        db_rows(
            migration_database,
            """INSERT INTO series_chunks (tenant_key, series_id, day, times, vals, codes)
               SELECT tenant_key, id, %s, ARRAY[%s::int8], ARRAY[1.5::float8], ARRAY[%s::int2] FROM series
               WHERE object_id = 'NEW'""",
            (
                instant.date(),
                (instant - EPOCH) // timedelta(microseconds=1),
                series_store.encode_code(series_store.V_FLOAT, kind, quarters),
            ),
        )
        written.append(({"time": text, "value": 1.5}, instant))
    written.sort(key=lambda pair: pair[1])

    command.downgrade(config, "0003")
    after = old_rows(migration_database)
    added = [row for row in after if row[2] == "NEW"]
    assert [(orjson.loads(row[5]), row[4]) for row in added] == written
    assert [type(orjson.loads(row[5])["value"]) for row in added] == [type(o["value"]) for o, _ in written]
    assert [row for row in after if row not in added] == before
