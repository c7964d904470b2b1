"""Production defaults for `gunicorn wsgi:app`; every value can be overridden by env or flags."""

import os

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
accesslog = "-"
errorlog = "-"
preload_app = False
