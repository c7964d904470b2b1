"""Every request's id, metrics and log line (the access log), taken at the HTTP edge."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from batchsvc import metrics
from batchsvc.api.http import settings
from batchsvc.api.request_ids import REQUEST_ID_HEADER, request_id
from batchsvc.core.batches import REPLAYED, Outcome
from batchsvc.logs import FIELDS, REQUEST_LOGGER

_log = logging.getLogger(REQUEST_LOGGER)


def init_observability(app: Flask) -> None:
    """Request ids always; metrics and the request log unless settings turn them off."""
    services = app.extensions["batchsvc"]
    metrics.track_pool(services.database)
    if services.settings.observe_requests:
        app.before_request(_start)
        app.after_request(_finish)
    else:
        app.before_request(_take_request_id)
        app.after_request(_echo_request_id)


def _start() -> None:
    g.request_started = time.perf_counter()
    request_id()
    metrics.start_pool_sampler()


def _take_request_id() -> None:
    request_id()  # a before_request hook must return None: a value would become the response


def _echo_request_id(response):
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


def _finish(response):
    # The request's objects once, not through the proxies on every access: this runs per request.
    state, req = g._get_current_object(), request._get_current_object()
    rid = state.get("request_id") or request_id()
    response.headers[REQUEST_ID_HEADER] = rid
    seconds = time.perf_counter() - state.get("request_started", time.perf_counter())
    rule = req.url_rule
    route = rule.rule if rule is not None else metrics.UNMATCHED_ROUTE
    status = response.status_code
    metrics.observe_request(req.method, route, status, seconds)
    fields = {
        "request_id": rid,
        "method": req.method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
    }
    caller = state.get("principal")
    if caller is not None:
        fields["tenant"] = caller.tenant
        fields["user"] = caller.user
    batch = state.get("batch_log")
    if batch is not None:
        fields.update(batch)
    level = logging.ERROR if status >= 500 else logging.INFO
    if _log.isEnabledFor(level):
        # makeRecord + handle: Logger.log would also walk the stack for the caller's file and line.
        _log.handle(_log.makeRecord(_log.name, level, __name__, 0, "request", (), None, extra={FIELDS: fields}))
    return response


def note_batch_request(batch_id: str, elements: int) -> None:
    """What the request log says about a batch before it is applied (kept if applying fails)."""
    g.batch_log = {"batch_id": batch_id, "elements": elements}


def note_batch(outcome: Outcome, seconds: float) -> None:
    """An applied or replayed batch: its metrics, and its status and counts for the request log."""
    summary = outcome.summary
    failed = len(summary["summary"]["failures"])
    size = summary["size"]
    replayed = outcome.kind == REPLAYED
    g.batch_log = {
        "batch_id": summary["_id"],
        "batch_status": summary["status"],
        "elements": size,
        "elements_ok": size - failed,
        "elements_failed": failed,
        "replayed": replayed,
    }
    if not settings().observe_requests:
        return
    if replayed:
        metrics.observe_replay()
    else:
        metrics.observe_batch(summary["status"], size, seconds)


def count_retry(cause: str) -> None:
    """`apply_batch`'s on_retry: one database retry, by cause."""
    if settings().observe_requests:
        metrics.count_retry(cause)
