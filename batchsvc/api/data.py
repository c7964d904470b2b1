"""Typed data read routes: series, curves and matrices, and event lists."""

from __future__ import annotations

from flask import request
from flask.views import MethodView

from batchsvc.api import docs
from batchsvc.api.access import Blueprint, current_principal
from batchsvc.api.http import check_source, json_response, list_response, query_params, reader
from batchsvc.core import data
from batchsvc.core.errors import InvalidInput
from batchsvc.core.identity import READ
from batchsvc.core.queries import parse_list_query

blp = Blueprint("data", __name__, url_prefix="/api/data", description="Read time series, curves and matrices")
events_blp = Blueprint("event", __name__, url_prefix="/api/event", description="Read event lists")


@blp.route("/v1/<source>/<path:ref>", parameters=[docs.SOURCE])
class DataById(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.DATA_GET)
    def get(self, source, ref):
        """A series (OBJ:PROP, with _range), a curve or matrix (OBJ:PROP:DATE), or the latest curve"""
        caller = current_principal()
        params = query_params()
        unknown = sorted(set(params) - {"_range"})
        if unknown:
            raise InvalidInput(f"unknown query parameter {unknown[0][:64]!r}; only _range is accepted")
        return json_response(data.get_data(reader(caller), check_source(source), ref, request.args.get("_range")))


@events_blp.route("/v1/<source>/<path:ref>", parameters=[docs.SOURCE])
class EventList(MethodView):
    @events_blp.requires(READ)
    @events_blp.doc(**docs.EVENT_LIST)
    def get(self, source, ref):
        """The events of an event list OBJ:LIST (paged, newest first)"""
        caller = current_principal()
        query = parse_list_query(query_params())
        total, items = data.list_events(reader(caller), check_source(source), ref, query)
        return list_response(total, items)
