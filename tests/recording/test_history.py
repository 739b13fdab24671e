"""Records are history: a second description under a recorded cell id is refused (the first
run's stored cell, results and plots unchanged, the operator told why and how to go on), and
the same instrument file imported twice is one run that starts at the file's acquisition time.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labctl.analysis.plots import plot_run
from labctl.cli import main
from labctl.importers import read_file
from labctl.recording import models as m
from labctl.recording.database import open_database
from labctl.recording.reads_analysis import run_results_rows

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples/cells/na_symmetric.yaml"
GCPL = ROOT / "tests/data/eclab/jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data_C09.mpr"
PEIS = ROOT / "tests/data/eclab/exampleDataBioLogic.mpt"
REST = "schema_version: 1\nname: short rest\nsteps:\n  - kind: rest\n    duration: 2 s\n"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _other_area(tmp_path: Path) -> Path:
    changed = tmp_path / "same_id_10mm.yaml"
    changed.write_text(CELL.read_text().replace("diameter_mm: 6.0", "diameter_mm: 10.0"))
    return changed


def _state(url: str, run_id: int, tmp_path: Path, tag: str) -> tuple[object, ...]:
    engine = open_database(url)
    with engine.connect() as conn:
        cells = conn.execute(select(m.Cell.name, m.Cell.area_cm2, m.Cell.diameter_mm,
                                    m.Cell.description)).all()
        n_runs = conn.scalar(select(func.count()).select_from(m.Run))
    results = [(r.name, r.value, r.text) for r in run_results_rows(engine, run_id)]
    png = plot_run(engine, run_id, "voltage", tmp_path / f"{tag}.png").read_bytes()
    return [tuple(c) for c in cells], n_runs, results, png


def test_changed_cell_under_recorded_id_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    code, out, _ = _cli(capsys, "import", str(GCPL), "--cell", str(CELL), "--db", url,
                        "--json", "--analyze", "cycling")
    assert code == 0
    first = json.loads(out)["run_id"]
    before = _state(url, first, tmp_path, "before")
    assert before[2], "the first run has stored results"

    changed = _other_area(tmp_path)
    protocol = tmp_path / "rest.yaml"
    protocol.write_text(REST)
    for args in (("run", str(protocol), "--cell", str(changed), "--sim", "--db", url),
                 ("import", str(PEIS), "--cell", str(changed), "--db", url)):
        code, _, err = _cli(capsys, *args)
        assert code == 2, args
        (line,) = err.strip().splitlines()
        assert "cell 'na-sym-001' is already recorded (first run 1)" in line
        assert "diameter_mm: recorded 6.0, given 10.0" in line
        assert "give this cell a new id" in line

    assert _state(url, first, tmp_path, "after") == before  # cell, runs, results, plot bytes


def test_same_description_reuses_the_cell(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    protocol = tmp_path / "rest.yaml"
    protocol.write_text(REST)
    for _ in range(2):
        code, _, err = _cli(capsys, "run", str(protocol), "--cell", str(CELL), "--sim",
                            "--db", url)
        assert code == 0, err
    with open_database(url).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Cell)) == 1
        assert conn.scalar(select(func.count()).select_from(m.Run)) == 2


def test_one_campaign_cannot_give_one_id_two_descriptions(tmp_path: Path) -> None:
    from labctl.launch import launch_runs, prepare_runs
    from labctl.recording.history import CellHistoryConflict

    protocol = tmp_path / "rest.yaml"
    protocol.write_text(REST)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    prepared = prepare_runs([(protocol, CELL), (protocol, _other_area(tmp_path))])
    with pytest.raises(CellHistoryConflict, match="given twice in this launch"):
        launch_runs(prepared, sim=True, db_url=url)
    with open_database(url).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Run)) == 0


@pytest.mark.parametrize("path", [GCPL, PEIS], ids=lambda p: p.suffix)
def test_same_file_imported_twice_is_one_run_at_acquisition_time(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'i.db'}"
    ids = set()
    for _ in range(2):
        code, out, err = _cli(capsys, "import", str(path), "--cell", str(CELL), "--db", url,
                              "--json")
        assert code == 0, err
        ids.add(json.loads(out)["run_id"])
    assert len(ids) == 1
    acquired = read_file(path).acquired_at
    assert acquired is not None
    with open_database(url).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Run)) == 1
        started, ended = conn.execute(select(m.Run.started_at, m.Run.ended_at)).one()
    local = acquired.astimezone()
    as_utc = started if started.tzinfo else started.replace(tzinfo=dt.UTC)
    assert as_utc == local
    assert ended >= started


def test_one_source_per_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Re-analysis replaces: the engine's value and a later analysis of the same name leave one
    row, the later one, with its analysis and version; other names stay."""
    from labctl.recording.recorder import Recorder

    url = f"sqlite:///{tmp_path / 'r.db'}"
    _, out, _ = _cli(capsys, "import", str(PEIS), "--cell", str(CELL), "--db", url, "--json")
    run = json.loads(out)["run_id"]
    rec = Recorder(open_database(url))
    rec.store_results(run, "engine", "0.1", [("ccd_mA_cm2", 1.0, "mA/cm^2", None),
                                             ("elapsed_s", 5.0, "s", None)])
    for _ in range(2):
        rec.store_results(run, "ccd", "3", [("ccd_mA_cm2", 1.5, "mA/cm^2", None)])
    with rec.engine.connect() as conn:
        rows = conn.execute(select(m.Result.name, m.Result.value, m.Result.analysis,
                                   m.Result.analysis_version)
                            .where(m.Result.run_id == run)).all()
    assert sorted(map(tuple, rows)) == [("ccd_mA_cm2", 1.5, "ccd", "3"),
                                        ("elapsed_s", 5.0, "engine", "0.1")]
