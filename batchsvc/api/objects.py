"""Object routes: list a source's objects, read one back (as stored, a version, as of an instant), delete one."""

from __future__ import annotations

from flask import request
from flask.views import MethodView

from batchsvc.api import docs
from batchsvc.api.access import Blueprint, current_principal
from batchsvc.api.http import (
    check_source,
    history_reader,
    json_response,
    list_response,
    query_params,
    reader,
    scope,
    services,
    settings,
)
from batchsvc.api.schemas import StoredObjectSchema
from batchsvc.core import history, objects
from batchsvc.core.identity import READ, WRITE
from batchsvc.core.queries import parse_list_query

blp = Blueprint("object", __name__, url_prefix="/api/object", description="Read the objects batches wrote")


@blp.route("/v1/<source>", parameters=[docs.SOURCE])
class Objects(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.OBJECT_LIST)
    @blp.response(200, StoredObjectSchema(many=True))
    def get(self, source):
        """List objects of a source (private, public, all)"""
        caller = current_principal()
        query = parse_list_query(query_params())
        total, items = objects.list_objects(reader(caller), check_source(source), query)
        return list_response(total, items)


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
