"""Alembic migrations: upgrade head matches the models exactly, and downgrade undoes it all."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import recreate_database, server_url
from sqlalchemy import create_engine, inspect
from support import scratch
from support.scratch import alembic_config

from batchsvc import models  # noqa: F401 - registers the tables on Base.metadata
from batchsvc.config import normalise_database_url
from batchsvc.db import Base

DATABASE = "batchsvc_migr_a"
TENANT_WIDE = {"api_keys", "tenants"}
# Packed series rows start with the tenant's compact surrogate (tenants.key), then what names
# the series within the tenant: its environment (series), or its id, which belongs to one (chunks).
SURROGATE_KEYED = {
    "series": ["tenant_key", "environment"],
    "series_chunks": ["tenant_key", "series_id"],
    "series_versions": ["tenant_key", "series_id"],
}


@pytest.fixture
def empty_database():
    url = recreate_database(DATABASE)
    yield normalise_database_url(url)
    scratch.drop_database(server_url(), DATABASE)


def schema_diff(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, Base.metadata)


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_upgrade_matches_models_and_downgrade_removes_everything(empty_database):
    config = alembic_config(empty_database)
    engine = create_engine(empty_database)
    try:
        command.upgrade(config, "head")
        assert tables(engine) == set(Base.metadata.tables) | {"alembic_version"}
        assert schema_diff(engine) == []
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        script = ScriptDirectory.from_config(config)
        assert len(script.get_heads()) == 1
        assert current == script.get_current_head()

        # SPEC §8: every primary key starts with (tenant, environment), for Citus distribution;
        # tenant-wide tables (API keys work in every environment) start with the tenant.
        inspector = inspect(engine)
        for table in Base.metadata.tables:
            key = ["tenant"] if table in TENANT_WIDE else SURROGATE_KEYED.get(table, ["tenant", "environment"])
            assert inspector.get_pk_constraint(table)["constrained_columns"][: len(key)] == key, table

        command.downgrade(config, "base")
        assert tables(engine) - {"alembic_version"} == set()

        command.upgrade(config, "head")
        assert schema_diff(engine) == []
    finally:
        engine.dispose()
