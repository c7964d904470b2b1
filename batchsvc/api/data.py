"""Typed data read routes: the data list, series, curves and matrices, tenor histories, events."""

from __future__ import annotations

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


def _single(params: dict[str, list[str]], allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters of a one-item read: only `allowed` names, each once."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(f"unknown query parameter {unknown[0][:64]!r}; accepted: {', '.join(sorted(allowed))}")
    for name, values in params.items():
        if len(values) != 1:
            raise InvalidInput(f"query parameter {name!r} given more than once")
    return {name: values[0] for name, values in params.items()}


def _asof(params: dict[str, list[str]]) -> str | None:
    """Take `_asof` out of a list's query parameters (given at most once)."""
    values = params.pop(data.ASOF, None)
    if values is not None and len(values) != 1:
        raise InvalidInput(f"query parameter {data.ASOF!r} given more than once")
    return values[0] if values else None


@blp.route("/v1/<source>", parameters=[docs.SOURCE])
class DataList(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.DATA_LIST)
    def get(self, source):
        """List the data properties of a source's objects, as headers (paged)"""
        caller = current_principal()
        query = parse_list_query(query_params())
        return list_response(*data.list_data(reader(caller), check_source(source), query))


@blp.route("/v1/<source>/<path:ref>", parameters=[docs.SOURCE])
class DataById(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.DATA_GET)
    def get(self, source, ref):
        """A series (OBJ:PROP, with _range), a curve or matrix (OBJ:PROP:DATE, or the latest), a tenor's history"""
        caller = current_principal()
        params = _single(query_params(), data.DATA_PARAMETERS)
        found = data.get_data(
            reader(caller), check_source(source), ref, params.get("_range"), params.get("tenor"), params.get(data.ASOF)
        )
        return json_response(found)


@events_blp.route("/v1/<source>", parameters=[docs.SOURCE])
class EventsOfList(MethodView):
    @events_blp.requires(READ)
    @events_blp.doc(**docs.EVENT_QUERY)
    def get(self, source):
        """The events of the event list named by ?event=OBJ:LIST (paged, newest first)"""
        caller = current_principal()
        params = query_params()
        ref = params.pop("event", None)
        if ref is None or len(ref) != 1:
            raise InvalidInput("event=OBJECT:LIST is required, once: the event list to read")
        asof = _asof(params)
        query = parse_list_query(params)
        return list_response(*data.list_events(reader(caller), check_source(source), ref[0], query, asof))


@events_blp.route("/v1/<source>/<path:ref>", parameters=[docs.SOURCE])
class EventById(MethodView):
    @events_blp.requires(READ)
    @events_blp.doc(**docs.EVENT_LIST)
    def get(self, source, ref):
        """The events of an event list OBJ:LIST (paged, newest first), or one event OBJ:LIST:EVENTID"""
        caller = current_principal()
        params = query_params()
        asof = _asof(params)
        query = parse_list_query(params)
        found = data.read_events(reader(caller), check_source(source), ref, query, asof)
        return json_response(found) if isinstance(found, dict) else list_response(*found)
