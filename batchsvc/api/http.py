"""Request and response plumbing shared by the views: bodies, scope, the store, JSON."""

from __future__ import annotations

import re
import zlib

import orjson
from flask import Response, current_app, request

from batchsvc.api.errors import odsl_error
from batchsvc.core.batches import REJECTED, REPLAYED, Outcome
from batchsvc.core.documents import text_problem
from batchsvc.core.errors import InvalidInput, TooLarge
from batchsvc.core.identity import DEFAULT_ENVIRONMENT, ENVIRONMENT_PATTERN, SOURCES, Principal, Scope
from batchsvc.core.summaries import WARNING

ENVIRONMENT_HEADER = "x-odsl-environment"
_ENVIRONMENT = re.compile(ENVIRONMENT_PATTERN)
_CHUNK = 1 << 20


def settings():
    return current_app.extensions["batchsvc"].settings


def services():
    return current_app.extensions["batchsvc"]


def scope(caller: Principal) -> Scope:
    environment = request.headers.get(ENVIRONMENT_HEADER, DEFAULT_ENVIRONMENT)
    if not _ENVIRONMENT.match(environment):
        raise InvalidInput(f"{ENVIRONMENT_HEADER} must match {ENVIRONMENT_PATTERN.strip('^$')}")
    return Scope(tenant=caller.tenant, environment=environment)


def reader(caller: Principal):
    """The store's records of the caller's tenant and environment, on the request's session."""
    return services().store.reader(services().session(), scope(caller))


def history_reader(caller: Principal):
    """The caller's object history (versions, as-of reads), on the request's session."""
    return services().store.history_reader(services().session(), scope(caller))


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


def summary_response(outcome: Outcome, *, replay_status: int = 200) -> Response:
    """What a submitted batch answers (SPEC §3.7): 201 + summary + Location when something was
    written (a warning also says `x-odsl-failures`), 422 + the stored summary when nothing was;
    a replay `replay_status` (200) + the stored summary."""
    summary = outcome.summary
    if outcome.kind == REJECTED:
        return json_response(summary, 422, odsl_error(422, summary["message"]))
    if outcome.kind == REPLAYED and replay_status != 201:
        return json_response(summary, replay_status)
    headers = {"Location": f"/api/batch/v1/{summary['_id']}"}
    if summary["status"] == WARNING:
        headers["x-odsl-failures"] = str(len(summary["summary"]["failures"]))
    return json_response(summary, 201, headers)


def list_response(total: int, items: list) -> Response:
    return json_response(items, headers={"x-total-count": str(total)})


def query_params() -> dict[str, list[str]]:
    return request.args.to_dict(flat=False)


def check_request_text() -> None:
    """Query parameters and path values get the checks body strings get: a NUL or a lone
    surrogate is a 400 naming the parameter, never a database error."""
    values = [
        (f"query parameter {name[:64]!r}", text) for name, texts in request.args.lists() for text in (name, *texts)
    ]
    values += [
        (f"path segment {name!r}", text) for name, text in (request.view_args or {}).items() if isinstance(text, str)
    ]
    for where, text in values:
        problem = text_problem(text)
        if problem:
            raise InvalidInput(f"{where}: {problem.replace('keys or strings', 'parameters')}")
