"""The command line end to end, as an operator uses it: real `labctl` processes, real DBs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from labctl.recording import models as m

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "protocols" / "quickstart.yaml"
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
_BESIDE = Path(sys.executable).with_name("labctl")
LABCTL = str(_BESIDE) if _BESIDE.exists() else (shutil.which("labctl") or "")


def labctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [LABCTL] if LABCTL else [sys.executable, "-c", "from labctl.cli import main; main()"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, env=env)


def test_run_records_every_step_and_point(db_url: str) -> None:
    res = labctl("run", str(QUICKSTART), "--cell", str(CELL), "--sim", "--db", db_url, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert set(doc) == {"run_id", "status", "results"} and doc["status"] == "completed"
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        steps = conn.execute(select(m.Step.kind, m.Step.status, m.Step.id)
                             .where(m.Step.run_id == doc["run_id"]).order_by(m.Step.index)).all()
        n_points = conn.scalar(select(func.count()).select_from(m.Point))
        n_eis = conn.scalar(select(func.count()).select_from(m.EisPoint))
    engine.dispose()
    assert [s.kind for s in steps] == ["rest", "eis", "galvanostatic", "galvanostatic"]
    assert all(s.status == "completed" for s in steps)
    assert n_points == 60 + 300 + 300  # 1 s records: 60 s rest, two 5-min steps
    assert n_eis > 30
    shown = labctl("show", str(doc["run_id"]), "--db", db_url, "--json")
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert [s["n_points"] for s in listed["steps"]] == [60, 0, 300, 300]
    table = labctl("show", str(doc["run_id"]), "--db", db_url)
    assert "galvanostatic" in table.stdout
    runs = labctl("runs", "--db", db_url, "--json")
    assert json.loads(runs.stdout)[0]["status"] == "completed"


def _assert_one_line_error(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert res.stdout == ""


def _no_running_runs(url: str) -> None:
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Run)
                           .where(m.Run.status == "running")) == 0
        assert conn.scalar(select(func.count()).select_from(m.Run)) == 0
    engine.dispose()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "missing.yaml", "--cell", str(CELL), "--sim"],
        ["run", str(QUICKSTART), "--cell", "missing-cell.yaml", "--sim"],
        ["run", str(QUICKSTART), "--cell", str(CELL), "--sim", "--bogus"],
        ["run", str(QUICKSTART), "--sim"],
        ["frobnicate"],
    ],
    ids=["missing-protocol", "missing-cell", "unknown-option", "missing-cell-option",
         "unknown-command"],
)
def test_bad_input_gives_one_clear_line(args: list[str], sqlite_url: str) -> None:
    res = labctl(*args, "--db", sqlite_url) if args[0] == "run" else labctl(*args)
    _assert_one_line_error(res)
    assert res.returncode == 2
    _no_running_runs(sqlite_url)


def test_unreachable_database(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    res = labctl("run", str(QUICKSTART), "--cell", str(CELL), "--sim", "--db", url)
    _assert_one_line_error(res)
    assert "cannot reach database" in res.stderr
    bad = labctl("runs", "--db", "notaurl://x")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_invalid_protocol_is_refused_before_anything_is_written(tmp_path: Path,
                                                                sqlite_url: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\nsteps:\n  - kind: rest\n    duration: -5 s\n")
    res = labctl("run", str(bad), "--cell", str(CELL), "--sim", "--db", sqlite_url)
    assert res.returncode == 2
    assert f"{bad}:5:" in res.stderr
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_db_upgrade_and_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    res = labctl("db", "upgrade", "--db", url)
    assert res.returncode == 0 and "current schema" in res.stdout
    assert "x.db" in labctl("db", "path", "--db", url).stdout
