"""The reference for small batches: a bare Flask app that only reads and parses the body.

Served by the same gunicorn.conf.py as batchsvc (`gunicorn --pythonpath bench bare_app:app`),
so the difference between the two is what batchsvc does per request: auth, validation,
the database transaction and the summary.
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return Response(b'{"status":"ok"}', mimetype="application/json")


@app.post("/api/batch/v1")
def submit():
    body = orjson.loads(request.get_data())
    size = len(body["elements"]) if isinstance(body, dict) else len(body)
    return Response(orjson.dumps({"status": "success", "size": size}), status=201, mimetype="application/json")
