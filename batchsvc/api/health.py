"""Liveness and readiness probes (no auth) and the Prometheus metrics."""

from __future__ import annotations

import hmac

from flask import Response, request
from flask.views import MethodView
from sqlalchemy import text

from batchsvc import metrics
from batchsvc.api.access import Blueprint, open_to_all
from batchsvc.api.errors import error_response
from batchsvc.api.http import json_response, services, settings
from batchsvc.api.schemas import HealthSchema

blp = Blueprint("health", __name__, description="Probes for load balancers and orchestrators")


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.public
    @blp.response(200, HealthSchema)
    def get(self):
        """The process is up (never touches the database)"""
        return json_response({"status": "ok"})


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.public
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema="Error")
    def get(self):
        """The database answers"""
        try:
            with services().database.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # any failure to reach the database means not ready
            return error_response(503, "the database is not reachable")
        return json_response({"status": "ok"})


_METRICS_DOC = {
    # Open by default; with BATCHSVC_METRICS_TOKEN set, that token as a bearer token (not a JWT).
    "security": [{}, {"bearer": []}],
    "responses": {
        "200": {
            "description": "Prometheus text exposition format, summed over all workers",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "401": {
            "description": "BATCHSVC_METRICS_TOKEN is set and the bearer token is missing or wrong",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    },
}


@blp.route("/metrics")
class Metrics(MethodView):
    @open_to_all  # its own rule: BATCHSVC_METRICS_TOKEN, not the API's credentials
    @blp.doc(**_METRICS_DOC)
    def get(self):
        """Prometheus metrics (open unless BATCHSVC_METRICS_TOKEN is set)"""
        token = settings().metrics_token
        if token is not None and not _bearer_is(request.headers.get("Authorization", ""), token):
            return error_response(
                401,
                "metrics need Authorization: Bearer <the BATCHSVC_METRICS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="batchsvc-metrics"'},
            )
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)


def _bearer_is(header: str, token: str) -> bool:
    scheme, _, presented = header.partition(" ")
    # compare_digest: the time taken does not tell how much of the token was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
