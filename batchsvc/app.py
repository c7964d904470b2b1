"""The application factory: settings, database and store, token verifier, API, CLI commands."""

from __future__ import annotations

import os
from dataclasses import dataclass

from flask import Flask, g

from batchsvc.auth import ApiKeyVerifier, Authenticator, TokenVerifier
from batchsvc.config import Settings
from batchsvc.db import Database
from batchsvc.logs import configure_logging
from batchsvc.store import Store
from batchsvc.store.apikeys import ApiKeyStore


@dataclass
class Services:
    """What views need from the app: settings, credential verifier, database, its store and API keys."""

    settings: Settings
    verifier: Authenticator
    database: Database
    store: Store
    api_keys: ApiKeyStore

    def session(self):
        """The request's session, opened on first use and closed at teardown."""
        if "db_session" not in g:
            g.db_session = self.database.session()
        return g.db_session


def create_app(config: dict | None = None) -> Flask:
    """Wire the service: settings, database, token verifier, API, CLI commands."""
    app = Flask("batchsvc", instance_path=os.path.abspath("instance"))
    settings = Settings.from_env(**{"instance_path": app.instance_path, **(config or {})})
    configure_logging(settings.log_format)
    app.config["MAX_CONTENT_LENGTH"] = None  # bodies are limited while read (gzip included)
    database = Database(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    api_keys = ApiKeyStore(database)
    verifier = Authenticator(TokenVerifier(settings), ApiKeyVerifier(settings, api_keys.find))
    app.extensions["batchsvc"] = Services(settings, verifier, database, Store(database), api_keys)
    app.teardown_appcontext(_close_session)

    from batchsvc.api import init_api
    from batchsvc.cli import register_commands

    init_api(app)
    register_commands(app)
    _announce_dev_mode(app, settings)
    return app


def _announce_dev_mode(app: Flask, settings: Settings) -> None:
    if settings.dev and settings.effective_secret() and not settings.jwt_secret:
        from batchsvc.cli import dev_token

        app.logger.warning(
            "DEVELOPMENT MODE: tokens are signed with a built-in secret. Token:\n%s", dev_token(settings)
        )


def _close_session(_exc):
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
