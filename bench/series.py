"""Time-series benchmark: ingest over HTTP beside a COPY floor, storage per point, growth, reads.

    .venv/bin/python bench/series.py            # on its own (bench database recreated)
    make bench                                  # bench/run.py runs it after the object cases

What is measured, in one run and one database (`batchsvc_bench`, or BATCHSVC_BENCH_DATABASE):
  floor    psycopg2 COPY of the same points into (series_id int, time timestamptz, value float8,
           PRIMARY KEY (series_id, time)), one COPY and one commit per day of 100 series x 288
           five-minute points, 20 days appended; the rows' text is built in the timed part
  ingest   the same 20 day-batches POSTed to gunicorn (2 workers x 4 threads) by one client in
           day order; then by two clients at once, each for its own 100 series (two loaders)
  storage  pg_total_relation_size (heap, indexes, TOAST) per stored point, service (chunks,
           series and tenant rows, after both ingest cases and their warm-up days) and floor
  growth   one day (288 points) appended to a series holding 3 years against one appended to
           an empty series, in turns, median latency of each; and whether the long series'
           stored chunks are the same tuples afterwards (none read into a new version)
  reads    through the API: one day of the 3-year series; a year of a 10-year daily series;
           last(1) of the 3-year series
  history  what keeping history costs, in turns over HISTORY_ROUNDS days of another 100 series:
           a new day (100 x 288 points), the same day re-sent unchanged, the day re-sent with
           10 points corrected (one in each of 10 series), and those 10 corrected points alone;
           median latency and CPU per batch of each beside the new day's, and what
           series_versions holds afterwards (10 points per correcting batch, nothing else)
  curves, events   batches of 100 curves (24 contracts) and of 100 objects x 10 events, reported

Values are prices with two decimals (a random walk), not small integers, so that compression
is not flattered. Prints a table; writes bench/results/series.json.
"""

from __future__ import annotations

import io
import os
import random
import statistics
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import requests
from harness import Gunicorn, connect
from workload import SECRET, bench_database_name, recreate_database, token

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SUBMIT = "/api/batch/v1"

SERIES, POINTS_PER_DAY, DAYS = 100, 288, 20
FIRST_DAY = date(2024, 1, 1)
STEP = timedelta(minutes=5)
LONG_YEARS, GROWTH_ROUNDS, READ_ROUNDS = 3, 20, 30
HISTORY_ROUNDS, CORRECTED = 10, 10
TIMEOUT = 300.0

TARGET_INGEST_RATIO = 0.5  # service points/s vs the COPY floor
TARGET_STORAGE_RATIO = 1.0  # service bytes/point vs the floor's
TARGET_GROWTH_RATIO = 1.3  # append to a long series vs to an empty one
TARGET_DAY_READ_MS = 20.0
TARGET_YEAR_READ_MS = 50.0


