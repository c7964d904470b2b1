"""The loader CLI `batchsvc load` (SPEC §13) run as a subprocess against a live gunicorn."""

from __future__ import annotations

import base64
import fcntl
import gzip
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from conftest import db_rows, make_token, start_live_server

BATCHSVC = Path(sys.executable).with_name("batchsvc")  # the console script `pip install` made


@pytest.fixture(scope="module")
def server(db_url):
    server = start_live_server(db_url, workers=2)
    yield server
    server.stop()


@pytest.fixture
def tenant(request, db_url):
    name = "loader-" + request.node.name.removeprefix("test_")[:40]
    for table in ("objects", "batch_summaries"):
        db_rows(db_url, f"DELETE FROM {table} WHERE tenant = %s", (name,))
    return name


def write_ndjson(path: Path, count: int, first: int = 0, pad: int = 0) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as out:
        for i in range(first, first + count):
            out.write(json.dumps({"_id": f"obj-{i:07d}", "value": i, "pad": "x" * pad}) + "\n")
    return path


def loader_env(url: str, tenant: str) -> dict:
    return {**os.environ, "BATCHSVC_URL": url, "BATCHSVC_TOKEN": make_token(tenant=tenant)}


def run_load(url: str, tenant: str, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BATCHSVC, "load", *args],
        env=loader_env(url, tenant),
        input=stdin,
        capture_output=True,
        text=stdin is None,
        timeout=300,
    )


def objects(db_url: str, tenant: str) -> tuple[int, int | None, int | None]:
    """(objects, lowest _version, highest _version) of the tenant, read from the database."""
    return db_rows(db_url, "SELECT count(*), min(version), max(version) FROM objects WHERE tenant = %s", (tenant,))[0]


def summaries(db_url: str, tenant: str) -> int:
    return db_rows(db_url, "SELECT count(*) FROM batch_summaries WHERE tenant = %s", (tenant,))[0][0]


def report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ndjson_and_gz_files_load_and_a_rerun_replays(server, db_url, tenant, tmp_path):
    plain = write_ndjson(tmp_path / "a.ndjson", 30_000)
    done = run_load(server.url, tenant, plain, "--report", tmp_path / "r1.jsonl", "--name", "DAILY", "--reason", "r1")
    assert done.returncode == 0, done.stderr
    assert objects(db_url, tenant) == (30_000, 1, 1)
    first = report(tmp_path / "r1.jsonl")
    assert [(e["batch"], e["elements"], e["http"], e["summary"]["status"]) for e in first] == [
        (i, 5000, 201, "success") for i in range(1, 7)
    ]
    assert {(e["summary"]["name"], e["summary"]["reason"]) for e in first} == {("DAILY", "r1")}
    # Not a terminal: one plain line per batch and a closing line, no progress bar.
    lines = done.stderr.splitlines()
    assert len([line for line in lines if " batch " in line and "-> 201 success" in line]) == 6
    assert "\r" not in done.stderr and "loaded 30000 elements in 6 batches (6 applied, 0 replayed)" in lines[-1]

    again = run_load(server.url, tenant, plain, "--report", tmp_path / "r2.jsonl", "--name", "DAILY", "--reason", "r1")
    assert again.returncode == 0, again.stderr
    assert [(e["id"], e["http"]) for e in report(tmp_path / "r2.jsonl")] == [(e["id"], 200) for e in first]
    assert objects(db_url, tenant) == (30_000, 1, 1) and summaries(db_url, tenant) == 6

    # Ids come from content and position, not the file name: the same content gzipped replays too.
    same = plain.read_bytes()
    (tmp_path / "same.ndjson.gz").write_bytes(gzip.compress(same))
    gz = run_load(server.url, tenant, tmp_path / "same.ndjson.gz", "--name", "DAILY", "--reason", "r1")
    assert gz.returncode == 0 and "(0 applied, 6 replayed)" in gz.stderr
    other = write_ndjson(tmp_path / "b.ndjson.gz", 30_000, first=30_000)
    gz = run_load(server.url, tenant, other, "--report", tmp_path / "r3.jsonl")
    assert gz.returncode == 0, gz.stderr
    assert {e["http"] for e in report(tmp_path / "r3.jsonl")} == {201}
    assert objects(db_url, tenant) == (60_000, 1, 1) and summaries(db_url, tenant) == 12


