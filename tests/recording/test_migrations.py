"""The schema comes only from Alembic, and the migrations and the ORM models agree."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from labctl.recording.database import (
    current_revision,
    head_revision,
    make_engine,
    open_database,
    upgrade,
)
from labctl.recording.models import Base

TABLES = {"instrument", "cell", "protocol", "run", "step", "point", "eis_point", "event",
          "result", "alembic_version", "run_lease", "channel_lease"}


def test_upgrade_creates_every_table(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    assert set(inspect(engine).get_table_names()) == TABLES
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    """Fails if `alembic revision --autogenerate` would produce anything."""
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_new_sqlite_file_is_upgraded_on_first_use(sqlite_url: str) -> None:
    engine = open_database(sqlite_url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
