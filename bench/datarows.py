"""Curves and events with history: new rows, the same rows re-sent unchanged, the rows changed.

    .venv/bin/python bench/datarows.py          # on its own (bench database recreated)
    make bench                                  # bench/run.py runs it after the series case

Over HTTP (gunicorn, 2 workers), one client, environment `datarows`, on objects that already
exist (a first batch creates them, untimed, then ANALYZE as autovacuum would), so every case
writes data rows only:
  curves   20 batches of 100 curves (24 contracts each), each batch a new curve date: new rows;
           the same 20 bodies again under new batch ids: unchanged (nothing written, nothing
           archived); then every contract's value moved: changed (each curve date archived once)
  events   20 batches of 100 event lists x 10 new events; re-sent unchanged; then each event's
           value and time corrected
Reported: items/s of each case and the unchanged and changed rates relative to new rows (in the
same run), and the data_versions rows each case added. No targets.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import orjson
import requests
from harness import Gunicorn, connect
from workload import SECRET, bench_database_name, recreate_database, token

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SUBMIT = "/api/batch/v1"
ENVIRONMENT = "datarows"
OBJECTS, BATCHES, TENORS, EVENTS_PER_LIST = 100, 20, 24, 10
FIRST_DAY = date(2024, 1, 1)
TIMEOUT = 300.0


def log(message: str) -> None:
    print(f"[datarows {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _headers() -> dict:
    return {"Authorization": f"Bearer {token()}", "Content-Type": "application/json", "x-odsl-environment": ENVIRONMENT}


def post(session: requests.Session, url: str, body: bytes, headers: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    response = session.post(url + SUBMIT, data=body, headers=headers, timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    if response.status_code != 201 or response.json().get("status") != "success":
        raise RuntimeError(f"POST answered {response.status_code}: {response.text[:500]}")
    return elapsed, response.json()["counts"]


def curve_bodies(rng: random.Random, shift: float = 0.0) -> list[bytes]:
    """One body per curve date (FIRST_DAY + 1 ...): 100 objects' forward curves of 24 tenors."""
    tenors = [f"M{n:02d}" for n in range(1, TENORS + 1)]
    bodies = []
    for batch in range(1, BATCHES + 1):
        ondate = (FIRST_DAY + timedelta(days=batch)).isoformat()
        elements = [
            {
                "_id": f"CURVE.{n:03d}",
                "FWD": {
                    "_type": "VarCurve",
                    "ondate": {"_type": "VarCurveDate", "curveDate": ondate},
                    "contracts": [{"tenor": t, "value": round(50 + rng.random() * 10 + shift, 2)} for t in tenors],
                },
            }
            for n in range(OBJECTS)
        ]
        bodies.append(orjson.dumps({"elements": elements}))
    return bodies


def event_bodies(rng: random.Random, minutes: int = 0) -> list[bytes]:
    """One body per batch: 100 objects' outage lists, 10 events each with ids of their own."""
    bodies = []
    for batch in range(1, BATCHES + 1):
        ondate = (FIRST_DAY + timedelta(days=batch)).isoformat()
        elements = [
            {
                "_id": f"EVENTS.{n:03d}",
                "OUTAGES": [
                    {
                        "_type": "VarEvent",
                        "_id": f"e-{batch}-{k}",
                        "eventtime": f"{ondate}T{k:02d}:{minutes:02d}:00Z",
                        "mw": round(rng.random() * 500, 1),
                    }
                    for k in range(EVENTS_PER_LIST)
                ],
            }
            for n in range(OBJECTS)
        ]
        bodies.append(orjson.dumps({"elements": elements}))
    return bodies


def analyze(db_url: str) -> None:
    connection = connect(db_url, autocommit=True)
    try:
        with connection.cursor() as cur:
            cur.execute("ANALYZE curves, events, data_versions, objects")
    finally:
        connection.close()


def archived(db_url: str) -> int:
    connection = connect(db_url, autocommit=True)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM data_versions WHERE environment = %s", (ENVIRONMENT,))
            return cur.fetchone()[0]
    finally:
        connection.close()


