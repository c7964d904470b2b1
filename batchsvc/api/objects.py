"""Object routes: write objects (the object service, SPEC §11), list a source's objects, read one back (as
stored, a version, as of an instant), delete one."""

from __future__ import annotations

from flask import request
from flask.views import MethodView

from batchsvc.api import docs
from batchsvc.api.access import Blueprint, current_principal
from batchsvc.api.batch import run_batch
from batchsvc.api.http import (
    check_source,
    history_reader,
    json_response,
    list_response,
    query_params,
    read_body,
    reader,
    scope,
    services,
    settings,
    summary_response,
)
from batchsvc.core import history, objects
from batchsvc.core.batches import REJECTED, object_write_failure, object_write_request
from batchsvc.core.identity import READ, WRITE
from batchsvc.core.queries import parse_list_query

blp = Blueprint("object", __name__, url_prefix="/api/object", description="Write objects and read them back")


def write_objects(source: str):
    """Apply one object or an array of them as a batch: the object back, or the batch's summary."""
    caller = current_principal()
    write = object_write_request(
        read_body(settings().max_body_bytes),
        source=source,
        replace=request.args.get("_replace"),
        atomic=request.args.get("_atomic"),
        reason=request.args.get("_reason"),
    )
    outcome = run_batch(caller, write.batch)
    # A replay here only means a retried commit had landed: this call's write, so 201 all the same.
    if not write.single:
        return summary_response(outcome, replay_status=201)
    if outcome.kind == REJECTED:
        raise object_write_failure(outcome.summary)
    obj = objects.get_object(reader(caller), "all", write.target)
    return json_response(obj, 201, {"Location": objects.object_location(obj["_id"])})


@blp.route("")
class ObjectService(MethodView):
    @blp.requires(WRITE)
    @blp.doc(**docs.OBJECT_WRITE)
    def post(self):
        """Write one object or an array of objects (the odsl SDK's update route)"""
        return write_objects("all")


@blp.route("/v1")
class ObjectWrites(MethodView):
    @blp.requires(WRITE)
    @blp.doc(**docs.OBJECT_WRITE)
    def post(self):
        """Write one object or an array of objects"""
        return write_objects("all")


@blp.route("/v1/<source>", parameters=[docs.SOURCE])
class Objects(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.OBJECT_LIST)
    def get(self, source):
        """List objects of a source (private, public, all)"""
        caller = current_principal()
        query = parse_list_query(query_params())
        total, items = objects.list_objects(reader(caller), check_source(source), query)
        return list_response(total, items)

    @blp.requires(WRITE)
    @blp.doc(**docs.OBJECT_WRITE_TO_SOURCE)
    def post(self, source):
        """Write one object or an array of objects to a source (its ids only: private no '#', public '#')"""
        return write_objects(check_source(source))


@blp.route("/v1/<source>/<path:object_id>", parameters=[docs.SOURCE])
class ObjectById(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.OBJECT_GET)
    def get(self, source, object_id):
        """One object as stored, one of its versions (…/{version}), its versions (…/*), or as of an instant"""
        caller = current_principal()
        answer = history.read_object(history_reader(caller), check_source(source), object_id, query_params())
        if answer.items is not None:
            return list_response(answer.total, answer.items)
        return json_response(answer.item)

    @blp.requires(WRITE)
    @blp.doc(**docs.OBJECT_DELETE)
    @blp.response(204)
    def delete(self, source, object_id):
        """Roll an object back to its previous version, or remove it when it has only one"""
        caller = current_principal()
        history.delete_object(
            services().store.batch_transaction(scope(caller)),
            caller,
            check_source(source),
            object_id,
            reason=request.args.get("_reason"),
            attempts=settings().retry_attempts,
        )
        return "", 204
