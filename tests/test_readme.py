"""The README's curl examples run, in order, against a real gunicorn and all succeed."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

from conftest import make_token

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    """The README's sh blocks that call the API, in order (TOKEN/BASE set by the test)."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL)
    return [
        "\n".join(line for line in block.splitlines() if not line.startswith(("TOKEN=", "BASE=")))
        for block in blocks
        if "curl " in block
    ]


def test_readme_has_the_documented_examples():
    commands = readme_commands()
    assert sum(block.count("curl ") for block in commands) >= 10
    assert any("-X POST" in c and "00006d91-0fa0-481a-8118-7d6c1f4dba8f" in c for c in commands)
    assert any("/api/data/v1/private/PWR:price" in c for c in commands)


def test_readme_curl_examples_succeed_against_gunicorn(live_server):
    token = make_token(tenant=f"readme-{uuid.uuid4().hex[:8]}", user="readme@example.com")
    script = "\n".join(
        ["set -e", f"TOKEN={token}", f"BASE={live_server.url}", 'curl() { command curl --fail-with-body "$@"; echo; }']
        + readme_commands()
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=README.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert '"service":"batch"' in out
    assert "x-total-count: 0" in out.lower()
    assert '"status":"success"' in out
    assert '"example":"property"' in out
    assert '"data":[{"time":"2021-07-02","value":49.8}]' in out
    assert '"tenor":"M02","value":56.3' in out
    assert '"data":[{"time":"2021-07-01","value":51.2}]' in out  # between(…, Europe/Amsterdam)
    assert (
        '"_id":"PWR:fwd:M01","_type":"VarTimeSeries","tenor":"M01","data":[{"time":"2021-07-01","value":55.1},{"time":"2021-07-02","value":54.7}]'
        in out
    )
    assert '"tenor":"M02","data":[{"time":"2021-07-02","value":56.0}]' in out
    assert "x-total-count: 2" in out.lower() and '"_id":"PWR:fwd","_type":"VarCurve"' in out
    assert '"_id":"o-2"' in out
    assert (
        '"data":[{"time":"2022-11-04T00:00:00+00:00","value":12.5},{"time":"2022-11-07T00:00:00+00:00","value":12.6}]'
        in out
    )
    assert "204" in out
    assert '[{"_id":"power-2021-07-01","name":"POWER_DAILY","status":"success","summary":{"failures":{}}}]' in out
    assert '[{"_id":"o-1","eventtime":"2021-07-01T06:00:00Z","mw":400}]' in out  # _filter, _project
    assert '"_id":"PRICE-2"' in out and '"_batch":"load-' in out  # written by `batchsvc load`
