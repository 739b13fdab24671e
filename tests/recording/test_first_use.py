"""First use under concurrency: several labctl processes on a brand-new database at once.

Four `labctl run --sim` processes on a brand-new SQLite file, and two on a brand-new PostgreSQL
database, ten times in a row: every process completes with its own run, the schema is created
exactly once (one Alembic version row, at head), and nobody dies with "table already exists".
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from labctl.recording.database import head_revision

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
LABCTL = Path(sys.executable).with_name("labctl")
pytestmark = pytest.mark.slow
ROUNDS = 10

PROTOCOL = """\
schema_version: 1
name: short rest
limits: {E_min: -1 V, E_max: 1 V}
steps:
  - kind: rest
    duration: 30 s
"""


def _race(url: str, n: int, tmp: Path) -> None:
    """`n` processes started together on `url`; each must complete its own run."""
    proto = tmp / "rest.yaml"
    proto.write_text(PROTOCOL)
    procs = [subprocess.Popen([str(LABCTL), "run", str(proto), "--cell", str(CELL), "--sim",
                               "--db", url, "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err, err
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            runs = conn.execute(text("select status from run")).scalars().all()
            versions = conn.execute(text("select version_num from alembic_version")).scalars()
            assert list(versions) == [head_revision()]
    finally:
        eng.dispose()
    assert sorted(runs) == ["completed"] * n


def test_four_processes_on_a_brand_new_sqlite_file(tmp_path: Path) -> None:
    for k in range(ROUNDS):
        _race(f"sqlite:///{tmp_path / f'new{k}.db'}", 4, tmp_path)


def test_two_processes_on_a_brand_new_postgresql_database(
        new_pg_database: Callable[[str], str], tmp_path: Path) -> None:
    for _ in range(ROUNDS):
        _race(new_pg_database("labctl_h3_first"), 2, tmp_path)
