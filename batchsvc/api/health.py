"""Liveness and readiness probes: no auth."""

from __future__ import annotations

from flask.views import MethodView
from sqlalchemy import text

from batchsvc.api.access import Blueprint
from batchsvc.api.errors import error_response
from batchsvc.api.http import json_response, services
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
