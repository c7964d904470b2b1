"""Log lines, one JSON object (or one plain line) each, with the request id on every record."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson
from flask import g, has_request_context
from pythonjsonlogger.orjson import OrjsonFormatter

from batchsvc.config import LOG_FORMATS, ConfigError

APP_LOGGER = "batchsvc"  # the package's loggers, Flask's app.logger included, log through it
REQUEST_LOGGER = "batchsvc.request"
# The fields a request line may carry, in the order the text format writes them.
FIELDS = (
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "tenant",
    "user",
    "batch_id",
    "batch_status",
    "elements",
    "elements_ok",
    "elements_failed",
    "replayed",
)


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(OrjsonFormatter):
    """{"time","level","logger","message", request fields…, "exc_info" with the stack trace}."""

    def __init__(self):
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        return _timestamp(record)


class TextFormatter(logging.Formatter):
    """`time level logger message key=value…`, the stack trace (if any) on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                parts.append(f"{name}={_plain(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _plain(value) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\r\t\\'):
        return orjson.dumps(text).decode()
    return text


def make_formatter(log_format: str = "json") -> logging.Formatter:
    """The formatter of BATCHSVC_LOG_FORMAT (also gunicorn.conf.py's, for gunicorn's own lines)."""
    log_format = (log_format or "json").strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"BATCHSVC_LOG_FORMAT must be json or text, got {log_format!r}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


class RequestIdFilter(logging.Filter):
    """Stamps every record logged while a request is handled with that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__ and has_request_context():
            record.request_id = g.get("request_id")
        return True


class StandardStreamHandler(logging.StreamHandler):
    """A handler on whatever sys.stdout (or sys.stderr) is when a record is written: pytest swaps them."""

    def __init__(self, name: str):
        self.stream_name = name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, _value):
        pass  # always the current sys.stdout / sys.stderr


def configure_logging(log_format: str) -> None:
    """Request lines (the access log) to stdout; the package's other records (warnings, errors
    with their stack trace, the development-mode notice) to stderr, beside gunicorn's error log.

    Both in `log_format`, both stamped with the request id. Idempotent: an app created again
    (tests) replaces the handlers of the previous one.
    """
    for name, stream in ((REQUEST_LOGGER, "stdout"), (APP_LOGGER, "stderr")):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, StandardStreamHandler):
                logger.removeHandler(handler)
        handler = StandardStreamHandler(stream)
        handler.setFormatter(make_formatter(log_format))
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
