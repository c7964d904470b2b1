"""Prometheus metrics of the service, summed over every gunicorn worker in multiprocess mode."""

from __future__ import annotations

import os
import threading
import time
import weakref

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# Set (by gunicorn.conf.py, or the operator) before this module is imported: prometheus_client
# picks its value storage at import, one memory-mapped file per worker process in that directory.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RETRY_CAUSE_NAMES = ("deadlock", "serialization", "lock_timeout", "connection_lost")
POOL_SAMPLE_SECONDS = 1.0

# No `*_created` series: multiprocess mode has none, so one process alone shows the same names.
disable_created_metrics()

REQUESTS = Counter(
    "batchsvc_http_requests",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
REQUEST_DURATION = Histogram(
    "batchsvc_http_request_duration_seconds",
    "Time from the request reaching the app to its response, by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCHES = Counter("batchsvc_batches", "Batches applied, by summary status", ["status"])
BATCH_REPLAYS = Counter("batchsvc_batch_replays", "Batches posted again with the same body (answered 200)")
BATCH_ELEMENTS = Histogram(
    "batchsvc_batch_elements",
    "Elements per applied batch",
    buckets=(1, 10, 100, 500, 1000, 5000, 10000, 25000, 50000),
)
BATCH_DURATION = Histogram(
    "batchsvc_batch_duration_seconds",
    "Time to apply a batch (planning, database transaction and retries)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
DB_RETRIES = Counter(
    "batchsvc_db_retries",
    "Batch transactions retried, by cause (deadlock, serialization, lock_timeout, connection_lost)",
    ["cause"],
)
POOL_IN_USE = Gauge(
    "batchsvc_db_pool_connections_in_use",
    "Database connections checked out of the pools (all workers)",
    multiprocess_mode="livesum",
)

for _cause in RETRY_CAUSE_NAMES:
    DB_RETRIES.labels(_cause)  # a zero from the start, so rate() works before the first retry
for _status in ("success", "warning", "failed"):
    BATCHES.labels(_status)


def _child(metric, *labels):
    """`metric.labels(*labels)`, remembered: labels() validates and locks, ~4 us a call."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


_children: dict = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in KNOWN_METHODS else "OTHER"
    _child(REQUESTS, method, route, str(status)).inc()
    _child(REQUEST_DURATION, method, route).observe(seconds)


def observe_batch(status: str, elements: int, seconds: float) -> None:
    _child(BATCHES, status).inc()
    BATCH_ELEMENTS.observe(elements)
    BATCH_DURATION.observe(seconds)


def observe_replay() -> None:
    BATCH_REPLAYS.inc()


def count_retry(cause: str) -> None:
    _child(DB_RETRIES, cause).inc()


# --- pool connections in use ---------------------------------------------------------------

_databases: weakref.WeakSet = weakref.WeakSet()
_sampler_pid: int | None = None
_sampler_lock = threading.Lock()


def _in_use() -> int:
    return sum(database.connections_in_use() for database in list(_databases))


def track_pool(database) -> None:
    """Count `database`'s checked-out connections in the pool gauge (see `start_pool_sampler`)."""
    _databases.add(database)


def start_pool_sampler() -> None:
    """Under gunicorn, keep this worker's pool count in its gauge file.

    One process alone (flask run, tests) reads its pools when scraped. Under gunicorn the
    scrape reaches one worker, so each worker writes its count once a second from a daemon
    thread, started on the worker's first request (threads do not survive a fork). Cheap to
    call on every request.
    """
    global _sampler_pid
    if not MULTIPROCESS or _sampler_pid == os.getpid():
        return
    with _sampler_lock:
        if _sampler_pid != os.getpid():
            _sampler_pid = os.getpid()
            threading.Thread(target=_sample_pool, name="batchsvc-pool-gauge", daemon=True).start()


def _sample_pool() -> None:
    while True:
        POOL_IN_USE.set(_in_use())
        time.sleep(POOL_SAMPLE_SECONDS)


if not MULTIPROCESS:
    POOL_IN_USE.set_function(_in_use)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type: every worker's files merged, or this process."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
