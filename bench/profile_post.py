"""Where a batch POST spends its time: pyinstrument around the Flask test client, in-process.

    .venv/bin/python bench/profile_post.py                  # 10,000-element batches
    .venv/bin/python bench/profile_post.py --size 10 --posts 300
    .venv/bin/python bench/profile_post.py --series         # days of 100 series x 288 points

Uses its own database (`batchsvc_profile`, or BATCHSVC_PROFILE_DATABASE) on the same server
as bench/run.py. Each round posts the batch as inserts, then as updates of the same ids, in
a fresh environment. Prints the call tree and the functions with the most self time, and
writes bench/results/profile-<size>.html. The database's own work shows up as time waiting
in psycopg2's execute (the client is blocked on the server), not as PostgreSQL internals.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import series as bench_series
from pyinstrument import Profiler
from workload import SECRET, batch_body, elements, recreate_database, token

from batchsvc import create_app

RESULTS = Path(__file__).resolve().parent / "results"


def self_times(frame, totals=None):
    """Self time per function over the whole tree, keyed by 'function  file:line'."""
    totals = defaultdict(float) if totals is None else totals
    if frame.is_synthetic:  # '[self]' and hidden-frame markers: already in the parent's self time
        return totals
    location = f"{frame.function}  {Path(frame.file_path or '?').name}:{frame.line_no}"
    totals[location] += frame.total_self_time
    for child in frame.children:
        self_times(child, totals)
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="elements per batch (default 10,000)")
    parser.add_argument("--posts", type=int, default=3, help="insert+update rounds to profile (default 3)")
    parser.add_argument("--top", type=int, default=25, help="functions to list by self time")
    parser.add_argument(
        "--series", action="store_true", help="post days of 100 series x 288 five-minute points instead (appended)"
    )
    args = parser.parse_args(argv)
    if not 0 < args.size <= 50_000 or not 0 < args.posts <= 1000:
        parser.error("--size must be in 1..50000 and --posts in 1..1000")

    url = recreate_database(os.environ.get("BATCHSVC_PROFILE_DATABASE", "batchsvc_profile"))
    app = create_app({"database_url": url, "jwt_secret": SECRET})
    client = app.test_client()
    if args.series:
        values = bench_series.day_values(2 * args.posts + 2)
        bodies = [bench_series.day_body(day, values[day], "PROFILE") for day in range(2 * args.posts + 2)]
        args.size = bench_series.SERIES * bench_series.POINTS_PER_DAY  # reported per point
    else:
        bodies = [batch_body(elements(args.size, revision), f"profile {args.size}") for revision in (0, 1)]

    def post(environment: str, body: bytes) -> None:
        headers = {"Authorization": f"Bearer {token()}", "x-odsl-environment": environment}
        response = client.post("/api/batch/v1", data=body, headers=headers)
        if response.status_code != 201:
            raise RuntimeError(f"POST answered {response.status_code}: {response.get_data(as_text=True)[:500]}")

    for body in bodies[:2]:  # warm-up: pools, imports, first-request work
        post("warmup", body)
    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    profiler.start()
    for round_ in range(args.posts):
        if args.series:  # two more days appended to the same series
            post("profile", bodies[2 + 2 * round_])
            post("profile", bodies[3 + 2 * round_])
            continue
        for body in bodies:
            post(f"profile-{round_}", body)
    profiler.stop()
    elapsed = time.perf_counter() - started

    posts = 2 * args.posts
    unit = "points" if args.series else "elements"
    print(f"{posts} POSTs of {args.size:,} {unit} in {elapsed:.2f} s: {elapsed / posts * 1000:.1f} ms per POST, "
          f"{args.size * posts / elapsed:,.0f} {unit}/s in-process")  # fmt: skip
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    session = profiler.last_session
    root = session.root_frame()
    total = root.time
    print(f"top {args.top} functions by self time (of {total:.2f} s sampled)")
    for location, seconds in sorted(self_times(root).items(), key=lambda item: -item[1])[: args.top]:
        print(f"{seconds / total:6.1%}  {seconds:7.3f} s  {location}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    html = RESULTS / f"profile-{'series' if args.series else args.size}.html"
    html.write_text(profiler.output_html())
    print(f"call tree written to {html.relative_to(Path.cwd()) if html.is_relative_to(Path.cwd()) else html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
