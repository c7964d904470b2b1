"""The HTTP edge: flask-smorest Api, blueprints, error rendering, response compression."""

from __future__ import annotations

import gzip

from flask import Flask, request
from flask_smorest import Api

from batchsvc.api import apikeys, batch, data, docs_assets, health, objects
from batchsvc.api.access import authenticate, check_declarations
from batchsvc.api.errors import register_error_handlers
from batchsvc.api.http import check_request_text
from batchsvc.api.observe import init_observability
from batchsvc.api.schemas import ErrorSchema, ObjectVersionSchema, VarBatchSchema

_MIN_GZIP_BYTES = 1024


def init_api(app: Flask) -> Api:
    app.config.update(
        API_TITLE="batchsvc",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/batch",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs_assets.ASSETS_URL,  # served here, not from a CDN: works offline
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                    "apiKeyBasic": {"type": "http", "scheme": "basic", "description": "base64(<email>:<API key>)"},
                    "apiKeyEmail": {"type": "apiKey", "in": "header", "name": "x-odsl-email"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "x-odsl-key"},
                }
            },
            "security": [{"bearer": []}, {"apiKeyBasic": []}, {"apiKeyEmail": [], "apiKey": []}],
        },
    )
    api = _Api(app)
    api.spec.components.schema("VarBatch", schema=VarBatchSchema)
    api.spec.components.schema("ObjectVersion", schema=ObjectVersionSchema)
    for blueprint in (health.blp, batch.blp, objects.blp, data.blp, data.events_blp, apikeys.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(docs_assets.blp)
    check_declarations(app)
    app.before_request(authenticate)  # first: anonymous callers learn nothing else
    app.before_request(check_request_text)
    register_error_handlers(app)
    init_observability(app)  # before the gzip hook: after_request hooks run last-registered first
    app.after_request(_gzip_response)
    return api


class _Api(Api):
    ERROR_SCHEMA = ErrorSchema  # documents the error body's requestId


def _gzip_response(response):
    """Honour Accept-Encoding: gzip for JSON bodies worth compressing."""
    if (
        response.direct_passthrough
        or response.status_code < 200
        or "Content-Encoding" in response.headers
        or request.accept_encodings["gzip"] <= 0
        or response.mimetype != "application/json"
    ):
        return response
    data = response.get_data()
    if len(data) < _MIN_GZIP_BYTES:
        return response
    response.set_data(gzip.compress(data, compresslevel=5))
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response
