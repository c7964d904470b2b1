"""Throwaway databases for the tests and the benchmark: created, migrated, dropped."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import psycopg2
from alembic import command
from alembic.config import Config
from psycopg2 import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    """The repository's Alembic configuration, pointed at `url`."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def _admin(server_url: str):
    connection = psycopg2.connect(
        make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    connection.autocommit = True
    return connection


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` on the server of `server_url`, ending its sessions first."""
    with closing(_admin(server_url)) as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def recreate_database(server_url: str, name: str, *, migrate: bool = False) -> str:
    """Drop and create database `name` on the server of `server_url` (migrated to head when
    asked); return its URL."""
    drop_database(server_url, name)
    with closing(_admin(server_url)) as admin, admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    if migrate:
        command.upgrade(alembic_config(url), "head")
    return url
