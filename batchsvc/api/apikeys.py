"""API-key routes: a tenant's batch.admin creates, lists, reads and revokes the tenant's keys."""

from __future__ import annotations

from datetime import UTC, datetime

from flask.views import MethodView

from batchsvc.api import docs
from batchsvc.api.access import Blueprint, current_principal
from batchsvc.api.http import json_response, list_response, query_params, read_body, services
from batchsvc.api.schemas import ApiKeyCreatedSchema, ApiKeyRequestSchema, ApiKeySchema
from batchsvc.core import apikeys
from batchsvc.core.documents import loads
from batchsvc.core.errors import InvalidInput, NotConfigured
from batchsvc.core.identity import ADMIN
from batchsvc.core.queries import parse_list_query

blp = Blueprint(
    "apikey", __name__, url_prefix="/api/apikey", description="API keys of the caller's tenant (batch.admin)"
)
MAX_REQUEST_BYTES = 64 * 1024
_ERRORS = {"403": docs.error("The caller is not the tenant's batch.admin, or asks for roles it does not hold")}
_KEY_ID = {
    "in": "path",
    "name": "keyid",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{apikeys.KEY_ID_PATTERN}$"},
}
LIST = {
    "description": "The tenant's live keys, newest first; paged (x-total-count header).",
    "parameters": docs.list_params(())[:2],  # paging only
    "responses": {
        "200": {"description": "OK", "headers": docs.LIST_HEADERS},
        "400": docs.error("Invalid list parameters"),
        **_ERRORS,
    },
}
CREATE = {
    "description": "The answer holds the key, shown this once; log in with Authorization: Basic "
    "base64(<user>:<key>) or the headers x-odsl-email and x-odsl-key. A key's roles are at most its "
    "creator's (403 otherwise).",
    "requestBody": {"required": True, "content": {"application/json": {"schema": ApiKeyRequestSchema}}},
    "responses": {
        "400": docs.error("Invalid body: unknown role, bad user, bad or past expires"),
        "413": docs.error("Body over the limit"),
        "503": docs.error("The service has no secret to hash keys with"),
        **_ERRORS,
    },
}
ONE = {"responses": {"404": docs.error("No such live key in this tenant"), **_ERRORS}}


def _now() -> datetime:
    return datetime.now(UTC)


def _paging() -> tuple[int, int]:
    query = parse_list_query(query_params())
    if query.sort or query.search or query.filters or query.where or query.project:
        raise InvalidInput("API key lists take only _limit and _skip")
    return query.limit, query.skip


def _hasher() -> apikeys.KeyHasher:
    hasher = services().verifier.api_keys.hasher
    if hasher is None:
        raise NotConfigured("API keys need a secret to hash them with: set BATCHSVC_API_KEY_SECRET")
    return hasher


@blp.route("/v1")
class ApiKeys(MethodView):
    @blp.requires(ADMIN)
    @blp.doc(**LIST)
    @blp.response(200, ApiKeySchema(many=True))
    def get(self):
        """List the tenant's API keys (never the keys themselves)"""
        caller = current_principal()
        limit, skip = _paging()
        total, items = apikeys.list_keys(services().api_keys, caller.tenant, limit, skip)
        return list_response(total, items)

    @blp.requires(ADMIN)
    @blp.doc(**CREATE)
    @blp.response(201, ApiKeyCreatedSchema)
    def post(self):
        """Create an API key for a user of the tenant"""
        caller = current_principal()
        now = _now()
        request = apikeys.key_request(loads(read_body(MAX_REQUEST_BYTES)), caller, now, default_user=caller.user)
        created = apikeys.create_key(services().api_keys, _hasher(), caller.tenant, request, now, caller.user)
        return json_response(created, 201, {"Location": f"/api/apikey/v1/{created['_id']}"})


@blp.route("/v1/<keyid>", parameters=[_KEY_ID])
class ApiKeyById(MethodView):
    @blp.requires(ADMIN)
    @blp.doc(**ONE)
    @blp.response(200, ApiKeySchema)
    def get(self, keyid):
        """One API key of the tenant"""
        caller = current_principal()
        return json_response(apikeys.get_key(services().api_keys, caller.tenant, keyid))

    @blp.requires(ADMIN)
    @blp.doc(**ONE)
    @blp.response(204)
    def delete(self, keyid):
        """Revoke an API key: every worker refuses it within 5 seconds"""
        caller = current_principal()
        apikeys.revoke_key(services().api_keys, keyid, _now(), caller.tenant)
        return "", 204