def log(message: str) -> None:
    print(f"[series {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data ---------------------------------------------------------------------------------------


def prices(rng: random.Random, count: int, start: float = 50.0) -> list[float]:
    """A random walk of prices with two decimals."""
    out, price = [], start
    for _ in range(count):
        price = max(1.0, price + rng.gauss(0, 0.4))
        out.append(round(price, 2))
    return out


def day_values(days: int, series: int = SERIES, seed: int = 7) -> list[list[list[float]]]:
    """values[day][series][m] for `days` days of 5-minute prices."""
    rng = random.Random(seed)
    walks = [prices(rng, days * POINTS_PER_DAY, 40 + s % 30) for s in range(series)]
    return [[walk[d * POINTS_PER_DAY : (d + 1) * POINTS_PER_DAY] for walk in walks] for d in range(days)]


def five_minute_times(day: date) -> list[str]:
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [(base + m * STEP).strftime("%Y-%m-%dT%H:%M:%SZ") for m in range(POINTS_PER_DAY)]


def series_element(object_id: str, times: list[str], values: list[float], prop: str = "PRICE") -> dict:
    data = [{"time": t, "value": v} for t, v in zip(times, values, strict=True)]
    return {"_id": object_id, prop: {"_type": "VarTimeSeries", "calendar": "PT5M", "units": "EUR", "data": data}}


def day_body(day: int, values: list[list[float]], prefix: str) -> bytes:
    times = five_minute_times(FIRST_DAY + timedelta(days=day))
    elements = [series_element(f"{prefix}.{s:04d}", times, values[s]) for s in range(len(values))]
    return orjson.dumps({"_type": "VarBatch", "name": "series bench", "service": "bench", "elements": elements})


# --- floor: COPY ------------------------------------------------------------------------------------

FLOOR_TABLE = "bench_series_floor"


def run_floor(db_url: str, values: list) -> dict:
    connection = connect(db_url)
    try:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
            cur.execute(
                f"CREATE TABLE {FLOOR_TABLE} (series_id int, time timestamptz, value float8, "
                "PRIMARY KEY (series_id, time))"
            )
        connection.commit()
        elapsed = 0.0
        for day in range(DAYS):
            base = datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), UTC)
            stamps = [(base + m * STEP).isoformat(sep=" ") for m in range(POINTS_PER_DAY)]
            start = time.perf_counter()
            lines = [
                f"{s}\t{stamp}\t{value!r}\n"
                for s, series_values in enumerate(values[day])
                for stamp, value in zip(stamps, series_values, strict=True)
            ]
            with connection.cursor() as cur:
                cur.copy_expert(f"COPY {FLOOR_TABLE} (series_id, time, value) FROM STDIN", io.StringIO("".join(lines)))
            connection.commit()
            elapsed += time.perf_counter() - start
        points = DAYS * SERIES * POINTS_PER_DAY
        with connection.cursor() as cur:
            cur.execute(f"SELECT pg_total_relation_size('{FLOOR_TABLE}'), count(*) FROM {FLOOR_TABLE}")
            size, count = cur.fetchone()
        assert count == points, (count, points)
    finally:
        connection.close()
    result = {"points": points, "seconds": elapsed, "points_per_s": points / elapsed, "bytes_per_point": size / points}
    log(f"floor: {result['points_per_s']:,.0f} points/s, {result['bytes_per_point']:.1f} bytes/point")
    return result


# --- the service ----------------------------------------------------------------------------------


_TOKEN: list[str] = []


def headers(environment: str = "series") -> dict:
    """One token for the whole run, as a loader holds one: no signing or verifying per request."""
    if not _TOKEN:
        _TOKEN.append(token())
    return {
        "Authorization": f"Bearer {_TOKEN[0]}",
        "Content-Type": "application/json",
        "x-odsl-environment": environment,
    }


