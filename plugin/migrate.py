"""Apply Alembic migrations from code (the Procfile's release line, the dev command, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config as AlembicConfig

from plugin.config import PROJECT_ROOT
from plugin.db import ensure_sqlite_dir


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    ensure_sqlite_dir(database_url)
    command.upgrade(alembic_config(database_url), revision)
