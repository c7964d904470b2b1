"""Log lines, one JSON object (or one plain line) each, with the request id on every record."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from queue import SimpleQueue

import orjson
from flask import g, has_request_context
from pythonjsonlogger.orjson import OrjsonFormatter

from batchsvc.config import LOG_FORMATS, ConfigError

APP_LOGGER = "batchsvc"  # the package's loggers, Flask's app.logger included, log through it
REQUEST_LOGGER = "batchsvc.request"
# A request line is a record with a `fields` dict (observe.py builds it, in the order written):
# request_id, method, route, status, duration_ms, tenant, user, batch_id, batch_status,
# elements, elements_ok, elements_failed, replayed. Other records may carry a `request_id`.
FIELDS = "fields"

_second: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 UTC with milliseconds; the part up to the second is worked out once a second."""
    global _second
    second = int(record.created)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int(record.msecs):03d}Z"


class JsonFormatter(OrjsonFormatter):
    """{"time","level","logger","message", request fields…, "exc_info" with the stack trace}."""

    def __init__(self):
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        return _timestamp(record)

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        """A request line's fields are known: taken as they are, without scanning the record."""
        fields = record.__dict__.get(FIELDS)
        if fields is None:
            super().add_fields(log_data, record, message_dict)
            return
        log_data["time"] = record.asctime
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data.update(fields)
        log_data.update(message_dict)  # exc_info, when there is one


class TextFormatter(logging.Formatter):
    """`time level logger message key=value…`, the stack trace (if any) on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        fields = record.__dict__.get(FIELDS)
        if fields is None:
            request_id = record.__dict__.get("request_id")
            fields = {"request_id": request_id} if request_id is not None else {}
        parts.extend(f"{name}={_plain(value)}" for name, value in fields.items() if value is not None)
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
        if "request_id" not in record.__dict__ and FIELDS not in record.__dict__ and has_request_context():
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


def _flush(stream) -> None:
    """Flush a stream that may be gone by now (a test's captured stdout, closed since)."""
    try:
        stream.flush()
    except (ValueError, OSError):
        pass


class QueuedStreamHandler(StandardStreamHandler):
    """Request lines handed to a writer thread of their own, which formats and writes them.

    Writing in the request thread would hold the handler's lock across a write system call,
    during which the thread lets go of the GIL and then waits for it behind the other request
    threads, and so would every thread logging after it (a lock convoy). Here a request thread
    only queues its record. The writer flushes whenever the queue runs empty: at once when the
    service is quiet, one write for many lines under load. If stdout stops taking lines, up to
    MAX_QUEUED wait and the rest are dropped and counted, rather than stalling requests.
    """

    MAX_QUEUED = 100_000

    def __init__(self, name: str):
        super().__init__(name)
        self._queue: SimpleQueue | None = None
        self._pid: int | None = None
        self._dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        queue = self._queue if self._pid == os.getpid() else self._start()
        if queue.qsize() >= self.MAX_QUEUED:
            self._dropped += 1
            return
        queue.put((self.stream, record))  # the stdout of the moment the line was logged, not of its writing

    def _start(self) -> SimpleQueue:
        """A queue and writer per process (threads do not survive a fork), on the first line."""
        with _start_lock:
            if self._pid != os.getpid():
                self._queue, self._pid = SimpleQueue(), os.getpid()
                threading.Thread(target=self._write, args=(self._queue,), name="batchsvc-request-log", daemon=True).start()  # fmt: skip
        return self._queue

    def _write(self, queue: SimpleQueue) -> None:
        stream = self.stream
        while (item := queue.get()) is not _STOP:
            if isinstance(item, threading.Event):  # flush() waits for the lines queued before it
                _flush(stream)
                item.set()
                continue
            stream, record = item
            try:
                stream.write(self.format(record) + self.terminator)
                if queue.empty():
                    stream.flush()
            except Exception:
                self.handleError(record)
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                logging.getLogger(APP_LOGGER).warning("%d request log lines dropped: stdout did not keep up", dropped)
        _flush(stream)

    def flush(self) -> None:
        """Return once every line queued so far is written (tests, and logging's shutdown at exit)."""
        if self._pid != os.getpid():
            return
        written = threading.Event()
        self._queue.put(written)
        written.wait(timeout=5)

    def close(self) -> None:
        if self._pid == os.getpid():
            self.flush()
            self._queue.put(_STOP)
            self._pid = None
        super().close()


_STOP = object()
_start_lock = threading.Lock()


def flush_request_log() -> None:
    """Wait until the request lines logged so far are on stdout."""
    for handler in logging.getLogger(REQUEST_LOGGER).handlers:
        handler.flush()


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
                handler.close()
        handler = QueuedStreamHandler(stream) if name == REQUEST_LOGGER else StandardStreamHandler(stream)
        handler.setFormatter(make_formatter(log_format))
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