def post(session: requests.Session, url: str, body: bytes, environment: str = "series") -> float:
    start = time.perf_counter()
    response = session.post(url + SUBMIT, data=body, headers=headers(environment), timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    if response.status_code != 201 or response.json().get("status") != "success":
        raise RuntimeError(f"POST answered {response.status_code}: {response.text[:500]}")
    return elapsed


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (from /proc; 0 for those gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def backend_pids(db_url: str) -> list[int]:
    """The PostgreSQL backends of the bench database (readable in /proc when the server is local)."""
    connection = connect(db_url, autocommit=True)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        connection.close()


def run_ingest(server: Gunicorn, db_url: str, values: list, clients: int, prefix: str) -> dict:
    """Each client posts the 20 day-batches of its own 100 series, in day order, all at once."""
    bodies = [[day_body(day, values[day], f"{prefix}{c}") for day in range(DAYS)] for c in range(clients)]
    # Each worker builds its pool, prepares its statements and fills its caches untimed, on
    # series batches of the same shape in another environment (a day each: nothing rewritten).
    warmers = [
        threading.Thread(
            target=post, args=(requests.Session(), server.url, day_body(n, values[n], "WARM"), f"warm-{prefix}")
        )
        for n in range(4)
    ]
    for thread in warmers:
        thread.start()
    for thread in warmers:
        thread.join()
    workers = server.worker_pids()
    backends = backend_pids(db_url)
    cpu_before = (cpu_seconds(workers), cpu_seconds(backends))
    errors: list[str] = []
    latencies: list[float] = []

    def client(own: list[bytes]) -> None:
        with requests.Session() as session:
            for body in own:
                try:
                    latencies.append(post(session, server.url, body) * 1000)
                except Exception as exc:  # reported below, after the threads are joined
                    errors.append(repr(exc))
                    return

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(bodies[c],)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"series ingest failed: {errors[0]}")
    backends = sorted(set(backends) | set(backend_pids(db_url)))
    worker_cpu, database_cpu = cpu_seconds(workers) - cpu_before[0], cpu_seconds(backends) - cpu_before[1]
    batches = clients * DAYS
    points = batches * SERIES * POINTS_PER_DAY
    result = {
        "clients": clients,
        "points": points,
        "seconds": elapsed,
        "points_per_s": points / elapsed,
        "worker_cpu_ms_per_batch": worker_cpu / batches * 1000,
        "database_cpu_ms_per_batch": database_cpu / batches * 1000,
        "body_mb": len(bodies[0][0]) / 2**20,
        "batch_ms": {"min": min(latencies), "median": statistics.median(latencies), "max": max(latencies)},
    }
    log(
        f"ingest, {clients} client(s): {result['points_per_s']:,.0f} points/s; CPU per batch: workers "
        f"{result['worker_cpu_ms_per_batch']:.0f} ms, PostgreSQL {result['database_cpu_ms_per_batch']:.0f} ms; "
        f"a batch took {result['batch_ms']['min']:.0f}/{result['batch_ms']['median']:.0f}/"
        f"{result['batch_ms']['max']:.0f} ms (min/median/max)"
    )
    return result


def storage(db_url: str) -> dict:
    """Bytes per stored point of the series tables (chunks with their TOAST and index, the
    series and tenant rows)."""
    connection = connect(db_url, autocommit=True)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_total_relation_size('series_chunks'), pg_total_relation_size('series') "
                "+ pg_total_relation_size('tenants'), (SELECT sum(cardinality(times)) FROM series_chunks), "
                "(SELECT count(*) FROM series_chunks)"
            )
            chunks, keys, points, rows = cur.fetchone()
    finally:
        connection.close()
    return {
        "points": int(points),
        "chunk_rows": rows,
        "bytes": chunks + keys,
        "bytes_per_point": (chunks + keys) / int(points),
        "chunk_bytes_per_point": chunks / int(points),
    }


def stored_chunks(db_url: str, object_id: str, before: date) -> tuple[int, str]:
    """(count, digest of where each lies and which transaction wrote it) of the chunks of
    `object_id` before day `before`: equal digests mean none of them was read into a new version."""
    connection = connect(db_url, autocommit=True)
    try:
        with connection.cursor() as cur:
            cur.execute(
                """SELECT count(*), md5(string_agg(c.ctid::text || '/' || c.xmin::text, ',' ORDER BY c.day))
                   FROM series_chunks c JOIN series s ON s.tenant_key = c.tenant_key AND s.id = c.series_id
                   WHERE s.object_id = %s AND c.day < %s""",
                (object_id, before),
            )
            return cur.fetchone()
    finally:
        connection.close()


