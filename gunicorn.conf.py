"""Production defaults for `gunicorn wsgi:app`; every value can be overridden by env or flags."""

import os

bind = os.environ.get("BATCHSVC_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threaded workers overlap requests so PostgreSQL can group their commits.
worker_class = "gthread"
threads = int(os.environ.get("BATCHSVC_THREADS", "4"))
# Longer than the largest allowed batch (50,000 elements) takes, with a wide margin.
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