def test_a_killed_load_resumes_and_writes_every_object_once(server, db_url, tenant, tmp_path):
    path = write_ndjson(tmp_path / "big.ndjson", 30_000)
    cmd = [BATCHSVC, "load", path, "--batch-size", "1000"]
    loader = subprocess.Popen(cmd, env=loader_env(server.url, tenant), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while summaries(db_url, tenant) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    loader.kill()  # after its first batch landed, maybe mid-way through the next
    loader.communicate()
    assert loader.returncode == -9
    time.sleep(2)  # a batch in flight when the loader died still commits (or not) on the server
    landed, stored = db_rows(
        db_url,
        "SELECT (SELECT count(*) FROM batch_summaries WHERE tenant = %(t)s), (SELECT count(*) FROM objects WHERE tenant = %(t)s)",
        {"t": tenant},
    )[0]
    assert 1 <= landed < 30 and stored == landed * 1000

    resumed = run_load(server.url, tenant, path, "--batch-size", "1000", "--report", tmp_path / "r.jsonl")
    assert resumed.returncode == 0, resumed.stderr
    codes = [e["http"] for e in report(tmp_path / "r.jsonl")]
    assert codes == [200] * landed + [201] * (30 - landed)
    assert objects(db_url, tenant) == (30_000, 1, 1) and summaries(db_url, tenant) == 30


class Stub(ThreadingHTTPServer):
    """A loopback HTTP server that answers each POST by the next step of its script, then by `then`.

    A step is "forward" (pass the request to `upstream`, the live gunicorn), "drop" (close the
    connection without answering) or (status, headers[, body]): an answer of its own, by default
    an error.
    """

    def __init__(self, script: list, then="forward", upstream: str | None = None):
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.script, self.then, self.upstream, self.seen = list(script), then, upstream, []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class StubHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        stub = self.server
        stub.seen.append((self.path, dict(self.headers), body, time.monotonic()))
        step = stub.script.pop(0) if stub.script else stub.then
        if step == "drop":
            self.close_connection = True
            return
        if step == "forward":
            names = ("Authorization", "Content-Type", "Content-Encoding")
            answer = requests.post(
                stub.upstream + self.path, data=body, headers={n: self.headers[n] for n in names if self.headers[n]}
            )
            status, payload, headers = answer.status_code, answer.content, {"Content-Type": "application/json"}
        else:
            status, headers, *answer = step
            error = {"code": status, "status": "stub", "message": "stub says no", "errors": {}}
            payload = json.dumps(answer[0] if answer else error).encode()
            headers = {"Content-Type": "application/json", "x-odsl-error": f"[{status}] stub says no", **headers}
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_503_429_and_a_dropped_connection_are_retried(server, db_url, tenant, tmp_path):
    stub = Stub([(503, {"Retry-After": "2"}), (429, {}), "drop"], upstream=server.url)
    path = write_ndjson(tmp_path / "a.ndjson", 12_000)
    try:
        done = run_load(stub.url, tenant, path, "--report", tmp_path / "r.jsonl")
    finally:
        stub.shutdown()
    assert done.returncode == 0, done.stderr
    assert objects(db_url, tenant) == (12_000, 1, 1)
    assert [e["http"] for e in report(tmp_path / "r.jsonl")] == [201, 201, 201]
    assert "retry 1/5 in 2.0s: [503] stub says no" in done.stderr and "retry 2/5" in done.stderr
    assert "retry 3/5" in done.stderr and "ConnectionError" in done.stderr
    times = [seen[3] for seen in stub.seen]
    assert len(times) == 6 and times[1] - times[0] >= 1.9  # Retry-After honoured
    assert len({seen[2] for seen in stub.seen[:4]}) == 1  # the same body every attempt


def test_a_service_down_for_good_stops_with_exit_3_and_a_rerun_finishes(server, db_url, tenant, tmp_path):
    stub = Stub(["forward", "forward"], then=(503, {"Retry-After": "0"}), upstream=server.url)
    path = write_ndjson(tmp_path / "a.ndjson", 20_000)
    try:
        failed = run_load(stub.url, tenant, path, "--retries", "2", "--report", tmp_path / "r1.jsonl")
    finally:
        stub.shutdown()
    assert failed.returncode == 3
    assert "[503] stub says no; gave up after 3 attempts" in failed.stderr and "batch 3" in failed.stderr
    assert [(e["http"], "error" in e) for e in report(tmp_path / "r1.jsonl")] == [
        (201, False),
        (201, False),
        (503, True),
    ]
    assert objects(db_url, tenant) == (10_000, 1, 1)

    done = run_load(server.url, tenant, path, "--report", tmp_path / "r2.jsonl")
    assert done.returncode == 0, done.stderr
    assert [e["http"] for e in report(tmp_path / "r2.jsonl")] == [200, 200, 201, 201]
    assert objects(db_url, tenant) == (20_000, 1, 1)


def test_api_key_login_gzip_and_batch_fields(tmp_path):
    summary = {"_id": "x", "status": "success", "message": "ok", "summary": {"failures": {}}}
    stub = Stub([], then=(201, {}, summary))
    path = write_ndjson(tmp_path / "a.ndjson", 10, pad=100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSVC_")}
    env.update(BATCHSVC_URL=stub.url + "/api/", BATCHSVC_EMAIL="me@acme.com")
    try:
        args = [BATCHSVC, "load", path, "--api-key", "k3y", "--service", "ETL", "--reason", "nightly"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    finally:
        stub.shutdown()
    assert done.returncode == 0, done.stderr
    [(where, headers, body, _)] = stub.seen
    assert where == "/api/batch/v1"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"me@acme.com:k3y").decode()
    assert headers["Content-Encoding"] == "gzip"
    batch = json.loads(gzip.decompress(body))
    assert batch["_id"].startswith("load-") and batch["_id"].endswith("-1.1")
    assert (batch["_type"], batch["service"], batch["reason"], batch["loader"]) == (
        "VarBatch",
        "ETL",
        "nightly",
        "batchsvc load",
    )
    assert [e["_id"] for e in batch["elements"]] == [f"obj-{i:07d}" for i in range(10)]


def test_bad_elements_exit_1_and_the_report_names_them(server, db_url, tenant, tmp_path):
    path = tmp_path / "bad.ndjson"
    path.write_text('{"_id":"ok-1"}\n{"value":1}\n{"_id":"ok-2"}\n{"value":2}\n[3]\n')
    done = run_load(server.url, tenant, path, "--batch-size", "3", "--report", tmp_path / "r.jsonl")
    assert done.returncode == 1, done.stderr
    first, second = report(tmp_path / "r.jsonl")
    assert (first["http"], first["summary"]["status"], list(first["summary"]["summary"]["failures"])) == (
        201,
        "warning",
        ["#1"],
    )
    assert (second["http"], second["summary"]["status"], len(second["summary"]["summary"]["failures"])) == (
        422,
        "failed",
        2,
    )
    assert "failures: #1:" in done.stderr and "3 elements failed" in done.stderr.splitlines()[-1]
    assert objects(db_url, tenant) == (2, 1, 1)


def test_usage_and_input_errors_exit_2(server, db_url, tenant, tmp_path):
    good = write_ndjson(tmp_path / "a.ndjson", 3)
    no_url = subprocess.run([BATCHSVC, "load", good], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert no_url.returncode == 2 and "--url" in no_url.stderr
    missing = run_load(server.url, tenant, tmp_path / "nope.ndjson")
    assert missing.returncode == 2 and "nope.ndjson" in missing.stderr
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"_id":"a"}\n{"_id": oops}\n')
    broken = run_load(server.url, tenant, bad)
    assert broken.returncode == 2 and f"{bad}:2: not JSON" in broken.stderr
    (tmp_path / "n.json").write_text('{"_id": NaN}')
    nan = run_load(server.url, tenant, tmp_path / "n.json")
    assert nan.returncode == 2 and "NaN is not JSON" in nan.stderr
    (tmp_path / "t.ndjson.gz").write_bytes(gzip.compress(b'{"_id":"t"}\n')[:20])
    truncated = run_load(server.url, tenant, tmp_path / "t.ndjson.gz")
    assert truncated.returncode == 2 and "t.ndjson.gz: Compressed file ended" in truncated.stderr
    (tmp_path / "s.json").write_text('"text"')
    scalar = run_load(server.url, tenant, tmp_path / "s.json")
    assert scalar.returncode == 2 and "VarBatch object or an array" in scalar.stderr
    assert objects(db_url, tenant)[0] == 0


def test_stdin_and_json_documents(server, db_url, tenant, tmp_path):
    ndjson = write_ndjson(tmp_path / "a.ndjson", 7000).read_bytes()
    piped = run_load(server.url, tenant, "-", "--name", "PIPED", stdin=ndjson)
    assert piped.returncode == 0, piped.stderr
    assert b"<stdin> batch 2: 2000 elements -> 201 success" in piped.stderr
    assert b"(0 applied, 2 replayed)" in run_load(server.url, tenant, "-", "--name", "PIPED", stdin=ndjson).stderr
    fresh = run_load(server.url, tenant, "-", "--name", "PIPED", "--load-key", "again", stdin=ndjson)
    assert fresh.returncode == 0 and b"(2 applied, 0 replayed)" in fresh.stderr  # a new key: new batches
    gz_array = gzip.compress(json.dumps([{"_id": "arr-1"}, {"_id": "arr-2"}]).encode())
    array = run_load(server.url, tenant, "-", "--format", "json", stdin=gz_array)
    assert array.returncode == 0, array.stderr
    varbatch = tmp_path / "batch.json"
    varbatch.write_text(json.dumps({"_type": "VarBatch", "name": "FROM_FILE", "elements": [{"_id": "vb-1"}]}, indent=2))
    document = run_load(server.url, tenant, varbatch, "--service", "ETL")
    assert document.returncode == 0, document.stderr
    # the --load-key run applied the 7000 again, as new batches that found nothing to change (SPEC §12)
    assert objects(db_url, tenant) == (7003, 1, 1)
    unchanged = db_rows(
        db_url,
        "SELECT (doc->'counts'->'objects'->>'unchanged')::int FROM batch_summaries WHERE tenant = %s AND name = 'PIPED'",
        (tenant,),
    )
    assert sorted(n for (n,) in unchanged) == [0, 0, 2000, 5000]
    names = db_rows(
        db_url,
        "SELECT doc->>'name', doc->>'service', count(*) FROM batch_summaries WHERE tenant = %s GROUP BY 1, 2 ORDER BY 1",
        (tenant,),
    )
    assert names == [("FROM_FILE", "ETL", 1), ("PIPED", None, 4), (None, None, 1)]


def peak_rss_kb(url: str, tenant: str, path: Path) -> int:
    """The loader's peak resident set, in KiB, as the kernel accounts it to the parent that waited for it.

    A small Python process runs it: a child's maxrss starts at its parent's size at fork, so
    forking it straight from pytest would report pytest's own footprint.
    """
    probe = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    done = subprocess.run(
        [sys.executable, "-c", probe, BATCHSVC, "load", path],
        env=loader_env(url, tenant),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_memory_stays_flat_in_file_size(server, db_url, tenant, tmp_path):
    small = peak_rss_kb(server.url, tenant, write_ndjson(tmp_path / "small.ndjson", 10, pad=300))
    path = write_ndjson(tmp_path / "big.ndjson", 200_000, first=100, pad=300)
    size_kb = path.stat().st_size // 1024
    big = peak_rss_kb(server.url, tenant, path)
    print(f"loader peak RSS: {small} KiB for 10 elements, {big} KiB for 200,000 ({size_kb} KiB of NDJSON)")
    assert objects(db_url, tenant)[0] == 200_010
    # Holding the file would take its size as bytes, several times that as parsed objects; a batch is ~2 MiB.
    assert big - small < size_kb // 4 and big < size_kb


def test_progress_bar_on_a_terminal(server, db_url, tenant, tmp_path):
    path = write_ndjson(tmp_path / "a.ndjson", 12_000)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # a 120-column terminal
    loader = subprocess.Popen(
        [BATCHSVC, "load", path, "--batch-size", "2000"],
        env=loader_env(server.url, tenant),
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the loader closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    text = screen.decode(errors="replace")
    assert loader.wait(timeout=60) == 0, text
    assert "el/s" in text and "100%|" in text and "12.0k/12.0k" in text and "\r" in text
    assert "batch 1:" not in text  # a bar, not a line per batch
    assert objects(db_url, tenant) == (12_000, 1, 1)


def test_the_loader_imports_neither_flask_nor_the_database_code():
    probe = "import sys, batchsvc.loader; print(sorted(m for m in ('flask', 'sqlalchemy', 'psycopg2', 'batchsvc.db') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"