def run_growth(server: Gunicorn, db_url: str) -> dict:
    """A day appended to a 3-year series against a day appended to an empty one."""
    rng = random.Random(11)
    long_days = LONG_YEARS * 365
    walk = prices(rng, (long_days + GROWTH_ROUNDS) * POINTS_PER_DAY)
    with requests.Session() as session:
        seeded = 0
        for first in range(0, long_days, 30):  # the history, 30 days a batch
            days = range(first, min(first + 30, long_days))
            times = [t for d in days for t in five_minute_times(FIRST_DAY + timedelta(days=d))]
            values = walk[first * POINTS_PER_DAY : first * POINTS_PER_DAY + len(times)]
            post(session, server.url, orjson.dumps({"elements": [series_element("LONG", times, values)]}))
            seeded += len(times)
        # the empty series' objects exist beforehand, as LONG does
        plain = [{"_id": f"EMPTY.{n}", "kind": "empty"} for n in range(GROWTH_ROUNDS)]
        post(session, server.url, orjson.dumps({"elements": plain}))
        long_ms, empty_ms = [], []
        first_new = FIRST_DAY + timedelta(days=long_days)
        history = stored_chunks(db_url, "LONG", first_new)
        for n in range(GROWTH_ROUNDS):
            day = long_days + n
            times = five_minute_times(FIRST_DAY + timedelta(days=day))
            values = walk[day * POINTS_PER_DAY : (day + 1) * POINTS_PER_DAY]
            long_body = orjson.dumps({"elements": [series_element("LONG", times, values)]})
            empty_body = orjson.dumps({"elements": [series_element(f"EMPTY.{n}", times, values)]})
            # in turn first: the first post of a day's instants parses them, the second finds them remembered
            for is_long in (True, False) if n % 2 else (False, True):
                (long_ms if is_long else empty_ms).append(
                    post(session, server.url, long_body if is_long else empty_body) * 1000
                )
        untouched = stored_chunks(db_url, "LONG", first_new) == history
    long_median, empty_median = statistics.median(long_ms), statistics.median(empty_ms)
    result = {
        "long_points": seeded,
        "long_ms": long_ms,
        "empty_ms": empty_ms,
        "long_median_ms": long_median,
        "empty_median_ms": empty_median,
        "ratio": long_median / empty_median,
        "history_chunks": history[0],
        "history_untouched": untouched,
    }
    log(
        f"growth: append a day to {seeded:,} points {long_median:.1f} ms, to an empty series {empty_median:.1f} ms; "
        f"the {history[0]:,} stored chunks {'untouched' if untouched else 'REWRITTEN'}"
    )
    return result


def history_rows(db_url: str) -> tuple[int, int, int]:
    """(rows, archived points, bytes with indexes and TOAST) of series_versions."""
    connection = connect(db_url, autocommit=True)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*), coalesce(sum(cardinality(times)), 0), pg_total_relation_size('series_versions') "
                "FROM series_versions"
            )
            rows, points, size = cur.fetchone()
            return rows, int(points), size
    finally:
        connection.close()


HISTORY_KINDS = ("new day", "unchanged re-send", "re-send, 10 corrected", "10 corrected alone")


