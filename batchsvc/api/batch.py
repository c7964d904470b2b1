"""Batch routes: build info, submit a batch, list, get and delete summaries, roll a batch back."""

from __future__ import annotations

import time

from flask import request
from flask.views import MethodView

from batchsvc import __version__, build_id
from batchsvc.api import docs, observe
from batchsvc.api.access import Blueprint, current_principal
from batchsvc.api.http import (
    check_source,
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
from batchsvc.api.schemas import BatchSummarySchema, BuildInfoSchema
from batchsvc.core import history, summaries
from batchsvc.core.batches import BatchRequest, Outcome, apply_batch, parse_flag, read_batch_request
from batchsvc.core.identity import READ, WRITE
from batchsvc.core.queries import parse_list_query

blp = Blueprint("batch", __name__, url_prefix="/api/batch", description="Submit batches and manage their summaries")


def run_batch(caller, batch: BatchRequest) -> Outcome:
    """Apply a batch for the caller in its scope, with the configured limits, observed (metrics, log)."""
    config = settings()
    observe.note_batch_request(batch.id, batch.size)
    started = time.perf_counter()
    outcome = apply_batch(
        services().store.batch_transaction(scope(caller)),
        caller,
        batch,
        max_elements=config.max_elements,
        attempts=config.retry_attempts,
        on_retry=observe.count_retry,
    )
    observe.note_batch(outcome, time.perf_counter() - started)
    return outcome


def submit():
    batch = read_batch_request(
        read_body(settings().max_body_bytes),
        replace=request.args.get("_replace"),
        atomic=request.args.get("_atomic"),
        reason=request.args.get("_reason"),
    )
    return summary_response(run_batch(current_principal(), batch))


def _list(source: str):
    query = parse_list_query(query_params())
    total, items = summaries.list_summaries(reader(current_principal()), check_source(source), query)
    return list_response(total, items)


def _get(batch_id: str, source: str = "all"):
    return json_response(summaries.get_summary(reader(current_principal()), batch_id, check_source(source)))


def _delete(batch_id: str, source: str = "all"):
    caller = current_principal()
    summaries.delete_summary(reader(caller), caller, batch_id, check_source(source))
    return "", 204


@blp.route("")
class BatchService(MethodView):
    @blp.requires(READ)
    @blp.response(200, BuildInfoSchema)
    def get(self):
        """Build information of the batch service"""
        return json_response({"service": "batch", "release": "v1", "version": __version__, "build": build_id()})

    @blp.requires(WRITE)
    @blp.doc(**docs.SUBMIT)
    @blp.response(201, BatchSummarySchema)
    def post(self):
        """Submit a batch (the odsl SDK's route)"""
        return submit()


@blp.route("/v1")
class Batches(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.LIST)
    def get(self):
        """List batch summaries"""
        return _list("all")

    @blp.requires(WRITE)
    @blp.doc(**docs.SUBMIT)
    @blp.response(201, BatchSummarySchema)
    def post(self):
        """Submit a batch"""
        return submit()


@blp.route("/v1/<ref>", parameters=[docs.BATCH_REF])
class SourceOrSummary(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.LIST_OR_GET)
    def get(self, ref):
        """List the summaries of a source (private, public, all), or get one summary by id"""
        if ref in ("private", "public", "all"):
            return _list(ref)
        summaries.check_query(parse_list_query(query_params()))  # checked either way: documented for both
        return _get(ref)

    @blp.requires(WRITE)
    @blp.doc(**docs.SUBMIT_TO_SOURCE)
    @blp.response(201, BatchSummarySchema)
    def post(self, ref):
        """Submit a batch to a source"""
        check_source(ref)
        return submit()

    @blp.requires(WRITE)
    @blp.doc(**docs.DELETE)
    @blp.response(204)
    def delete(self, ref):
        """Delete a batch summary (the objects it wrote stay)"""
        return _delete(ref)


@blp.route("/v1/<source>/<path:batch_id>", parameters=[docs.SOURCE, docs.BATCH_ID])
class SummaryInSource(MethodView):
    @blp.requires(READ)
    @blp.doc(**docs.GET)
    @blp.response(200, BatchSummarySchema)
    def get(self, source, batch_id):
        """Get one batch summary"""
        return _get(batch_id, source)

    @blp.requires(WRITE)
    @blp.doc(**docs.DELETE)
    @blp.response(204)
    def delete(self, source, batch_id):
        """Delete a batch summary (the objects it wrote stay)"""
        return _delete(batch_id, source)


@blp.route("/v1/<batch_id>/rollback", parameters=[docs.BATCH_ID])
class BatchRollback(MethodView):
    @blp.requires(WRITE)
    @blp.doc(**docs.ROLLBACK)
    @blp.response(201, BatchSummarySchema)
    def post(self, batch_id):
        """Undo what a batch changed (a batch of its own, service rollback)"""
        caller = current_principal()
        outcome = history.rollback_batch(
            services().store.batch_transaction(scope(caller)),
            caller,
            batch_id,
            force=parse_flag("_force", request.args.get("_force")),
            reason=request.args.get("_reason"),
            attempts=settings().retry_attempts,
        )
        return summary_response(outcome)
