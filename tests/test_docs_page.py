"""The docs page works on a closed network: Swagger UI's files come from the service, proven in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from conftest import assert_error

from batchsvc.api.docs_assets import ASSETS_URL, DIST

ASSETS = {
    "swagger-ui-bundle.js": {"text/javascript", "application/javascript"},
    "swagger-ui-standalone-preset.js": {"text/javascript", "application/javascript"},
    "swagger-ui.css": {"text/css"},
}
LOOPBACK = "127.0.0.1"
BROWSER_SECONDS = 120
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


# --- the asset route, through the test client ------------------------------------------------


def test_docs_page_loads_its_files_from_the_service(client):
    page = client.get("/api/batch/docs")
    assert page.status_code == 200
    sources = _page_resources(page.get_data(as_text=True))
    assert sorted(sources) == sorted(ASSETS_URL + name for name in ASSETS)
    assert b"cdn." not in page.get_data() and b"https://" not in page.get_data()


def test_assets_are_the_package_files_with_content_types_and_caching(client):
    for name, content_types in ASSETS.items():
        response = client.get(ASSETS_URL + name)  # no Authorization header: the docs are public
        assert response.status_code == 200, name
        assert response.mimetype in content_types, (name, response.mimetype)
        assert response.get_data() == (DIST / name).read_bytes()
        cache = response.cache_control
        assert cache.public and cache.immutable and cache.max_age == 365 * 24 * 3600, response.headers
        assert response.headers["ETag"]
        again = client.get(ASSETS_URL + name, headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304
    assert_error(client.get("/api/batch/v1"), 401)  # the API itself still needs a token


def test_unknown_asset_or_traversal_is_json_404(client):
    assert (DIST.parent / "flask_swagger_ui.py").is_file()  # a real file one level up, never to be served
    for path in (
        ASSETS_URL + "nope.js",
        ASSETS_URL + "../flask_swagger_ui.py",
        ASSETS_URL + "%2e%2e/flask_swagger_ui.py",
        ASSETS_URL + "..%2fflask_swagger_ui.py",
        ASSETS_URL + "../../../../../../etc/passwd",
        "/api/batch/docs/assets/0.0.1/swagger-ui.css",  # a release this service does not ship
    ):
        response = client.get(path)
        assert_error(response, 404)
        assert b"import " not in response.get_data() and b"root:" not in response.get_data(), path


# --- the page in a real browser, against a real gunicorn -------------------------------------


def test_docs_page_renders_offline_in_chromium(live_server):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is needed for this test: apt-get update && apt-get install -y chromium")
    page_url = live_server.url + "/api/batch/docs"
    spec = requests.get(live_server.url + "/api/batch/openapi.json", timeout=10).json()
    html = requests.get(page_url, timeout=10).text
    for resource in _page_resources(html):
        assert urlsplit(urljoin(page_url, resource)).hostname == LOOPBACK, resource

    with tempfile.TemporaryDirectory(prefix="batchsvc-chromium-") as scratch:
        started = time.monotonic()
        dom, net_log = _render(chromium, page_url, Path(scratch))
        seconds = time.monotonic() - started

    # The page's own requests: the document, the three files and openapi.json, all on loopback.
    fetched = _page_requests(net_log)
    assert {urlsplit(url).hostname for url in fetched} == {LOOPBACK}, fetched
    paths = {urlsplit(url).path for url in fetched}
    assert {ASSETS_URL + name for name in ASSETS} | {"/api/batch/docs", "/api/batch/openapi.json"} <= paths, paths

    # Swagger UI ran: one opblock per operation of openapi.json, with its method, path and summary.
    rendered = _operations(dom)
    expected = {
        (method.upper(), path, operation["summary"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }
    assert ("POST", "/api/batch/v1", "Submit a batch") in rendered, rendered
    assert ("POST", "/api/batch", "Submit a batch (the odsl SDK's route)") in rendered
    assert rendered == expected
    assert seconds < BROWSER_SECONDS


def _render(chromium: str, url: str, scratch: Path) -> tuple[str, dict]:
    """The DOM after Swagger UI ran, and Chromium's net log of every request it made."""
    net_log = scratch / "net-log.json"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={scratch / 'profile'}",
        # A closed network: no name resolves except loopback, so a CDN reference could not load.
        f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {LOOPBACK}",
        f"--log-net-log={net_log}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    browser = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a hung browser is ended whole
        env={**os.environ, "HOME": str(scratch)},
    )
    try:
        dom, errors = browser.communicate(timeout=BROWSER_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.communicate()
        pytest.fail(f"chromium did not finish within {BROWSER_SECONDS} s")
    assert browser.returncode == 0, errors[-3000:]
    return dom, _read_net_log(net_log)


def _read_net_log(path: Path) -> dict:
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        return json.loads(text.rstrip().rstrip(",") + "]}")


def _page_requests(net_log: dict) -> list[str]:
    """URLs the page asked for: requests of a loopback frame or initiator (the browser's own have neither)."""
    start_job = net_log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in net_log["events"]:
        params = event.get("params") or {}
        if event["type"] == start_job and "url" in params:
            top_frame_site = params.get("network_isolation_key", "").split(" ")[0]
            initiator = params.get("initiator", "")
            if LOOPBACK in (urlsplit(top_frame_site).hostname, urlsplit(initiator).hostname):
                urls.append(params["url"])
    return urls


class _Resources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.found.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.found.append(attrs["href"])


def _page_resources(html: str) -> list[str]:
    """Every script src and link href of a page."""
    parser = _Resources()
    parser.feed(html)
    return parser.found


class _Operations(HTMLParser):
    """(method, path, summary) of each Swagger UI operation block (class opblock)."""

    def __init__(self):
        super().__init__()
        self.operations = set()
        self._current = None
        self._reading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "opblock" in classes:
            self._finish()
            self._current = {"method": "", "path": "", "summary": ""}
        elif self._current is not None:
            if "opblock-summary-method" in classes:
                self._reading = "method"
            elif "opblock-summary-description" in classes:
                self._reading = "summary"
            elif "opblock-summary-path" in classes:
                self._current["path"] = attrs.get("data-path", "")

    def handle_endtag(self, tag):
        self._reading = None

    def handle_data(self, data):
        if self._current is not None and self._reading:
            self._current[self._reading] += data

    def _finish(self):
        if self._current is not None:
            self.operations.add((self._current["method"], self._current["path"], self._current["summary"]))
        self._current = None

    def close(self):
        super().close()
        self._finish()


def _operations(dom: str) -> set[tuple[str, str, str]]:
    parser = _Operations()
    parser.feed(dom)
    parser.close()
    return parser.operations
