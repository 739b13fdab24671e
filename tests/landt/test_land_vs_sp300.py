"""The shipped CCD and critical-stripping protocols on a simulated LANDT channel, followed through
its exports, give the SP-300 path's CCD and critical capacity on the same simulated cell.

Both runs go through `labctl.launch.launch`: the SP-300 one on the built-in simulated bench
(``--sim``), the LAND one on a station file whose LANDT tester is simulated -- the simulated
operator enters the printed program, the simulated tester writes LANDdt exports, and the real
follower, program check and engine event path record them. The cell twin is the same
(`labctl.stations.connect.make_cell_model`, same description, pressure and seed).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from labctl.launch import launch

ROOT = Path(__file__).resolve().parents[2]
CCD_STEP_MA_CM2 = 0.1  # the shipped CCD ramp's increment


def _station(tmp_path: Path) -> Path:
    p = tmp_path / "land-station.yaml"
    p.write_text(
        "name: land-sim\n"
        "clock: {kind: virtual}\n"
        "poll_interval_s: 60\n"
        "landt:\n"
        "  testers:\n"
        f"    - {{name: land-1, model: CT2001A, exports: '{tmp_path / 'exports'}', "
        "backend: simulated, stale_after_s: 600}\n"
        "  channels:\n"
        "    - {tester: land-1, channel: '1-3', export: 'cell-42*.csv', skip: [eis, pressure]}\n")
    return p


def _both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str, cell: str
          ) -> tuple[dict, dict, Path]:
    monkeypatch.setenv("LABCTL_LAND_SHEETS", str(tmp_path / "sheets"))
    p, c = ROOT / "protocols" / protocol, ROOT / "examples" / "cells" / cell
    land_db = tmp_path / "land.db"
    land = launch(p, [c], sim=False, station_path=_station(tmp_path),
                  db_url=f"sqlite:///{land_db}")
    sp = launch(p, [c], sim=True, db_url=f"sqlite:///{tmp_path / 'sp300.db'}")
    assert land.outcomes[0].status.value == "completed", land.outcomes[0].end_reason
    assert sp.outcomes[0].status.value == "completed"
    return (land.results[land.outcomes[0].run_id], sp.results[sp.outcomes[0].run_id], land_db)


def _events(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT kind, severity, message FROM event ORDER BY id").fetchall()


def test_ccd_on_land_equals_sp300(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    land, sp, db = _both(tmp_path, monkeypatch, "ccd.yaml", "na_symmetric.yaml")
    assert land["ccd_mA_cm2"] is not None and sp["ccd_mA_cm2"] is not None
    assert land["ccd_mA_cm2"] == pytest.approx(sp["ccd_mA_cm2"], abs=CCD_STEP_MA_CM2 + 1e-9)
    assert land["ccd_failure_mode"] == sp["ccd_failure_mode"]
    events = _events(db)
    # typed as printed: no alarm
    assert not [e for e in events if e[0] == "fault" and "program mismatch" in e[2]]
    # the trip is recorded, and the operator told what labctl cannot do
    assert any(k == "detector" for k, _, _ in events)
    stop = [m for k, s, m in events if k == "safe_state" and s == "critical"]
    assert stop and "labctl cannot switch a LAND channel off" in stop[0]
    assert "stop LANDT tester land-1 (CT2001A) channel 1-3 in LAND's software now" in stop[0]
    with sqlite3.connect(db) as con:
        kinds = dict(con.execute("SELECT kind, COUNT(*) FROM step GROUP BY kind").fetchall())
        n_points = con.execute("SELECT COUNT(*) FROM point").fetchone()[0]
    assert kinds["ccd_ramp"] == 1 and kinds["galvanostatic"] >= 2 * 31
    assert n_points > 1000
    sheet = next((tmp_path / "sheets").glob("run-*-land-1-ch1-3.txt")).read_text()
    assert "CC_DChg" in sheet and "What to do" in sheet


def test_critical_capacity_on_land_equals_sp300(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    land, sp, db = _both(tmp_path, monkeypatch, "critical_stripping.yaml", "nak65_half.yaml")
    # within one record of charge: 10 s at the protocol's 0.25 mA/cm2 on a 6 mm electrode
    one_record_mAh = 0.25 * 0.2827 * 10 / 3600
    assert land["critical_capacity_mAh"] == pytest.approx(sp["critical_capacity_mAh"],
                                                          abs=one_record_mAh)
    assert land["critical_capacity_mAh_g"] == pytest.approx(sp["critical_capacity_mAh_g"],
                                                            rel=1e-3)
    assert not [e for e in _events(db) if e[0] == "fault" and "program mismatch" in e[2]]