def _run(session, url, headers, bodies: list[bytes], db_url: str) -> dict:
    seconds, counts, versions = 0.0, {}, archived(db_url)
    for body in bodies:
        elapsed, batch_counts = post(session, url, body, headers)
        seconds += elapsed
        for kind in ("curves", "events"):
            for name, value in batch_counts[kind].items():
                counts.setdefault(kind, {}).setdefault(name, 0)
                counts[kind][name] += value
    return {"seconds": seconds, "counts": counts, "archived": archived(db_url) - versions}


def run_data_rows(server: Gunicorn, db_url: str) -> dict:
    """New, unchanged and changed curves and events, items/s each (module docstring)."""
    headers = _headers()
    result = {}
    with requests.Session() as session:
        # the objects, with a curve date and ten events each (FIRST_DAY): untimed; then the
        # planner statistics a running service's autovacuum keeps (the probes of stored rows need
        # them to pick the primary key over the events' time index)
        warm = [
            {"_id": f"CURVE.{n:03d}", "FWD": {"_type": "VarCurve", "ondate": FIRST_DAY.isoformat(), "contracts": []}}
            for n in range(OBJECTS)
        ] + [
            {
                "_id": f"EVENTS.{n:03d}",
                "OUTAGES": [{"_type": "VarEvent", "_id": f"w-{k}", "eventtime": "2024-01-01"} for k in range(10)],
            }
            for n in range(OBJECTS)
        ]
        post(session, server.url, orjson.dumps({"elements": warm}), headers)
        analyze(db_url)
        for kind, make, items_per_batch in (
            # the same seed twice: "changed" moves every value (curves) or time (events) of "new"
            ("curves", lambda shift: curve_bodies(random.Random(5), shift), OBJECTS),
            ("events", lambda shift: event_bodies(random.Random(5), int(shift)), OBJECTS * EVENTS_PER_LIST),
        ):
            new = make(0)
            cases = {
                "new": _run(session, server.url, headers, new, db_url),
                "unchanged": _run(session, server.url, headers, new, db_url),
                "changed": _run(session, server.url, headers, make(1), db_url),
            }
            for name, count in (("new", "created"), ("unchanged", "unchanged"), ("changed", "updated")):
                done = cases[name]["counts"][kind]
                if done[count] != BATCHES * items_per_batch or sum(done.values()) != done[count]:
                    raise RuntimeError(f"{kind} {name}: the summaries counted {done}")
            for case in cases.values():
                case["per_s"] = BATCHES * items_per_batch / case["seconds"]
            for name in ("unchanged", "changed"):
                cases[name]["vs_new"] = cases[name]["per_s"] / cases["new"]["per_s"]
            result[kind] = cases
            log(
                f"{kind}: new {cases['new']['per_s']:,.0f}/s, unchanged {cases['unchanged']['per_s']:,.0f}/s "
                f"({cases['unchanged']['vs_new']:.2f}x), changed {cases['changed']['per_s']:,.0f}/s "
                f"({cases['changed']['vs_new']:.2f}x); archived {cases['unchanged']['archived']} / "
                f"{cases['changed']['archived']} rows"
            )
    return result


def rows(result: dict) -> list[tuple]:
    """Table rows for bench/run.py: (case, batchsvc, reference, ratio, target, verdict)."""
    out = []
    for kind, unit in (("curves", "curves/s"), ("events", "events/s")):
        cases = result[kind]
        new = cases["new"]["per_s"]
        out.append((f"{kind} with history, new rows", f"{new:,.0f} {unit}", "", "", "", ""))
        for name, what in (("unchanged", "unchanged re-send"), ("changed", "changed")):
            case = cases[name]
            out.append((
                f"{kind} with history, {what}",
                f"{case['per_s']:,.0f} {unit}", f"{new:,.0f} {unit} (new)", f"{case['vs_new']:.2f}x",
                f"{case['archived']:,} rows archived", "",
            ))  # fmt: skip
    return out


def main() -> int:
    db_url = recreate_database(bench_database_name())
    env = {"DATABASE_URL": db_url, "BATCHSVC_JWT_SECRET": SECRET, "BATCHSVC_DEV": ""}
    with Gunicorn("wsgi:app", env=env, log_path=RESULTS / "gunicorn-datarows.log", every_worker=True) as server:
        result = run_data_rows(server, db_url)
    table = rows(result)
    widths = [max(len(str(row[i])) for row in table) for i in range(6)]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "datarows.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
