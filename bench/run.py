"""Batch-load benchmark: batchsvc over HTTP against a psycopg2 floor and a bare Flask app.

Run with `make bench` (or `.venv/bin/python bench/run.py` from the repository root). It
creates its own database (`batchsvc_bench`, or BATCHSVC_BENCH_DATABASE) on the server of
DATABASE_URL, or on the embedded PostgreSQL when DATABASE_URL is unset, exactly as the
service picks its database. It prints one table and writes bench/results/latest.json.

What is measured (all on loopback, gunicorn with the repository's gunicorn.conf.py):
  floor    the same elements upserted with psycopg2 execute_values in one transaction, no
           HTTP, no Flask, no history (the archive trigger is off for its session): the
           fastest a simple direct loader gets on this database
  bulk     POST /api/batch/v1 with 1,000 / 10,000 / 50,000 elements, as inserts, then as
           updates (merges that change every document: each makes a version and archives the
           previous one), then the updates re-sent unchanged under a new batch id (nothing is
           written, no history); bodies pre-serialised, only the request timed
  small    8 client threads (keep-alive http.client connections) posting 10-element batches
           for 10 s, beside bench/bare_app.py (reads and parses the body, nothing else)
           served the same way
  memory   peak RSS (VmHWM) of the worker that handled one 50,000-element batch, on a
           freshly started server
  series   time series (bench/series.py): ingest over HTTP beside a COPY floor, bytes per
           stored point, appending to a long series, reads, curves and events
  data rows  curves and events with history (bench/datarows.py): new rows, the same re-sent
           unchanged, the same changed; items/s and the ratios to new rows, rows archived

`--check` exits 1 when a target is missed; `--seconds` shortens the small-batch runs.

`--observability` runs only the small-batch case, on batchsvc as deployed (metrics and the
request log on) and on bench/quiet_app.py (both off), alternating `--repeats` times on two
servers started side by side; it prints the median req/s of each and writes
bench/results/observability.json. Target: metrics and logging cost small batches at most 10%.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import datarows as bench_datarows
import orjson
import requests
import series as bench_series
from harness import LOOPBACK, Gunicorn, connect, cpu_seconds
from psycopg2.extras import execute_values
from workload import (
    SECRET,
    TENANT,
    USER,
    batch_body,
    bench_database_name,
    elements,
    recreate_database,
    server_facts,
    token,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
SUBMIT = "/api/batch/v1"

# How many times each size runs (fresh ids every time); the median is reported.
FLOOR_REPEATS = {1_000: 5, 10_000: 5, 50_000: 1}
BULK_REPEATS = {1_000: 5, 10_000: 5, 50_000: 1}
SMALL_BATCH = 10
SMALL_IDS_PER_CLIENT = 500  # each client cycles over its own objects: inserts first, then unchanged re-sends
MAX_REQUESTS_PER_CLIENT = 200_000
WARMUP_SECONDS = 2.0
BULK_TIMEOUT = 180.0

TARGET_BULK_RATIO = 0.60  # 10k batches, inserts and updates, vs the floor
TARGET_SMALL_RATIO = 0.40  # small-batch req/s vs bare Flask
TARGET_SMALL_P99_MS = 50.0
TARGET_PEAK_RSS_MB = 400.0
TARGET_OBSERVABILITY_COST = 0.10  # small-batch req/s lost to metrics + request log


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- floor: psycopg2 straight into the objects table ---------------------------------------

_FLOOR_SQL = """
INSERT INTO objects AS o (tenant, environment, id, doc, version, created, updated, "user", batch)
SELECT %(tenant)s, %(environment)s, v.id, v.doc::jsonb, 1, %(now)s, %(now)s, %(user)s, %(batch)s
FROM (VALUES %%s) AS v(id, doc)
ON CONFLICT (tenant, environment, id) DO UPDATE SET
    doc = o.doc || excluded.doc,
    version = o.version + 1,
    updated = excluded.updated,
    "user" = excluded."user",
    batch = excluded.batch
