"""Importing the real EC-Lab sample files into the database, then analysing and plotting them.

The database must hold exactly what the file holds: the same number of records and identical
values (compared with the file parsed directly by the importer), so imported runs are as
trustworthy as recorded ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labctl.analysis.plots import plot_run
from labctl.cli import main
from labctl.importers import read_file
from labctl.recording.database import open_database
from labctl.recording.queries import get_run, run_steps, step_points, step_spectrum
from labctl.recording.reads_analysis import protocol_text, run_context, run_results_rows

DATA = Path(__file__).resolve().parents[1] / "data" / "eclab"
CELL = Path(__file__).resolve().parents[2] / "examples/cells/na_symmetric.yaml"
FILES = sorted(DATA.glob("*.mp[rt]"))



def _import(path: Path, url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    main(["import", str(path), "--cell", str(CELL), "--db", url, "--json", *extra])
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_import_lands_identical_values(path: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'imp.db'}"
    out = _import(path, url, capsys)
    src = read_file(path)
    engine = open_database(url)
    info = get_run(engine, out["run_id"])
    assert info is not None and not info.simulated and info.station == "import:eclab"
    assert info.status == "completed"
    text = protocol_text(engine, out["run_id"]) or ""
    assert out["sha256"] in text and path.name in text
    steps = [s for s in run_steps(engine, out["run_id"])]
    assert len(steps) == len(src.steps)
    n_db = 0
    for s_db, s_src in zip(steps, src.steps):
        assert s_db.kind == s_src.kind
        if s_src.eis is not None:
            sp = step_spectrum(engine, s_db.id)
            n_db += len(sp["frequency_Hz"])
            for a, b in (("frequency_Hz", "frequency_Hz"), ("Z_re_ohm", "Z_re_ohm"),
                         ("Z_im_ohm", "Z_im_ohm"), ("Z_mod_ohm", "Zmod_ohm"),
                         ("phase_deg", "phase_deg")):
                np.testing.assert_array_equal(sp[a], np.asarray(s_src.eis[b], dtype=float))
        else:
            pts = step_points(engine, [s_db.id])
            n_db += len(pts["t_s"])
            for c in ("t_s", "E_V", "I_mA", "Q_mAh"):
                np.testing.assert_array_equal(pts[c], np.asarray(s_src.points[c], dtype=float))
    assert n_db == src.n_points == out["n_points"] + out["n_eis"]


def test_analyses_and_plots_on_imported_runs(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'imp.db'}"
    peis = _import(DATA / "exampleDataBioLogic.mpt", url, capsys, "--analyze", "drt",
                   "--analyze", "circuit")
    assert peis["results"]["drt_spectra"] == 1 and peis["results"]["circuit_spectra"] == 1
    engine = open_database(url)
    rows = run_results_rows(engine, peis["run_id"], "drt")
    assert any(r.name == "drt_peak1_tau_s" and r.step_id is not None for r in rows)
    for kind in ("nyquist", "drt", "bode"):
        assert plot_run(engine, peis["run_id"], kind, tmp_path / f"{kind}.png").stat().st_size \
            > 10_000
    gcpl = _import(DATA / "jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data_C09.mpr", url, capsys,
                   "--analyze", "cycling")
    assert gcpl["n_points"] == 46102
    assert gcpl["results"]["cycling_cycles"] >= 1
    assert plot_run(engine, gcpl["run_id"], "voltage", tmp_path / "v.png").stat().st_size > 10_000
    ctx = run_context(engine, gcpl["run_id"])
    assert ctx is not None and ctx.cell_name == "na-sym-001"
    # and the imported run exports like any other
    main(["export", str(gcpl["run_id"]), "--format", "bdf", "-o", str(tmp_path / "g.csv"),
          "--db", url])
    with (tmp_path / "g.csv").open() as f:
        assert sum(1 for _ in f) - 1 == 46102