def run_history(server: Gunicorn, db_url: str) -> dict:
    """New data against unchanged and correcting re-sends of it, in turns, one day a round."""
    values = day_values(HISTORY_ROUNDS + 1, seed=19)
    rng = random.Random(23)
    latencies: dict[str, list[float]] = {kind: [] for kind in HISTORY_KINDS}
    cpu = {kind: [0.0, 0.0] for kind in HISTORY_KINDS}
    workers = server.worker_pids()
    with requests.Session() as session:
        post(session, server.url, day_body(0, values[0], "HIST"))  # the series exist: each round appends
        start_rows = history_rows(db_url)
        backends = backend_pids(db_url)
        for day in range(1, HISTORY_ROUNDS + 1):
            corrected = [list(series_values) for series_values in values[day]]
            moved = []
            for s in range(CORRECTED):
                m = rng.randrange(POINTS_PER_DAY)
                corrected[s][m] = round(corrected[s][m] + 0.01, 2)
                moved.append((s, m))
            times = five_minute_times(FIRST_DAY + timedelta(days=day))
            alone = orjson.dumps({
                "elements": [series_element(f"HIST.{s:04d}", [times[m]], [round(corrected[s][m] + 0.01, 2)])
                             for s, m in moved]
            })  # fmt: skip
            bodies = {
                "new day": day_body(day, values[day], "HIST"),
                "unchanged re-send": day_body(day, values[day], "HIST"),
                "re-send, 10 corrected": day_body(day, corrected, "HIST"),
                "10 corrected alone": alone,
            }
            for kind in HISTORY_KINDS:
                before = (cpu_seconds(workers), cpu_seconds(backends))
                latencies[kind].append(post(session, server.url, bodies[kind]) * 1000)
                cpu[kind][0] += cpu_seconds(workers) - before[0]
                cpu[kind][1] += cpu_seconds(backends) - before[1]
    rows, points, size = history_rows(db_url)
    new_ms = statistics.median(latencies["new day"])
    result = {
        "rounds": HISTORY_ROUNDS,
        "batches": {
            kind: {
                "median_ms": statistics.median(latencies[kind]),
                "ms": latencies[kind],
                "ratio_to_new": statistics.median(latencies[kind]) / new_ms,
                "worker_cpu_ms": cpu[kind][0] / HISTORY_ROUNDS * 1000,
                "database_cpu_ms": cpu[kind][1] / HISTORY_ROUNDS * 1000,
            }
            for kind in HISTORY_KINDS
        },
        "archived_rows": rows - start_rows[0],
        "archived_points": points - start_rows[1],
        "archived_bytes": size - start_rows[2],
        "expected_points": 2 * CORRECTED * HISTORY_ROUNDS,  # each correction batch replaces 10 points
    }
    result["history_as_changes"] = result["archived_points"] == result["expected_points"]
    for kind in HISTORY_KINDS:
        figures = result["batches"][kind]
        log(
            f"history, {kind}: {figures['median_ms']:.1f} ms ({figures['ratio_to_new']:.2f}x the new day); CPU per batch "
            f"workers {figures['worker_cpu_ms']:.0f} ms, PostgreSQL {figures['database_cpu_ms']:.0f} ms"
        )
    log(
        f"history stored: {result['archived_rows']} rows, {result['archived_points']} points "
        f"(expected {result['expected_points']}), {result['archived_bytes']:,} bytes"
    )
    return result