"""


def floor_load(connection, environment: str, items: list[dict], batch_id: str) -> float:
    """Seconds to upsert `items` (merge on conflict) in one transaction, commit included.

    Timed: serialising each document, building and running the statement, committing.
    The constants are bound once and each row carries only (id, doc): of the execute_values
    forms tried, the fastest (per-row constants cost ~40% more, mostly server-side parsing).
    The ids are generated in order, so no ORDER BY is needed.
    """
    docs = [(item["_id"], {k: v for k, v in item.items() if k != "_id"}) for item in items]
    start = time.perf_counter()
    params = {"tenant": TENANT, "environment": environment, "now": datetime.now(UTC), "user": USER, "batch": batch_id}
    with connection.cursor() as cur:
        statement = cur.mogrify(_FLOOR_SQL, params).decode()
        rows = [(ident, orjson.dumps(doc).decode()) for ident, doc in docs]
        execute_values(cur, statement, rows, page_size=len(rows))
    connection.commit()
    return time.perf_counter() - start


def run_floor(db_url: str) -> dict:
    results = {}
    connection = connect(db_url)
    try:
        # The floor is the bare upsert: without the history trigger on `objects` (migration
        # 0006), which a direct loader on this database would fire too. The service pays for
        # history; the floor does not (session_replication_role needs a superuser).
        with connection.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
        connection.commit()
        for size, repeats in FLOOR_REPEATS.items():
            inserts, updates = [], []
            for rep in range(repeats):
                environment = f"floor-{size}-{rep}"
                inserts.append(size / floor_load(connection, environment, elements(size, 0), f"floor-i-{size}-{rep}"))
                updates.append(size / floor_load(connection, environment, elements(size, 1), f"floor-u-{size}-{rep}"))
            inserts_eps, updates_eps = statistics.median(inserts), statistics.median(updates)
            results[size] = {"insert_eps": inserts_eps, "update_eps": updates_eps, "runs": repeats}
            log(f"floor {size:>6}: insert {inserts_eps:,.0f} el/s, update {updates_eps:,.0f} el/s")
    finally:
        connection.close()
    return results


# --- service: bulk batches --------------------------------------------------------------------


def headers(environment: str) -> dict:
    return {
        "Authorization": f"Bearer {token()}",
        "Content-Type": "application/json",
        "x-odsl-environment": environment,
    }


def post_batch(session: requests.Session, url: str, environment: str, body: bytes, size: int) -> float:
    """Seconds for one POST of a pre-serialised batch; anything but a clean 201 is an error."""
    request_headers = headers(environment)
    start = time.perf_counter()
    response = session.post(url + SUBMIT, data=body, headers=request_headers, timeout=BULK_TIMEOUT)
    elapsed = time.perf_counter() - start
    if response.status_code != 201:
        raise RuntimeError(f"POST of {size} elements answered {response.status_code}: {response.text[:500]}")
    summary = response.json()
    if summary.get("status") != "success" or summary.get("size") != size:
        raise RuntimeError(f"POST of {size} elements: unexpected summary {str(summary)[:500]}")
    return elapsed


def run_bulk(server: Gunicorn) -> dict:
    results = {}
    with requests.Session() as session:
        # A few small batches first: the worker behind this keep-alive connection builds its pool untimed.
        for rep in range(4):
            post_batch(session, server.url, "warmup", batch_body(elements(10, rep, "WARM"), "warmup"), 10)
        for size, repeats in BULK_REPEATS.items():
            inserts, updates, resends = [], [], []
            for rep in range(repeats):
                environment = f"bulk-{size}-{rep}"
                insert_body = batch_body(elements(size, 0), f"bulk insert {size}")
                update_body = batch_body(elements(size, 1), f"bulk update {size}")
                inserts.append(size / post_batch(session, server.url, environment, insert_body, size))
                updates.append(size / post_batch(session, server.url, environment, update_body, size))
                resends.append(size / post_batch(session, server.url, environment, update_body, size))
            inserts_eps, updates_eps = statistics.median(inserts), statistics.median(updates)
            resends_eps = statistics.median(resends)
            results[size] = {
                "insert_eps": inserts_eps,
                "update_eps": updates_eps,
                "resend_eps": resends_eps,
                "runs": repeats,
            }
            log(
                f"bulk  {size:>6}: insert {inserts_eps:,.0f} el/s, update {updates_eps:,.0f} el/s,"
                f" unchanged re-send {resends_eps:,.0f} el/s"
            )
    return results


# --- small batches from concurrent clients -----------------------------------------------------


def small_bodies(client: int) -> list[bytes]:
    count = SMALL_IDS_PER_CLIENT // SMALL_BATCH
    return [
        batch_body(elements(SMALL_BATCH, 0, f"SMALL{client}", start=1 + i * SMALL_BATCH), "small") for i in range(count)
    ]


def _client(port, request_headers, bodies, barrier, deadline_box, out):
    """One client: a keep-alive connection posting bodies in turn until the deadline.

    http.client rather than requests: with 8 threads, requests spends ~1 ms of CPU per call
    under the GIL and caps the bare Flask reference at ~600 req/s on 2 CPUs (http.client:
    ~1,600), which would flatter the ratio. Same keep-alive, same bodies and headers.
    """
    latencies, errors, first_error = [], 0, None
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        barrier.wait()
        deadline = deadline_box[0]
        for n in range(MAX_REQUESTS_PER_CLIENT):
            if time.perf_counter() >= deadline:
                break
            start = time.perf_counter()
            try:
                connection.request("POST", SUBMIT, body=bodies[n % len(bodies)], headers=request_headers)
                response = connection.getresponse()
                payload = response.read()
                ok = response.status in (200, 201)
                detail = f"{response.status}: {payload[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                connection.close()  # reconnects on the next request
                ok, detail = False, repr(exc)
            finished = time.perf_counter()
            if ok:
                latencies.append(finished - start)
            else:
                errors += 1
                first_error = first_error or detail
    finally:
        connection.close()
        out.append({"latencies": latencies, "errors": errors, "first_error": first_error, "ended": time.perf_counter()})


def drive_clients(
    server: Gunicorn, clients: int, seconds: float, bodies: list[list[bytes]], authorization: str | None = None
) -> dict:
    """`clients` threads, each with its own keep-alive connection, posting for `seconds` (with a
    JWT, or the `authorization` header given, e.g. an API key's Basic credentials)."""
    request_headers = headers("small")
    if authorization is not None:
        request_headers["Authorization"] = authorization
    barrier = threading.Barrier(clients + 1)
    deadline_box = [0.0]
    out: list[dict] = []
    threads = [
        threading.Thread(
            target=_client, args=(server.port, request_headers, bodies[c], barrier, deadline_box, out), daemon=True
        )
        for c in range(clients)
    ]
    for thread in threads:
        thread.start()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline_box[0] = started + seconds
    barrier.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=seconds + 60)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a small-batch client did not finish in time")
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    latencies = sorted(lat for result in out for lat in result["latencies"])
    errors = sum(result["errors"] for result in out)
    elapsed = max(result["ended"] for result in out) - started
    first_error = next((r["first_error"] for r in out if r["first_error"]), None)
    if errors:
        raise RuntimeError(f"{errors} small-batch requests failed; first: {first_error}")
    if not latencies:
        raise RuntimeError("no small-batch request completed")
    client_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "client_cpu_cores": client_cpu / elapsed,
    }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_small(server: Gunicorn, clients: int, seconds: float, label: str, authorization: str | None = None) -> dict:
    bodies = [small_bodies(c) for c in range(clients)]
    drive_clients(server, clients, WARMUP_SECONDS, bodies, authorization)
    result = drive_clients(server, clients, seconds, bodies, authorization)
    log(
        f"small {label}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms"
        f" (clients used {result['client_cpu_cores']:.2f} CPU)"
    )
    return result


