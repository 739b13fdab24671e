"""Database management and the version: `db upgrade`, `db path`, `version`."""

from __future__ import annotations

from labctl import __version__
from labctl.cli.app import DbOption, app, db_app, out


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the database schema to the current version."""
    from labctl.recording.database import resolve_url, safe_url, upgrade

    url = resolve_url(db)
    upgrade(url)
    out.print(f"database {safe_url(url)} is at the current schema")


@db_app.command("path")
def db_path(db: DbOption = None) -> None:
    """Print the database URL labctl would use."""
    from labctl.recording.database import resolve_url, safe_url

    out.print(safe_url(resolve_url(db)))


@app.command()
def version() -> None:
    """Print labctl's version."""
    out.print(__version__)
