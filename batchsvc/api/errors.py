"""The one place that maps errors to HTTP and renders every error response."""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from flask import Flask, Response, has_request_context
from werkzeug.exceptions import HTTPException

from batchsvc.api.request_ids import request_id
from batchsvc.auth import AuthError
from batchsvc.core.errors import (
    Busy,
    Conflict,
    ConnectionLost,
    DomainError,
    Forbidden,
    Gone,
    InvalidInput,
    NotConfigured,
    NotFound,
    TooLarge,
    Unavailable,
    Unprocessable,
)
from batchsvc.store import DATABASE_DOWN, as_unavailable

log = logging.getLogger(__name__)

DOMAIN_STATUS = {
    InvalidInput: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    TooLarge: 413,
    Unprocessable: 422,
    Busy: 503,
    Unavailable: 503,
    NotConfigured: 503,
}


def odsl_error(status: int, message: str) -> dict[str, str]:
    """The `x-odsl-error: [code] message` header every non-2xx carries (the SDKs print it)."""
    one_line = " ".join(message.split())[:1000].encode("latin-1", "replace").decode("latin-1")
    return {"x-odsl-error": f"[{status}] {one_line}"}


def error_response(status: int, message: str, errors: dict | None = None, headers: dict | None = None) -> Response:
    """`{"code","status","message","errors","requestId"}` plus the `x-odsl-error` header the SDKs print."""
    phrase = HTTPStatus(status).phrase
    body = {"code": status, "status": phrase, "message": message, "errors": errors or {}}
    if has_request_context():
        body["requestId"] = request_id()
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    response.headers.update(odsl_error(status, message))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_exception(exc: HTTPException) -> Response:
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    status = exc.code or 500
    # webargs reports unparseable parameters as 422; they are plain bad requests to a client.
    if status == 422 and messages is not None:
        status = 400
    message = exc.description if isinstance(exc.description, str) else HTTPStatus(status).phrase
    if status == 413:
        message = "request body is too large"
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    return error_response(status, message, messages or {}, headers)


def _domain_error(exc: DomainError) -> Response:
    status = next(code for kind, code in DOMAIN_STATUS.items() if isinstance(exc, kind))
    headers = None
    if isinstance(exc, Busy):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, Unavailable):
        headers = {"Retry-After": "5"}
    return error_response(status, exc.message, exc.errors, headers)


def _auth_error(exc: AuthError) -> Response:
    detail = str(exc).replace('"', "'")
    return error_response(
        401,
        str(exc),
        headers={"WWW-Authenticate": f'Bearer realm="batchsvc", error="invalid_token", error_description="{detail}"'},
    )


def _database_down(exc: Exception) -> Response:
    problem = as_unavailable(exc)
    log.warning("database unavailable (%s): %s", exc.__class__.__name__, problem.message)
    return _domain_error(problem)


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_exception(exc)
    if isinstance(exc, DATABASE_DOWN):
        return _database_down(exc)
    log.exception("unhandled error")
    return error_response(500, "internal server error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(AuthError, _auth_error)
    for kind in (*DATABASE_DOWN, ConnectionLost):
        app.register_error_handler(kind, _database_down)
    app.register_error_handler(Exception, _unexpected)