def timed_get(session: requests.Session, url: str, params: dict, expect: int) -> float:
    start = time.perf_counter()
    response = session.get(url, params=params, headers=headers(), timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or len(response.json()["data"]) != expect:
        raise RuntimeError(f"GET {url} {params}: {response.status_code} {response.text[:300]}")
    return elapsed * 1000


def summary_ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_ms": statistics.median(ordered), "p95_ms": ordered[max(0, round(0.95 * len(ordered)) - 1)]}


def run_reads(server: Gunicorn) -> dict:
    rng = random.Random(13)
    daily_start = date(2015, 1, 1)
    daily_days = (date(2025, 1, 1) - daily_start).days
    data = [
        {"time": (daily_start + timedelta(days=d)).isoformat(), "value": v}
        for d, v in enumerate(prices(rng, daily_days))
    ]
    element = {"_id": "DAILY", "CLOSE": {"_type": "VarTimeSeries", "calendar": "DAILY", "data": data}}
    base = server.url + "/api/data/v1/private/"
    day = FIRST_DAY + timedelta(days=400)
    with requests.Session() as session:
        post(session, server.url, orjson.dumps({"elements": [element]}))
        cases = {
            "one day of the 3-year series": (
                base + "LONG:PRICE",
                {"_range": f"between({day}T00:00:00Z,{day}T23:59:59Z)"},
                POINTS_PER_DAY,
            ),
            "a year of the 10-year daily series": (
                base + "DAILY:CLOSE",
                {"_range": "between(2020-01-01T00:00:00Z,2020-12-31T23:59:59Z)"},
                366,
            ),
            "last(1) of the 3-year series": (base + "LONG:PRICE", {"_range": "last(1)"}, 1),
        }
        results = {}
        for name, (url, params, expect) in cases.items():
            timed_get(session, url, params, expect)  # warm
            results[name] = summary_ms([timed_get(session, url, params, expect) for _ in range(READ_ROUNDS)])
            log(f"read {name}: median {results[name]['median_ms']:.1f} ms, p95 {results[name]['p95_ms']:.1f} ms")
    return results


def run_other_data(server: Gunicorn) -> dict:
    """Curves and events, 20 batches each: reported, no target."""
    rng = random.Random(17)
    tenors = [f"M{n:02d}" for n in range(1, 25)]
    curve_s, event_s = 0.0, 0.0
    with requests.Session() as session:
        for batch in range(20):
            ondate = (FIRST_DAY + timedelta(days=batch)).isoformat()
            curves = [
                {
                    "_id": f"CURVE.{n:03d}",
                    "FWD": {
                        "_type": "VarCurve",
                        "ondate": {"_type": "VarCurveDate", "curveDate": ondate},
                        "contracts": [{"tenor": t, "value": v} for t, v in zip(tenors, prices(rng, 24), strict=True)],
                    },
                }
                for n in range(100)
            ]
            curve_s += post(session, server.url, orjson.dumps({"elements": curves}))
            events = [
                {
                    "_id": f"EVENTS.{n:03d}",
                    "OUTAGES": [
                        {
                            "_type": "VarEvent",
                            "_id": f"e-{batch}-{k}",
                            "eventtime": f"{ondate}T{k:02d}:00:00Z",
                            "mw": round(rng.random() * 500, 1),
                        }
                        for k in range(10)
                    ],
                }
                for n in range(100)
            ]
            event_s += post(session, server.url, orjson.dumps({"elements": events}))
    result = {
        "curves_per_s": 20 * 100 / curve_s,
        "contracts_per_s": 20 * 100 * 24 / curve_s,
        "events_per_s": 20 * 100 * 10 / event_s,
    }
    log(
        f"curves: {result['curves_per_s']:,.0f} curves/s ({result['contracts_per_s']:,.0f} contracts/s); "
        f"events: {result['events_per_s']:,.0f} events/s"
    )
    return result


# --- the whole case -----------------------------------------------------------------------------------


def run_series(db_url: str, service_env: dict) -> dict:
    values = day_values(DAYS)
    floor = run_floor(db_url, values)
    with Gunicorn("wsgi:app", env=service_env, log_path=RESULTS / "gunicorn-series.log", every_worker=True) as server:
        one = run_ingest(server, db_url, values, 1, "NEM")
        two = run_ingest(server, db_url, values, 2, "NEM.PAIR")
        stored = storage(db_url)
        log(f"storage: {stored['bytes_per_point']:.1f} bytes/point ({stored['chunk_rows']:,} chunks)")
        growth = run_growth(server, db_url)
        reads = run_reads(server)
        history = run_history(server, db_url)
        other = run_other_data(server)
    return {
        "floor": floor,
        "ingest": {"1": one, "2": two},
        "storage": stored,
        "growth": growth,
        "reads": reads,
        "history": history,
        **other,
    }


def check(name: str, value: float, target: float, ok: bool) -> dict:
    return {"name": name, "value": value, "target": target, "ok": ok}


def rows_and_checks(result: dict) -> tuple[list[tuple], list[dict]]:
    floor, stored, growth, reads = result["floor"], result["storage"], result["growth"], result["reads"]
    rows, checks = [], []
    for clients, ingest in result["ingest"].items():
        ratio = ingest["points_per_s"] / floor["points_per_s"]
        ok = ratio >= TARGET_INGEST_RATIO
        checks.append(check(f"series ingest, {clients} client(s), vs COPY floor", ratio, TARGET_INGEST_RATIO, ok))
        rows.append((
            f"series ingest, {clients} client{'s' if clients != '1' else ''}", f"{ingest['points_per_s']:,.0f} points/s",
            f"{floor['points_per_s']:,.0f} points/s (COPY)", f"{ratio:.2f}x", f">= {TARGET_INGEST_RATIO}x",
            "PASS" if ok else "FAIL",
        ))  # fmt: skip
    ratio = stored["bytes_per_point"] / floor["bytes_per_point"]
    ok = ratio <= TARGET_STORAGE_RATIO
    checks.append(check("series bytes/point vs floor", ratio, TARGET_STORAGE_RATIO, ok))
    rows.append((
        "series storage", f"{stored['bytes_per_point']:.1f} bytes/point", f"{floor['bytes_per_point']:.1f} bytes/point",
        f"{ratio:.2f}x", f"<= {TARGET_STORAGE_RATIO}x", "PASS" if ok else "FAIL",
    ))  # fmt: skip
    ok = growth["ratio"] <= TARGET_GROWTH_RATIO and growth["history_untouched"]
    checks.append(check("append to a 3-year series vs an empty one", growth["ratio"], TARGET_GROWTH_RATIO, ok))
    rows.append((
        "append a day, 3 years stored", f"{growth['long_median_ms']:.1f} ms",
        f"{growth['empty_median_ms']:.1f} ms (empty series)", f"{growth['ratio']:.2f}x",
        f"<= {TARGET_GROWTH_RATIO}x, history untouched", "PASS" if ok else "FAIL",
    ))  # fmt: skip
    for name, target in (
        ("one day of the 3-year series", TARGET_DAY_READ_MS),
        ("a year of the 10-year daily series", TARGET_YEAR_READ_MS),
        ("last(1) of the 3-year series", None),
    ):
        median = reads[name]["median_ms"]
        ok = target is None or median <= target
        if target is not None:
            checks.append(check(f"read {name} ms", median, target, ok))
        rows.append((
            f"read {name}", f"{median:.1f} ms (p95 {reads[name]['p95_ms']:.1f})", "", "",
            f"<= {target:.0f} ms" if target else "", ("PASS" if ok else "FAIL") if target else "",
        ))  # fmt: skip
    history = result["history"]
    new = history["batches"]["new day"]
    for kind in HISTORY_KINDS:
        figures = history["batches"][kind]
        rows.append((
            f"history: {kind}" + (" (100 x 288 points)" if kind == "new day" else ""),
            f"{figures['median_ms']:.1f} ms (CPU {figures['worker_cpu_ms']:.0f} + {figures['database_cpu_ms']:.0f} ms)",
            "" if kind == "new day" else f"{new['median_ms']:.1f} ms (new day)",
            f"{figures['ratio_to_new']:.2f}x", "", "",
        ))  # fmt: skip
    ok = history["history_as_changes"]
    checks.append(check("history points archived per corrected point", history["archived_points"] /
                        max(1, history["expected_points"]), 1.0, ok))  # fmt: skip
    rows.append((
        "history stored", f"{history['archived_points']} points in {history['archived_rows']} rows",
        f"{history['expected_points']} points corrected", "", "= corrected points, 0 for re-sends and appends",
        "PASS" if ok else "FAIL",
    ))  # fmt: skip
    rows.append((
        "curves (24 contracts), 100 a batch", f"{result['curves_per_s']:,.0f} curves/s",
        f"{result['contracts_per_s']:,.0f} contracts/s", "", "", "",
    ))  # fmt: skip
    rows.append(("events, 1,000 a batch", f"{result['events_per_s']:,.0f} events/s", "", "", "", ""))
    return rows, checks


def main() -> int:
    db_url = recreate_database(bench_database_name())
    result = run_series(db_url, {"DATABASE_URL": db_url, "BATCHSVC_JWT_SECRET": SECRET, "BATCHSVC_DEV": ""})
    rows, checks = rows_and_checks(result)
    widths = [max(len(str(row[i])) for row in rows) for i in range(6)]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{sum(c['ok'] for c in checks)}/{len(checks)} targets met")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"series": result, "checks": checks}
    (RESULTS / "series.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
