"""Production defaults for `gunicorn wsgi:app`; every value can be overridden by env or flags."""

import atexit
import glob
import os
import shutil
import tempfile

bind = os.environ.get("BATCHSVC_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threaded workers overlap requests so PostgreSQL can group their commits.
worker_class = "gthread"
threads = int(os.environ.get("BATCHSVC_THREADS", "4"))
# BATCHSVC_WORKER_TIMEOUT (seconds, default 300): the arbiter kills and replaces a worker
# whose main loop has not checked in for this long. With gthread workers the main loop checks
# in about once a second while request threads run, so this catches a hung or wedged process,
# not a slow request; each SQL statement is bounded by BATCHSVC_DB_STATEMENT_TIMEOUT_MS instead.
# The largest allowed batch (50,000 elements, ~3.7 MB) takes about 2.5-3.5 s on a 2-core
# machine. A worker killed mid-batch is safe: the batch's transaction rolls back (SPEC §3.4).
timeout = int(os.environ.get("BATCHSVC_WORKER_TIMEOUT", "300"))
graceful_timeout = 30
keepalive = 5
# Large batches come in one request: keep headers bounded, bodies are limited by the app.
limit_request_line = 8190
max_requests = int(os.environ.get("BATCHSVC_MAX_REQUESTS", "0"))
max_requests_jitter = 100
# The app writes one line per request to stdout (batchsvc/api/observe.py): that is the access
# log, in BATCHSVC_LOG_FORMAT, with the request id. gunicorn's own would only repeat it.
accesslog = None
errorlog = "-"
preload_app = False

# gunicorn's error log (stderr) in the same format as the app's lines.
_log_format = os.environ.get("BATCHSVC_LOG_FORMAT", "json")
try:
    from batchsvc.logs import make_formatter

    make_formatter(_log_format)  # a wrong value stops the master with the reason, not dictConfig's
except RuntimeError as exc:  # batchsvc.config.ConfigError
    raise SystemExit(f"batchsvc: {exc}") from None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"batchsvc": {"()": "batchsvc.logs.make_formatter", "log_format": _log_format}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "batchsvc", "stream": "ext://sys.stderr"},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False, "qualname": "gunicorn.error"},
    },
}

# Metrics of all workers (batchsvc/metrics.py): prometheus_client keeps each worker's values in
# files of PROMETHEUS_MULTIPROC_DIR, which must be set before the workers import it. Without one
# from the deploy, each master start gets a fresh directory of its own, removed at exit (the
# marker survives the re-read of this file on a reload), in memory (/dev/shm) where there is one:
# the files are memory-mapped and written on every request, and on a disk the kernel would keep
# writing their pages back.
_OWNED_MARK = "BATCHSVC_OWNED_METRICS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_OWNED_MARK] = tempfile.mkdtemp(
        prefix="batchsvc-metrics-", dir=_shm
    )

    def _remove_metrics_dir(path: str, master: int) -> None:
        """At the master's exit, also when it fails to start (workers inherit this: hence the pid)."""
        if os.getpid() == master:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(_remove_metrics_dir, os.environ[_OWNED_MARK], os.getpid())


def _own_metrics_dir() -> bool:
    return os.environ.get(_OWNED_MARK) == os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server):
    """A directory the deploy gave may hold files of its last run: start from zero."""
    if not _own_metrics_dir():
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
        for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
            os.remove(path)


def child_exit(server, worker):
    """A worker's counters stay counted; its live gauges (pool connections in use) go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