def api_key_authorization(server: Gunicorn) -> str:
    """Basic credentials of a new batch.write API key of the bench tenant (created over REST)."""
    response = requests.post(
        server.url + "/api/apikey/v1",
        json={"user": USER, "roles": ["batch.write"], "name": "bench"},
        headers=headers("small"),
        timeout=30,
    )
    response.raise_for_status()
    return "Basic " + base64.b64encode(f"{USER}:{response.json()['key']}".encode()).decode()


# --- memory: one 50,000-element batch on a fresh server ------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set since the process started) of `pid`, in kB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def run_memory(server: Gunicorn, size: int = 50_000) -> dict:
    pids = server.worker_pids()
    before = {pid: memory_kb(pid) for pid in pids}
    body = batch_body(elements(size, 0, "MEM"), "memory")
    with requests.Session() as session:
        elapsed = post_batch(session, server.url, "memory", body, size)
    after = {pid: memory_kb(pid) for pid in pids}
    handler = max(pids, key=lambda pid: after[pid]["VmHWM"] - before[pid]["VmHWM"])
    result = {
        "elements": size,
        "body_mb": len(body) / 2**20,
        "seconds": elapsed,
        "worker_idle_rss_mb": before[handler]["VmRSS"] / 1024,
        "worker_peak_rss_mb": after[handler]["VmHWM"] / 1024,
        "workers_peak_rss_mb": {str(pid): after[pid]["VmHWM"] / 1024 for pid in pids},
    }
    log(f"memory: worker peak RSS {result['worker_peak_rss_mb']:.0f} MB (idle {result['worker_idle_rss_mb']:.0f} MB)")
    return result


