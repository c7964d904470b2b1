"""Object routes: list a source's objects and read one back as stored."""

from __future__ import annotations

from flask.views import MethodView

from batchsvc.api import docs
from batchsvc.api.access import Blueprint, current_principal
from batchsvc.api.http import check_source, json_response, list_response, query_params, reader
from batchsvc.api.schemas import StoredObjectSchema
from batchsvc.core import objects
from batchsvc.core.identity import READ
from batchsvc.core.queries import parse_list_query

blp = Blueprint("object", __name__, url_prefix="/api/object", description="Read the objects batches wrote")


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


@blp.route("/v1/<source>/<path:object_id>", parameters=[docs.SOURCE])
class ObjectById(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.OBJECT_GET)
    @blp.response(200, StoredObjectSchema)
    def get(self, source, object_id):
        """One object as stored, with its server fields"""
        caller = current_principal()
        return json_response(objects.get_object(reader(caller), check_source(source), object_id))
