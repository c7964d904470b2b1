"""Throwaway databases for the tests and the benchmark: created, migrated, dropped."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import psycopg2
from alembic import command
from alembic.config import Config
from psycopg2 import sql
from sqlalchemy.engine import make_url

from batchsvc.config import database_url_from_env, libpq_url

ROOT = Path(__file__).resolve().parents[2]


def server_url() -> str:
    """The PostgreSQL server the tests and the benchmark use: DATABASE_URL's, or the embedded
    one (as the service picks it)."""
    return database_url_from_env(instance_path=str(ROOT / "instance"))


def connect(url: str, *, autocommit: bool = False):
    """A psycopg2 connection of its own to the database of `url` (any SQLAlchemy-style URL)."""
    connection = psycopg2.connect(libpq_url(url))
    connection.autocommit = autocommit
    return connection


def alembic_config(url: str) -> Config:
    """The repository's Alembic configuration, pointed at `url`."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` on the server of `server_url`, ending its sessions first."""
    with closing(connect(server_url, autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def recreate_database(server_url: str, name: str, *, migrate: bool = False) -> str:
    """Drop and create database `name` on the server of `server_url` (migrated to head when
    asked); return its URL."""
    drop_database(server_url, name)
    with closing(connect(server_url, autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    if migrate:
        command.upgrade(alembic_config(url), "head")
    return url
