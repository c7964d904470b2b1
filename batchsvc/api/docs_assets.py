"""The docs page's Swagger UI files, served from the flask-swagger-ui package so /docs works offline."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, abort, send_from_directory

from batchsvc.api.access import open_to_all

# swagger-ui-dist's files as the package ships them (swagger-ui-bundle.js, swagger-ui.css, ...).
DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
# The package's version names the Swagger UI it bundles; in the URL, an upgrade never meets a stale cache.
SWAGGER_UI_VERSION = version("flask-swagger-ui")
ASSETS_URL = f"/api/batch/docs/assets/{SWAGGER_UI_VERSION}/"
_ONE_YEAR = 365 * 24 * 3600

# A plain Flask blueprint: these files are not API operations and stay out of the OpenAPI document.
blp = Blueprint("docs_assets", __name__)


@blp.get("/api/batch/docs/assets/<release>/<path:filename>")
@open_to_all
def swagger_ui_asset(release: str, filename: str):
    """One Swagger UI file; no token, like the docs page and openapi.json (safe_join refuses ../)."""
    if release != SWAGGER_UI_VERSION:
        abort(404, f"no Swagger UI {release[:32]!r} here; this service ships {SWAGGER_UI_VERSION}")
    response = send_from_directory(DIST, filename, max_age=_ONE_YEAR)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response