# --- report -----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def check(name: str, value: float, target: float, ok: bool) -> dict:
    return {"name": name, "value": value, "target": target, "ok": ok}


def build_rows(
    floor: dict, bulk: dict, small: dict, bare: dict, memory: dict, small_key: dict
) -> tuple[list[tuple], list[dict]]:
    rows, checks = [], []
    for size in BULK_REPEATS:
        for mode in ("insert", "update"):
            key = f"{mode}_eps"
            ratio = bulk[size][key] / floor[size][key]
            target, ok = "", ""
            if size == 10_000:
                target = f">= {TARGET_BULK_RATIO:.0%} of floor"
                ok = verdict(ratio >= TARGET_BULK_RATIO)
                checks.append(check(f"bulk 10k {mode} vs floor", ratio, TARGET_BULK_RATIO, ratio >= TARGET_BULK_RATIO))
            rows.append((
                f"bulk {size:,} {mode}s", f"{bulk[size][key]:,.0f} el/s", f"{floor[size][key]:,.0f} el/s (floor)",
                f"{ratio:.0%}", target, ok,
            ))  # fmt: skip
        # An unchanged re-send writes nothing; the floor's upsert rewrites every row anyway.
        ratio = bulk[size]["resend_eps"] / floor[size]["update_eps"]
        rows.append((
            f"bulk {size:,} unchanged re-sends", f"{bulk[size]['resend_eps']:,.0f} el/s",
            f"{floor[size]['update_eps']:,.0f} el/s (floor update)", f"{ratio:.0%}", "", "",
        ))  # fmt: skip
    ratio = small["rps"] / bare["rps"]
    checks.append(check("small req/s vs bare Flask", ratio, TARGET_SMALL_RATIO, ratio >= TARGET_SMALL_RATIO))
    rows.append((
        f"small x{SMALL_BATCH} req/s", f"{small['rps']:,.0f} req/s", f"{bare['rps']:,.0f} req/s (bare)",
        f"{ratio:.0%}", f">= {TARGET_SMALL_RATIO:.0%} of bare", verdict(ratio >= TARGET_SMALL_RATIO),
    ))  # fmt: skip
    rows.append((
        f"small x{SMALL_BATCH}, API key", f"{small_key['rps']:,.0f} req/s", f"{small['rps']:,.0f} req/s (JWT)",
        f"{small_key['rps'] / small['rps']:.0%}", "~ JWT (report)", "",
    ))  # fmt: skip
    rows.append(("small p50 latency", f"{small['p50_ms']:.1f} ms", f"{bare['p50_ms']:.1f} ms (bare)", "", "", ""))
    p99_ok = small["p99_ms"] < TARGET_SMALL_P99_MS
    checks.append(check("small p99 latency ms", small["p99_ms"], TARGET_SMALL_P99_MS, p99_ok))
    rows.append((
        "small p99 latency", f"{small['p99_ms']:.1f} ms", f"{bare['p99_ms']:.1f} ms (bare)", "",
        f"< {TARGET_SMALL_P99_MS:.0f} ms", verdict(p99_ok),
    ))  # fmt: skip
    peak = memory["worker_peak_rss_mb"]
    peak_ok = peak < TARGET_PEAK_RSS_MB
    checks.append(check("50k batch worker peak RSS MB", peak, TARGET_PEAK_RSS_MB, peak_ok))
    rows.append((
        "50k batch worker peak RSS", f"{peak:.0f} MB", f"{memory['worker_idle_rss_mb']:.0f} MB (idle)", "",
        f"< {TARGET_PEAK_RSS_MB:.0f} MB", verdict(peak_ok),
    ))  # fmt: skip
    return rows, checks


