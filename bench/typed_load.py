"""Typed-data load: batches of 100 series × 288 five-minute points, points/second in-process.

    .venv/bin/python bench/typed_load.py [--days 5]

A market-data loader's daily shape (one day of 5-minute prices for 100 objects per batch),
posted through Flask's test client (no HTTP server) into its own database on the server the
benchmark uses (`batchsvc_typed`). Each day appends 28,800 points to the same series.
"""

from __future__ import annotations

import argparse
import time

import orjson
from workload import SECRET, recreate_database, token

from batchsvc import create_app

OBJECTS, POINTS = 100, 288


def day_batch(day: int) -> bytes:
    elements = []
    for n in range(OBJECTS):
        data = [
            {"time": f"2021-07-{day:02d}T{m // 12:02d}:{m % 12 * 5:02d}:00Z", "value": n + m} for m in range(POINTS)
        ]
        elements.append(
            {
                "_id": f"NEM.{n:04d}",
                "PRICE": {"_type": "VarTimeSeries", "calendar": "PT5M", "units": "AUD", "data": data},
            }
        )
    return orjson.dumps({"elements": elements})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args()
    app = create_app({"database_url": recreate_database("batchsvc_typed"), "jwt_secret": SECRET})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
    for day in range(1, args.days + 1):
        body = day_batch(day)
        start = time.perf_counter()
        response = client.post("/api/batch/v1", data=body, headers=headers)
        elapsed = time.perf_counter() - start
        if response.status_code != 201:
            raise SystemExit(f"day {day}: {response.status_code} {response.get_data(as_text=True)[:300]}")
        print(
            f"day {day}: {OBJECTS * POINTS:,} points in {elapsed * 1000:.0f} ms = {OBJECTS * POINTS / elapsed:,.0f} points/s"
        )


if __name__ == "__main__":
    main()
