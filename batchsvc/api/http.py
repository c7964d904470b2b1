"""Request and response plumbing shared by the views: bodies, scope, principal, JSON."""

from __future__ import annotations

import re
import uuid
import zlib

import orjson
from flask import Response, current_app, g, request

from batchsvc.core.errors import InvalidInput, TooLarge
from batchsvc.core.identity import Principal, Scope

ENVIRONMENT_HEADER = "x-odsl-environment"
DEFAULT_ENVIRONMENT = "production"
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SOURCES = ("private", "public", "all")
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CHUNK = 1 << 20


def settings():
    return current_app.extensions["batchsvc"].settings


def services():
    return current_app.extensions["batchsvc"]


def request_id() -> str:
    """This request's id: the caller's X-Request-Id when it is 1-128 of A-Za-z0-9._:-, else a new UUID."""
    rid = g.get("request_id")
    if rid is None:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        rid = g.request_id = sent if _REQUEST_ID.fullmatch(sent) else str(uuid.uuid4())
    return rid


def principal(role: str) -> Principal:
    """The verified caller, who must hold `role` (401 without a valid token, 403 without the role)."""
    if "principal" not in g:
        g.principal = services().verifier.verify(request.headers.get("Authorization"))
    g.principal.require(role)
    return g.principal


def scope(caller: Principal) -> Scope:
    environment = request.headers.get(ENVIRONMENT_HEADER, DEFAULT_ENVIRONMENT)
    if not _ENVIRONMENT.match(environment):
        raise InvalidInput(f"{ENVIRONMENT_HEADER} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
    return Scope(tenant=caller.tenant, environment=environment)


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(SOURCES)}; got {source[:64]!r}")
    return source


def read_body(max_bytes: int) -> bytes:
    """The request body, gunzipped when sent so, refused past `max_bytes` without reading it all."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise TooLarge(f"request body of {length} bytes is over the limit of {max_bytes} bytes")
    stream = request.stream
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", ""):
        raise InvalidInput(f"unsupported Content-Encoding {encoding[:32]!r}; send identity or gzip")
    gzipped = encoding in ("gzip", "x-gzip")
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    parts, size, raw_size = [], 0, 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        raw_size += len(chunk)
        if raw_size > max_bytes:
            raise TooLarge(f"request body is over the limit of {max_bytes} bytes")
        if decoder is not None:
            try:
                chunk = decoder.decompress(chunk, max_bytes + 1 - size)
            except zlib.error:
                raise InvalidInput("request body is not valid gzip") from None
            if decoder.unconsumed_tail:
                raise TooLarge(f"decompressed request body is over the limit of {max_bytes} bytes")
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"request body is over the limit of {max_bytes} bytes")
        parts.append(chunk)
    if decoder is not None and not decoder.eof:
        raise InvalidInput("request body is not valid gzip (truncated stream)")
    return b"".join(parts)


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(orjson.dumps(payload), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def list_response(total: int, items: list) -> Response:
    return json_response(items, headers={"x-total-count": str(total)})


def query_params() -> dict[str, list[str]]:
    return request.args.to_dict(flat=False)