def print_table(rows: list[tuple], meta: dict) -> None:
    header = ("case", "batchsvc", "reference", "ratio", "target", "")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print()
    print(
        f"batchsvc benchmark  {meta['started']}  git {meta['git']}  {meta['cpus']} CPUs  "
        f"PostgreSQL {meta['postgres']['server_version']} (synchronous_commit={meta['postgres']['synchronous_commit']})"
    )
    if meta["loadavg_at_start"] > 0.5 * (meta["cpus"] or 1):
        # Other work on the machine shares the CPUs with servers, clients and PostgreSQL.
        print(f"warning: load average {meta['loadavg_at_start']:.2f} at start: figures may be low and noisy")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(line)


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "batchsvc", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{'+dirty' if dirty else ''}" if rev else "unknown"


def gunicorn(app: str, label: str, env: dict) -> Gunicorn:
    """A 2-worker server for one part of the run, ready once every worker has booted, logging to
    bench/results/gunicorn-<label>.log; bench/ is on its path for bare_app."""
    return Gunicorn(app, env=env, log_path=RESULTS / f"gunicorn-{label}.log", pythonpath=BENCH, every_worker=True)


def run_observability(service_env: dict, clients: int, seconds: float, repeats: int) -> dict:
    """Small batches with metrics + request log on and off, runs interleaved so drift hits both.

    Besides req/s (noisy on a shared machine), the workers' CPU per request: what the
    observation itself costs, less disturbed by whatever else the machine runs.
    """
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    bodies = [small_bodies(c) for c in range(clients)]
    with (
        gunicorn("wsgi:app", "observe-on", service_env) as on,
        gunicorn("quiet_app:app", "observe-off", service_env) as off,
    ):
        for rep in range(repeats):
            for mode, server in (("on", on), ("off", off)) if rep % 2 == 0 else (("off", off), ("on", on)):
                drive_clients(server, clients, WARMUP_SECONDS, bodies)
                workers = server.worker_pids()
                cpu_before = sum(cpu_seconds(pid) for pid in workers)
                result = drive_clients(server, clients, seconds, bodies)
                result["worker_cpu_ms_per_request"] = (
                    (sum(cpu_seconds(pid) for pid in workers) - cpu_before) / result["requests"] * 1000
                )
                runs[mode].append(result)
                log(
                    f"small, observability {mode} #{rep + 1}: {result['rps']:,.0f} req/s, p99"
                    f" {result['p99_ms']:.1f} ms, workers {result['worker_cpu_ms_per_request']:.3f} ms CPU/request"
                )
    median = {mode: statistics.median(r["rps"] for r in results) for mode, results in runs.items()}
    cpu = {mode: statistics.median(r["worker_cpu_ms_per_request"] for r in results) for mode, results in runs.items()}
    cost = 1 - median["on"] / median["off"]
    log(
        f"observability: on {median['on']:,.0f} req/s, off {median['off']:,.0f} req/s (medians of {repeats}),"
        f" cost {cost:.1%} (target <= {TARGET_OBSERVABILITY_COST:.0%}); worker CPU per request"
        f" {cpu['on']:.3f} vs {cpu['off']:.3f} ms (+{cpu['on'] / cpu['off'] - 1:.1%})"
    )
    return {
        "runs": runs,
        "median_rps": median,
        "median_worker_cpu_ms_per_request": cpu,
        "cost": cost,
        "ok": cost <= TARGET_OBSERVABILITY_COST,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each small-batch run (default 10)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent small-batch clients (default 8)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--observability", action="store_true", help="only small batches, metrics + request log on vs off"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode with --observability (default 3)")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 < args.clients <= 64 or not 0 < args.repeats <= 10:
        parser.error("--seconds must be in (0, 120], --clients in 1..64 and --repeats in 1..10")

    # A SIGTERM (CI timeout, Ctrl-C in make) must still run the finally blocks that stop servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    meta = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_revision(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg()[0],
    }

    log(f"creating database {bench_database_name()} and migrating it")
    db_url = recreate_database(bench_database_name())
    meta["postgres"] = server_facts(db_url)
    service_env = {"DATABASE_URL": db_url, "BATCHSVC_JWT_SECRET": SECRET, "BATCHSVC_DEV": ""}

    if args.observability:
        result = run_observability(service_env, args.clients, args.seconds, args.repeats)
        RESULTS.mkdir(parents=True, exist_ok=True)
        report = {"meta": {**meta, "loadavg_at_end": os.getloadavg()[0]}, "clients": args.clients, **result}
        (RESULTS / "observability.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        return 1 if args.check and not result["ok"] else 0

    floor = run_floor(db_url)
    with gunicorn("wsgi:app", "batchsvc", service_env) as server:
        bulk = run_bulk(server)
        small = run_small(server, args.clients, args.seconds, "batchsvc")
        small_key = run_small(server, args.clients, args.seconds, "batchsvc, API key", api_key_authorization(server))
    with gunicorn("bare_app:app", "bare", service_env) as server:
        bare = run_small(server, args.clients, args.seconds, "bare flask")
    with gunicorn("wsgi:app", "memory", service_env) as server:
        memory = run_memory(server)
    series = bench_series.run_series(db_url, service_env)
    with gunicorn("wsgi:app", "datarows", service_env) as server:
        data_rows = bench_datarows.run_data_rows(server, db_url)

    rows, checks = build_rows(floor, bulk, small, bare, memory, small_key)
    series_rows, series_checks = bench_series.rows_and_checks(series)
    rows += series_rows + bench_datarows.rows(data_rows)
    checks += series_checks
    meta["duration_s"] = round(time.monotonic() - started, 1)
    meta["loadavg_at_end"] = os.getloadavg()[0]
    print_table(rows, meta)
    met = sum(c["ok"] for c in checks)
    print(f"{met}/{len(checks)} targets met; run took {meta['duration_s']:.0f} s; details in bench/results/latest.json")

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": meta,
        "config": {
            "floor_repeats": FLOOR_REPEATS, "bulk_repeats": BULK_REPEATS, "small_batch": SMALL_BATCH,
            "clients": args.clients, "small_seconds": args.seconds, "workers": 2, "element_bytes": len(orjson.dumps(elements(1)[0])),
        },
        "floor": floor,
        "bulk": bulk,
        "small": {"batchsvc": small, "batchsvc_api_key": small_key, "bare_flask": bare},
        "memory": memory,
        "series": series,
        "data_rows": data_rows,
        "checks": checks,
    }  # fmt: skip
    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    (RESULTS / "latest.json").write_bytes(orjson.dumps(report, option=options) + b"\n")
    return 1 if args.check and not all(c["ok"] for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
