"""Flask commands: mint tokens for the configured secret, print the development token."""

from __future__ import annotations

import click
from flask import Flask, current_app

from batchsvc.auth import mint_token
from batchsvc.core.identity import ADMIN, READ, WRITE


def dev_token(settings) -> str:
    """A day-long admin token for the development secret (dev mode only)."""
    return mint_token(
        settings.effective_secret(),
        tenant="dev",
        user="dev@localhost",
        roles=[ADMIN, WRITE, READ],
        tenant_claim=settings.tenant_claim,
    )


def register_commands(app: Flask) -> None:
    @app.cli.command("token")
    @click.option("--tenant", default="dev", show_default=True, help="tenant claim value")
    @click.option("--user", default="dev@localhost", show_default=True, help="user (sub claim)")
    @click.option(
        "--role",
        "roles",
        multiple=True,
        default=[WRITE],
        show_default=True,
        type=click.Choice([READ, WRITE, ADMIN]),
        help="role to grant (repeatable)",
    )
    @click.option("--ttl", default=86400, show_default=True, help="lifetime in seconds")
    def token(tenant, user, roles, ttl):
        """Mint an HS256 token for the configured secret."""
        settings = current_app.extensions["batchsvc"].settings
        secret = settings.effective_secret()
        if not secret:
            raise click.ClickException("no HS256 secret configured (BATCHSVC_JWT_SECRET, or BATCHSVC_DEV=1)")
        click.echo(
            mint_token(secret, tenant=tenant, user=user, roles=roles, tenant_claim=settings.tenant_claim, ttl=ttl)
        )

    @app.cli.command("dev-token")
    def dev_token_command():
        """Print the development-mode admin token."""
        settings = current_app.extensions["batchsvc"].settings
        if not settings.dev:
            raise click.ClickException("dev-token needs BATCHSVC_DEV=1")
        click.echo(dev_token(settings))
