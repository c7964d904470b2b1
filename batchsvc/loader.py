"""`batchsvc load`: send JSON or NDJSON files to the batch service in resumable batches (SPEC §13)."""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import random
import stat
import sys
import time
from email.utils import parsedate_to_datetime

import requests
from tqdm import tqdm

from batchsvc import __version__  # batchsvc/__init__.py imports no Flask or database code at import time

DEFAULT_BATCH_SIZE = 5000
MAX_BATCH_BYTES = 32 * 1024 * 1024  # a batch is cut early rather than pass half the service's 64 MiB body limit
GZIP_FROM_BYTES = 1024
RETRY_STATUSES = (429, 502, 503, 504)
MAX_WAIT_SECONDS = 120
BATCH_FIELDS = ("name", "service", "reason", "loader", "correlationId", "description", "history")
OK, FAILURES, USAGE, UNSENT = 0, 1, 2, 3

HELP = """\
Send JSON or NDJSON files to the batch service, --batch-size elements per batch.

Inputs: NDJSON (.ndjson/.jsonl: one element a line, read as a stream), JSON (.json: a VarBatch
object or an array of elements, read whole into memory: use NDJSON for big loads), either
gzipped (detected from the bytes), or - for standard input (NDJSON unless --format json).
Each batch id is a hash of the batch's body and its position (input number, batch number), so
running the same command again after an interruption replays the batches already applied (200)
and sends the rest. --report writes JSON lines, one per batch: input, batch, id, elements, http,
and summary (the service's batch summary) or error.

Exit codes: 0 all elements written; 1 some elements failed (summary status warning or failed);
2 usage or input error; 3 a batch the service did not take (retries exhausted, or refused
without a summary, e.g. 401, 409, 413): the load stops there.
"""


class InputError(Exception):
    """An input that cannot be read as JSON elements."""


class Unsent(Exception):
    """A batch the service did not take."""

    def __init__(self, message: str, http: int | None = None):
        super().__init__(message)
        self.http = http


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="batchsvc", description="batchsvc command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser(
        "load",
        help="send JSON/NDJSON files as batches",
        description=HELP,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    env = os.environ.get
    load.add_argument("files", nargs="+", metavar="FILE", help="input files; - is standard input")
    load.add_argument(
        "--url", default=env("BATCHSVC_URL"), help="service root, e.g. http://127.0.0.1:8000 (BATCHSVC_URL)"
    )
    load.add_argument("--token", default=env("BATCHSVC_TOKEN"), help="bearer token (BATCHSVC_TOKEN)")
    load.add_argument("--email", default=env("BATCHSVC_EMAIL"), help="API-key login: email (BATCHSVC_EMAIL)")
    load.add_argument("--api-key", default=env("BATCHSVC_API_KEY"), help="API-key login: key (BATCHSVC_API_KEY)")
    load.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="elements per batch (default 5000)")
    load.add_argument(
        "--format", choices=("auto", "json", "ndjson"), default="auto", help="input format (default: by name)"
    )
    load.add_argument("--name", help="batch name, in every batch")
    load.add_argument("--service", help="batch service, in every batch")
    load.add_argument("--reason", help="batch reason, in every batch")
    load.add_argument("--load-key", default="", help="mixed into every batch id: a new key sends the same data again")
    load.add_argument(
        "--retries", type=int, default=5, help="retries of a batch on 429/502/503/504 or no answer (default 5)"
    )
    load.add_argument("--report", metavar="FILE", help="write every batch's summary here as JSON lines (- for stdout)")
    args = parser.parse_args(argv)
    if not (args.url or "").startswith(("http://", "https://")):
        load.error("--url (or BATCHSVC_URL) is required: the service root, http://HOST:PORT or https://HOST")
    if not args.token and not (args.email and args.api_key):
        load.error("give --token (BATCHSVC_TOKEN) or both --email and --api-key")
    if args.batch_size < 1 or args.retries < 0:
        load.error("--batch-size must be at least 1 and --retries at least 0")
    missing = [name for name in args.files if name != "-" and not os.path.isfile(name)]
    if missing or args.files.count("-") > 1:
        load.error(f"cannot read {', '.join(missing) or '- twice'}")
    return args


