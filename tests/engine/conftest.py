"""Fixtures for the engine tests (helpers live in `tests.engine.rig`)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite file per test: the real recorder and migrations, no shared state."""
    return f"sqlite:///{tmp_path / 'labctl.db'}"
