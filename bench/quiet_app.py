"""batchsvc with per-request metrics and the request log off: the baseline of `run.py --observability`.

Served like wsgi:app (`gunicorn --pythonpath bench quiet_app:app`); request ids stay on, so the
difference between the two is what the metrics and the log line cost per request.
"""

from __future__ import annotations

from batchsvc import create_app

app = create_app({"observe_requests": False})
