"""Batch routes: build info, submit a batch, list, get and delete summaries."""

from __future__ import annotations

import hashlib
import time
import uuid

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError

from batchsvc import __version__, build_id
from batchsvc.api import docs, observe
from batchsvc.api.http import (
    check_source,
    json_response,
    list_response,
    principal,
    query_params,
    read_body,
    scope,
    services,
    settings,
)
from batchsvc.api.schemas import BatchSummarySchema, BuildInfoSchema, VarBatchSchema
from batchsvc.core import summaries
from batchsvc.core.batches import CREATED, DEFAULT_REASON, REPLAYED, BatchRequest, apply_batch
from batchsvc.core.documents import MAX_DEPTH, check_shape, first_bad_element, loads
from batchsvc.core.errors import InvalidInput
from batchsvc.core.identity import READ, WRITE
from batchsvc.core.queries import parse_list_query

blp = Blueprint("batch", __name__, url_prefix="/api/batch", description="Submit batches and manage their summaries")
_envelope = VarBatchSchema()
_FLAGS = ("_replace", "_atomic")


def _flag(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", ""):
        raise InvalidInput(f"{name} must be true or false, got {raw[:32]!r}")
    return value in ("true", "1")


def _batch_request(raw: bytes) -> BatchRequest:
    body = loads(raw)
    if isinstance(body, list):
        body = {"elements": body}
    elif not isinstance(body, dict):
        raise InvalidInput("body must be a VarBatch object or a JSON array of elements")
    problem = check_shape(body)
    if problem:
        raise InvalidInput(f"body has {problem}{_where(body)}")
    try:
        envelope = _envelope.load(body)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"body": exc.messages}
        detail = "; ".join(f"{name}: {_first(problem)}" for name, problem in sorted(messages.items()))
        raise InvalidInput(f"invalid batch envelope: {detail}", errors={"json": exc.messages}) from None
    replace, atomic = _flag("_replace"), _flag("_atomic")
    reason = request.args.get("_reason") or envelope.get("reason") or DEFAULT_REASON
    if len(reason) > 256:
        raise InvalidInput("_reason must be at most 256 characters")
    digest = hashlib.sha256(raw)
    digest.update(f"\x1f{replace}\x1f{atomic}\x1f{reason}".encode())
    return BatchRequest(
        id=envelope.get("id") or str(uuid.uuid4()),
        elements=envelope["elements"],
        body_hash=digest.hexdigest(),
        reason=reason,
        name=envelope.get("name"),
        service=envelope.get("service"),
        loader=envelope.get("loader"),
        correlation_id=envelope.get("correlation_id"),
        description=envelope.get("description"),
        history=envelope.get("history"),
        replace=replace,
        atomic=atomic,
    )


def _first(problem) -> str:
    """The first message of a marshmallow error entry (a list, or a dict for nested fields)."""
    while isinstance(problem, (list, dict)) and problem:
        problem = problem[0] if isinstance(problem, list) else next(iter(problem.values()))
    return str(problem)


def _where(body: dict) -> str:
    found = first_bad_element(body, lambda element: check_shape(element, max_depth=MAX_DEPTH - 2))
    return f" (element #{found[0]})" if found else ""


def submit():
    caller = principal(WRITE)
    where = scope(caller)
    config = settings()
    batch = _batch_request(read_body(config.max_body_bytes))
    observe.note_batch_request(batch.id, batch.size)
    started = time.perf_counter()
    outcome = apply_batch(
        services().database.transaction,
        where,
        caller,
        batch,
        max_elements=config.max_elements,
        attempts=config.retry_attempts,
        on_retry=observe.count_retry,
    )
    observe.note_batch(outcome, time.perf_counter() - started)
    if outcome.kind == CREATED:
        return json_response(outcome.summary, 201, {"Location": f"/api/batch/v1/{batch.id}"})
    return json_response(outcome.summary, 200 if outcome.kind == REPLAYED else 422)


def _list(source: str):
    caller = principal(READ)
    query = parse_list_query(query_params())
    total, items = summaries.list_summaries(services().session(), scope(caller), check_source(source), query)
    return list_response(total, items)


def _get(batch_id: str, source: str = "all"):
    caller = principal(READ)
    return json_response(summaries.get_summary(services().session(), scope(caller), batch_id, check_source(source)))


def _delete(batch_id: str, source: str = "all"):
    caller = principal(WRITE)
    summaries.delete_summary(services().session(), scope(caller), caller, batch_id, check_source(source))
    return "", 204


@blp.route("")
class BatchService(MethodView):
    @blp.response(200, BuildInfoSchema)
    def get(self):
        """Build information of the batch service"""
        return json_response({"service": "batch", "release": "v1", "version": __version__, "build": build_id()})

    @blp.doc(**docs.SUBMIT)
    @blp.response(201, BatchSummarySchema)
    def post(self):
        """Submit a batch (the odsl SDK's route)"""
        return submit()


@blp.route("/v1")
class Batches(MethodView):
    @blp.doc(**docs.LIST)
    @blp.response(200, BatchSummarySchema(many=True))
    def get(self):
        """List batch summaries"""
        return _list("all")

    @blp.doc(**docs.SUBMIT)
    @blp.response(201, BatchSummarySchema)
    def post(self):
        """Submit a batch"""
        return submit()


@blp.route("/v1/<ref>", parameters=[docs.BATCH_REF])
class SourceOrSummary(MethodView):
    @blp.doc(**docs.LIST_OR_GET)
    def get(self, ref):
        """List the summaries of a source (private, public, all), or get one summary by id"""
        if ref in ("private", "public", "all"):
            return _list(ref)
        return _get(ref)

    @blp.doc(**docs.SUBMIT_TO_SOURCE)
    @blp.response(201, BatchSummarySchema)
    def post(self, ref):
        """Submit a batch to a source"""
        check_source(ref)
        return submit()

    @blp.doc(**docs.DELETE)
    @blp.response(204)
    def delete(self, ref):
        """Delete a batch summary (the objects it wrote stay)"""
        return _delete(ref)


@blp.route("/v1/<source>/<path:batch_id>", parameters=[docs.SOURCE, docs.BATCH_ID])
class SummaryInSource(MethodView):
    @blp.doc(**docs.GET)
    @blp.response(200, BatchSummarySchema)
    def get(self, source, batch_id):
        """Get one batch summary"""
        return _get(batch_id, source)

    @blp.doc(**docs.DELETE)
    @blp.response(204)
    def delete(self, source, batch_id):
        """Delete a batch summary (the objects it wrote stay)"""
        return _delete(batch_id, source)
