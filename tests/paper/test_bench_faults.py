"""Bench-level fault injection: each fault kind of labctl_drivers.sim.faults, configured on a
simulated bench through `launch(..., faults=...)`, is enacted by the simulated hardware below
the real drivers (the DLL's error codes, the gauge's bytes), ends in a safe state with the fault
on record — or, when the link is gone for good, with "could not confirm the channel is off" on
record, which is all a PC can honestly say then — and a seeded run is reproducible point for
point. (Engine-internal retry/safety logic is covered in
tests/engine; these check what an operator sees in the database.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from labctl.launch import launch
from labctl_drivers.sim.faults import Fault, FaultPlan

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "examples" / "paper" / "ccd_10MPa.yaml"
CELL = ROOT / "examples" / "paper" / "cells" / "na_sym_10MPa.yaml"
T_FAULT_S = 2.5 * 3600.0  # inside the CCD ramp (it starts after ~1.1 h)


def _run(tmp_path: Path, name: str, faults: FaultPlan | None, seed: int = 0) -> tuple:
    db = tmp_path / f"{name}.db"
    res = launch(PROTOCOL, [CELL], sim=True, db_url=f"sqlite:///{db}", seed=seed, faults=faults)
    out = res.outcomes[0]
    con = sqlite3.connect(db)
    events = con.execute("SELECT kind, severity, message FROM event WHERE run_id = ?",
                         (out.run_id,)).fetchall()
    points = con.execute("SELECT p.t_s, p.E_V, p.I_mA, p.Q_mAh FROM point p JOIN step s "
                         "ON s.id = p.step_id WHERE s.run_id = ? ORDER BY p.id",
                         (out.run_id,)).fetchall()
    con.close()
    return out, res.results[out.run_id], events, points


@pytest.mark.parametrize("kind", ["disconnect", "timeout", "garbled", "dll_error"])
def test_instrument_faults_end_in_safe_state(tmp_path: Path, kind: str) -> None:
    count = -1 if kind == "disconnect" else 1
    plan = FaultPlan([Fault(kind, T_FAULT_S, operation="poll", count=count, code=-12)])
    out, _, events, points = _run(tmp_path, kind, plan)
    assert any(f.fired for f in plan.faults)
    kinds = {e[0] for e in events}
    assert "safe_state" in kinds or "fault" in kinds
    if kind == "disconnect":  # a permanent loss cannot be ridden out, nor the channel reached
        assert out.status == "failed"
        assert max(p[0] for p in points) < T_FAULT_S + 120.0
        assert any(e[0] == "safe_state" and e[1] == "critical" and "could not confirm" in e[2]
                   for e in events)
    elif out.status == "failed":  # the engine gave up on the run: the channel must be off
        assert any(e[0] == "safe_state" and "channel off" in e[2] for e in events)
        assert any(e[0] == "fault" for e in events)


def test_pressure_loss_trips_the_pressure_limit(tmp_path: Path) -> None:
    out, results, events, _ = _run(tmp_path, "ploss", FaultPlan([Fault("pressure_loss",
                                                                        T_FAULT_S)]))
    assert any(e[0] == "limit" and "pressure" in e[2] for e in events)
    assert any(e[0] == "safe_state" for e in events)
    # The ramp stops there. It currently reports that as a CCD whose failure mode is the
    # pressure limit (not a cell failure mode), so an analyst can tell it apart.
    assert "pressure" in str(results["ccd_failure_mode"])
    assert out.status in ("completed", "failed")


def test_short_is_detected_as_hard_short(tmp_path: Path) -> None:
    out, results, events, _ = _run(tmp_path, "short", FaultPlan([Fault("short", T_FAULT_S)]))
    assert results["ccd_failure_mode"] == "hard_short"
    assert results["ccd_mA_cm2"] < 3.2  # long before the cell's own CCD
    assert any(e[0] == "detector" and "hard_short" in e[2] for e in events)
    assert any(e[0] == "safe_state" for e in events)
    assert out.status == "completed"  # a CCD ramp ending on a failure is the measurement


def test_seeded_faulty_run_is_reproducible(tmp_path: Path) -> None:
    def plan() -> FaultPlan:
        return FaultPlan([Fault("short", T_FAULT_S), Fault("garbled", 3600.0, operation="poll")])

    _, r1, _, p1 = _run(tmp_path, "a", plan(), seed=7)
    _, r2, _, p2 = _run(tmp_path, "b", plan(), seed=7)
    _, _, _, p3 = _run(tmp_path, "c", plan(), seed=8)
    assert p1 == p2 and r1 == r2
    assert p1 != p3