class Source:
    """One input: its elements as compact JSON bytes, batch fields from a VarBatch file, progress."""

    def __init__(self, name: str, forced_format: str):
        self.label = "<stdin>" if name == "-" else name
        self.raw = sys.stdin.buffer if name == "-" else open(name, "rb")
        info = os.fstat(self.raw.fileno())
        self.size = info.st_size if stat.S_ISREG(info.st_mode) else None
        self.stream = gzip.GzipFile(fileobj=self.raw) if self.raw.peek(2)[:2] == b"\x1f\x8b" else self.raw
        self.format = forced_format if forced_format != "auto" else self._guess(name)
        self.fields, self.total = {}, None

    def _guess(self, name: str) -> str:
        base = name.lower().removesuffix(".gz")
        if base.endswith((".ndjson", ".jsonl")) or name == "-":
            return "ndjson"
        if base.endswith(".json"):
            return "json"
        return "json" if self.stream.peek(64).lstrip().startswith(b"[") else "ndjson"

    def elements(self):
        return self._ndjson() if self.format == "ndjson" else self._json()

    def _ndjson(self):
        for number, line in enumerate(self.stream, 1):
            line = line.strip()
            if line:
                strict_loads(line, f"{self.label}:{number}")
                yield line

    def _json(self):
        document = strict_loads(self.stream.read(), self.label)
        if isinstance(document, dict) and isinstance(document.get("elements"), list):
            self.fields = {key: document[key] for key in BATCH_FIELDS if document.get(key) is not None}
            document = document["elements"]
        if not isinstance(document, list):
            raise InputError(f"{self.label}: a JSON input must be a VarBatch object or an array of elements")
        self.total = len(document)
        for element in document:
            yield json.dumps(element, separators=(",", ":"), ensure_ascii=False).encode()

    def estimated_total(self, done: int) -> int | None:
        """Elements in the whole input, known for JSON, extrapolated from the bytes read for a file."""
        if self.total is not None or not self.size:
            return self.total
        position = self.raw.tell()
        return max(done, round(done * self.size / position)) if position else None

    def close(self):
        if self.raw is not sys.stdin.buffer:
            self.raw.close()


def strict_loads(text: bytes, where: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise InputError(f"{where}: not JSON ({exc})") from None


def batches(elements, size: int):
    batch, nbytes = [], 0
    for element in elements:
        if batch and (len(batch) == size or nbytes + len(element) > MAX_BATCH_BYTES):
            yield batch
            batch, nbytes = [], 0
        batch.append(element)
        nbytes += len(element) + 1
    if batch:
        yield batch


def batch_body(fields: dict, elements: list[bytes], load_key: str, position: str) -> tuple[str, bytes]:
    """The body and its id: a hash of the body and its position, the same on every run of the same load."""
    head = json.dumps({"_type": "VarBatch", **fields}, separators=(",", ":"), ensure_ascii=False).encode()
    rest = head[1:-1] + b',"elements":[' + b",".join(elements) + b"]}"
    digest = hashlib.sha256(f"{load_key}\x1f{position}\x1f".encode() + rest).hexdigest()
    batch_id = f"load-{digest[:32]}-{position}"  # ≤ 128 chars of A-Za-z0-9.-
    return batch_id, b'{"_id":"' + batch_id.encode() + b'",' + rest


class Client:
    """POSTs batches, retrying what may succeed later with exponential backoff."""

    def __init__(self, args, notify):
        root = args.url.rstrip("/").removesuffix("/api")
        self.endpoint, self.retries, self.notify = root + "/api/batch/v1", args.retries, notify
        self.http = requests.Session()
        if args.token:
            credentials = f"Bearer {args.token}"
        else:
            credentials = "Basic " + base64.b64encode(f"{args.email}:{args.api_key}".encode()).decode()
        self.http.headers.update({"Authorization": credentials, "User-Agent": f"batchsvc-load/{__version__}"})

    def send(self, body: bytes) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if len(body) >= GZIP_FROM_BYTES:
            body, headers["Content-Encoding"] = gzip.compress(body, compresslevel=5), "gzip"
        for attempt in range(self.retries + 1):
            try:
                response = self.http.post(self.endpoint, data=body, headers=headers, timeout=(10, 600))
                if response.status_code not in RETRY_STATUSES:
                    return response
                status, problem, wait = response.status_code, error_text(response), retry_after(response)
            except requests.RequestException as exc:  # no connection, timeout, a broken answer
                status, problem, wait = None, f"no answer ({exc.__class__.__name__}: {exc})", None
            if attempt == self.retries:
                raise Unsent(
                    f"{problem}; gave up after {attempt + 1} attempts (run the same command again to resume)", status
                )
            if wait is None:
                wait = min(2**attempt, MAX_WAIT_SECONDS) * random.uniform(0.75, 1.25)
            self.notify(f"retry {attempt + 1}/{self.retries} in {wait:.1f}s: {problem}")
            time.sleep(wait)
        raise AssertionError("unreachable")


def error_text(response: requests.Response) -> str:
    return response.headers.get("x-odsl-error") or f"[{response.status_code}] {response.text[:200]}"


def retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_WAIT_SECONDS)


