"""batchsvc: the Batch service of the market-data platform."""

from __future__ import annotations

import os
from importlib.metadata import version

__version__ = version("batchsvc")


def build_id() -> str:
    """The build this process runs: BATCHSVC_BUILD (set by the deploy pipeline) or 'dev'."""
    return os.environ.get("BATCHSVC_BUILD", "dev")


def create_app(config: dict | None = None):
    """The service as a Flask app (batchsvc.app). Imported on call: `import batchsvc` stays
    light for the loader CLI (batchsvc.loader), a plain HTTP client that needs no Flask."""
    from batchsvc.app import create_app as build

    return build(config)
