"""Migrations build the schema from empty, and the models say the same as the migrations."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import plugin.models  # noqa: F401
from plugin import migrate
from plugin.db import Base
from tests import services as real


def test_upgrade_from_empty_matches_the_models(tmp_path):
    url, drop = real.create_database(str(tmp_path))  # runs every migration from empty
    try:
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(sa.inspect(connection).get_table_names())
        engine.dispose()
        assert diff == [], f"models and migrations differ: {diff}"
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        migrate.upgrade(url)  # idempotent: a second release run changes nothing
    finally:
        drop()