class Display:
    """A progress bar per input on a terminal; one plain line per batch otherwise."""

    def __init__(self):
        self.tty, self.bar, self.done = sys.stderr.isatty(), None, 0

    def start(self, label: str):
        self.done = 0
        if self.tty:
            self.bar = tqdm(desc=label, unit="el", unit_scale=True, dynamic_ncols=True, file=sys.stderr)

    def line(self, text: str):
        (print if self.bar is None else self.bar.write)(text, file=sys.stderr)

    def batch(self, text: str, count: int, total: int | None, problem: bool):
        self.done += count
        if self.bar is None:
            return self.line(text)
        if problem:
            self.bar.write(text, file=sys.stderr)
        self.bar.total = total
        self.bar.update(count)

    def finish(self):
        if self.bar is not None:
            self.bar.total = self.bar.n
            self.bar.close()
            self.bar = None


def post_batch(client: Client, body: bytes) -> tuple[int, dict]:
    """The HTTP status and the batch summary (201 applied, 200 replayed, 422 all elements failed)."""
    response = client.send(body)
    try:
        summary = response.json()
    except ValueError:
        summary = None
    if response.status_code in (200, 201, 422) and isinstance(summary, dict) and "summary" in summary:
        return response.status_code, summary
    raise Unsent(f"refused: {error_text(response)}", response.status_code)


class Tally:
    """What the load did so far, for the closing line and the exit code."""

    def __init__(self):
        self.elements = self.batches = self.applied = self.replayed = self.failed = 0
        self.started = time.monotonic()

    def add(self, http: int, summary: dict, count: int) -> None:
        self.elements += count
        self.batches += 1
        self.applied += http == 201
        self.replayed += http == 200
        self.failed += count if summary.get("status") == "failed" else len(summary["summary"].get("failures") or {})

    def __str__(self):
        seconds = time.monotonic() - self.started
        return (
            f"loaded {self.elements} elements in {self.batches} batches ({self.applied} applied, {self.replayed} "
            f"replayed), {self.failed} elements failed, {seconds:.1f}s ({self.elements / max(seconds, 1e-3):.0f} elements/s)"
        )


def batch_line(entry: dict, seconds: float) -> str:
    summary = entry["summary"]
    text = (
        f"{entry['input']} batch {entry['batch']}: {entry['elements']} elements -> {entry['http']} "
        f"{summary.get('status')}: {summary.get('message')} [{entry['id']}] {seconds:.1f}s"
    )
    failures = list((summary["summary"].get("failures") or {}).items())
    if failures:
        text += "; failures: " + "; ".join(f"{key}: {why}" for key, why in failures[:3])
    return text + ("; ..." if len(failures) > 3 else "")


def load(args) -> int:
    display, tally, code = Display(), Tally(), OK
    client = Client(args, display.line)
    report = None
    if args.report:
        report = sys.stdout if args.report == "-" else open(args.report, "w")
    cli_fields = {key: value for key in ("name", "service", "reason") if (value := getattr(args, key))}
    name = None
    try:
        for number, name in enumerate(args.files, 1):
            source = Source(name, args.format)
            display.start(source.label)
            try:
                for index, elements in enumerate(batches(source.elements(), args.batch_size), 1):
                    fields = {"loader": "batchsvc load", **source.fields, **cli_fields}
                    batch_id, body = batch_body(fields, elements, args.load_key, f"{number}.{index}")
                    entry = {"input": source.label, "batch": index, "id": batch_id, "elements": len(elements)}
                    began = time.monotonic()
                    try:
                        entry["http"], entry["summary"] = post_batch(client, body)
                    except Unsent as exc:
                        entry.update(http=exc.http, error=str(exc))
                        raise Unsent(f"{source.label} batch {index} [{batch_id}]: {exc}") from None
                    finally:
                        if report and "http" in entry:
                            report.write(json.dumps(entry) + "\n")
                            report.flush()
                    tally.add(entry["http"], entry["summary"], len(elements))
                    problem = entry["summary"].get("status") != "success"
                    code = FAILURES if problem else code
                    total = source.estimated_total(display.done + len(elements))
                    display.batch(batch_line(entry, time.monotonic() - began), len(elements), total, problem)
            finally:
                display.finish()
                source.close()
    except (InputError, OSError, EOFError) as exc:  # OSError, EOFError: unreadable file, broken gzip
        where = "" if isinstance(exc, InputError) else f"{name}: "
        display.line(f"batchsvc load: {where}{exc} (stopped there; {tally.batches} batches were sent before)")
        return USAGE
    except Unsent as exc:
        display.line(f"batchsvc load: stopped at {exc}")
        return UNSENT
    except KeyboardInterrupt:
        display.line("batchsvc load: interrupted. Run the same command again to resume.")
        return 130
    finally:
        if report and report is not sys.stdout:
            report.close()
    display.line(str(tally))
    return code


def main(argv=None) -> int:
    return load(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
