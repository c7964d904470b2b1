"""Flask commands: mint tokens for the configured secret, print the development token, manage API keys, prune history."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import orjson
from flask import Flask, current_app
from flask.cli import AppGroup

from batchsvc.auth import mint_token
from batchsvc.core import apikeys, history
from batchsvc.core.errors import DomainError
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

    app.cli.add_command(apikey_commands)
    app.cli.add_command(history_commands)


@click.group("apikey", cls=AppGroup)
def apikey_commands():
    """Create, list and revoke API keys."""


def _services():
    return current_app.extensions["batchsvc"]


@apikey_commands.command("create")
@click.option("--tenant", required=True, help="tenant the key belongs to")
@click.option("--user", required=True, help="email the key logs in with")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(apikeys.ROLES), help="repeatable")
@click.option("--name", default=None, help="what the key is for")
@click.option("--expires", default=None, help="ISO-8601 date or date-time it stops working (default: never)")
def create_apikey(tenant, user, roles, name, expires):
    """Create a key and print it (on stdout, shown only this once); its id goes to stderr."""
    services = _services()
    hasher = services.verifier.api_keys.hasher
    if hasher is None:
        raise click.ClickException("API keys need a secret to hash them with: set BATCHSVC_API_KEY_SECRET")
    if not tenant or len(tenant) > 256:
        raise click.ClickException("--tenant must be 1-256 characters")
    now = datetime.now(UTC)
    try:
        request = apikeys.key_request({"user": user, "roles": list(roles), "name": name, "expires": expires}, None, now)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    created = apikeys.create_key(services.api_keys, hasher, tenant, request, now, created_by=None)
    click.echo(created["key"])
    click.echo(
        f"API key {created['_id']} for {created['user']} in tenant {tenant} ({', '.join(created['roles'])}); "
        "store it now: it is not shown again",
        err=True,
    )


@apikey_commands.command("list")
@click.option("--tenant", required=True, help="tenant whose live keys to list")
def list_apikeys(tenant):
    """Print the tenant's live keys, one JSON object a line (never the key or its hash)."""
    _total, keys = apikeys.list_keys(_services().api_keys, tenant, limit=1_000_000, skip=0)
    for key in keys:
        click.echo(orjson.dumps(key))


@apikey_commands.command("revoke")
@click.argument("keyid")
def revoke_apikey(keyid):
    """Revoke a key by its id; every worker refuses it within 5 seconds."""
    try:
        apikeys.revoke_key(_services().api_keys, keyid, datetime.now(UTC))
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked API key {keyid}", err=True)


@click.group("history", cls=AppGroup)
def history_commands():
    """History of objects and data: retention."""


@history_commands.command("prune")
@click.option("--before", required=True, help="ISO-8601 date or date-time: drop history superseded before it")
def prune_history(before):
    """Drop object versions and data corrections superseded before --before, and change logs of
    older batches, in every tenant and environment. Current objects and data are never touched;
    as-of reads before that date may answer 410 afterwards, and older batches can no longer be
    rolled back."""
    try:
        cutoff = history.parse_prune_date(before)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    pruned = _services().store.prune_history(cutoff)
    click.echo(
        f"pruned {pruned['versions']} object versions, {pruned['dataVersions']} curve, matrix and event states, "
        f"{pruned['seriesVersions']} chunks of corrected observations and {pruned['changeLogs']} batch change logs "
        f"superseded before {cutoff.isoformat()}",
        err=True,
    )
    click.echo(orjson.dumps(pruned))
