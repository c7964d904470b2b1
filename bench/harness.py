"""What the bench scripts share with the tests, from tests/support: scratch databases, the gunicorn harness.

The scripts run as `python bench/<script>.py`, so bench/ is on sys.path and tests/ is not: this
module puts tests/ there, once, and every bench script imports the shared pieces from here.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.gunicorn import LOOPBACK, Gunicorn, cpu_seconds  # noqa: E402
from support.scratch import connect, recreate_database, server_url  # noqa: E402

__all__ = ["LOOPBACK", "Gunicorn", "connect", "cpu_seconds", "recreate_database", "server_url"]
