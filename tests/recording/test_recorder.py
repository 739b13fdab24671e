"""The recorder writes runs, steps, points, spectra, events, results: SQLite and PostgreSQL."""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import func, select

from labctl.engine import events as ev
from labctl.recording import models as m
from labctl.recording.database import make_engine, upgrade
from labctl.recording.recorder import Recorder, RecordingSink

CELL = {"id": "cell-1", "anode": {"material": "NaK", "k_wt_pct": 65.0, "alloy_mass_mg": 4.0},
        "counter_electrode": "Na", "electrolyte": "NASICON", "area_cm2_resolved": 0.283}


def _recorder(url: str, **kw: float) -> Recorder:
    upgrade(url)
    return Recorder(make_engine(url), **kw)  # type: ignore[arg-type]


def _open_run(rec: Recorder, text: str = "schema_version: 1\n") -> int:
    return rec.start_run(
        cell=CELL, protocol_name="p", protocol_text=text, protocol_sha256=str(hash(text)),
        schema_version=1, station="test", simulated=True, operator="me", labctl_version="0",
        potentiostat={"name": "sim-1", "kind": "potentiostat", "model": "SP-300",
                      "address": "sim", "simulated": True},
        channel=0, seed=1,
    )


def _count(rec: Recorder, model: type) -> int:
    with rec.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)))


def test_full_run_is_recorded(db_url: str) -> None:
    rec = _recorder(db_url)
    run_id = _open_run(rec)
    step = rec.start_step(run_id, 1, "galvanostatic", "strip", {"current_mA": 0.1}, 0.0)
    n = 2500
    t = np.arange(n, dtype=float)
    rec.add_points(step, t, np.sin(t), np.full(n, 0.1), t * 0.1 / 3600, 10.0)
    rec.add_eis(step, [{"t_s": 1.0, "frequency_Hz": 1e3, "Z_re_ohm": 10.0, "Z_im_ohm": -2.0,
                        "Z_mod_ohm": 10.2, "phase_deg": -11.3, "E_V": 0.0, "I_mA": 0.0}])
    rec.event(run_id, "note", "hello", step_id=step)
    rec.end_step(step, "completed", "time", float(n))
    rec.store_results(run_id, "engine", "1", [("ccd_mA_cm2", 1.2, "mA/cm^2", None),
                                              ("ccd_failure_mode", "hard_short", "", None)])
    rec.end_run(run_id, "completed", "done")
    assert _count(rec, m.Point) == n
    assert _count(rec, m.EisPoint) == 1
    with rec.engine.connect() as conn:
        run = conn.execute(select(m.Run.status, m.Run.ended_at).where(m.Run.id == run_id)).one()
        assert run.status == "completed" and run.ended_at is not None
        pts = conn.execute(select(m.Point.t_s, m.Point.E_V, m.Point.P_MPa)
                           .order_by(m.Point.id)).all()
        res = dict(conn.execute(select(m.Result.name, m.Result.text)).all())
    assert [p.t_s for p in pts] == t.tolist()
    assert np.allclose([p.E_V for p in pts], np.sin(t))
    assert pts[0].P_MPa == 10.0
    assert res["ccd_failure_mode"] == "hard_short"


def test_same_protocol_text_shares_one_row(db_url: str) -> None:
    rec = _recorder(db_url)
    _open_run(rec, "a")
    _open_run(rec, "a")
    _open_run(rec, "b")
    assert _count(rec, m.Protocol) == 2
    assert _count(rec, m.Run) == 3
    assert _count(rec, m.Cell) == 1


def test_points_are_committed_within_the_flush_interval(sqlite_url: str) -> None:
    rec = _recorder(sqlite_url, flush_interval_s=0.2)
    run_id = _open_run(rec)
    step = rec.start_step(run_id, 1, "rest", "rest", {}, 0.0)
    one = np.array([1.0])
    rec.add_points(step, one, one, one, one)
    other = make_engine(sqlite_url)  # a second connection sees only what is committed
    with other.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Point)) == 0
    time.sleep(0.25)
    rec.add_points(step, one + 1, one, one, one)
    with other.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Point)) == 2


def test_step_end_commits_points(sqlite_url: str) -> None:
    rec = _recorder(sqlite_url, flush_interval_s=3600)
    run_id = _open_run(rec)
    step = rec.start_step(run_id, 1, "rest", "rest", {}, 0.0)
    one = np.array([1.0])
    rec.add_points(step, one, one, one, one)
    rec.end_step(step, "completed", "time", 1.0)
    other = make_engine(sqlite_url)
    with other.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Point)) == 1


def test_control_requests_reach_the_engine(db_url: str) -> None:
    rec = _recorder(db_url)
    run_id = _open_run(rec)
    assert rec.heartbeat(run_id) is None
    assert rec.request_control(run_id, "abort")
    assert rec.heartbeat(run_id) == "abort"
    rec.end_run(run_id, "aborted", "operator")
    assert not rec.request_control(run_id, "abort")  # nothing to abort any more


def test_recording_sink_turns_engine_events_into_rows(db_url: str) -> None:
    """The recorder as the engine's subscriber: run-local step numbers become step rows, a
    child's parent is its parent's row, notices become event rows, run ends the run row."""
    rec = _recorder(db_url, flush_interval_s=3600)
    sink = RecordingSink(rec)
    run_id = _open_run(rec)
    sink(ev.StepStarted(run_id, 0.0, 1, None, "ccd_ramp", "ramp", {}))
    sink(ev.StepStarted(run_id, 0.0, 2, 1, "galvanostatic", "strip", {"current_mA": 0.1}))
    one = np.array([1.0])
    sink(ev.Points(run_id, 2, one, one, one, one, 10.0))
    sink(ev.DetectorTripped(run_id, 1.0, 2, "hard_short: collapse", "hard_short"))
    sink(ev.StepEnded(run_id, 1.0, 2, "galvanostatic", ev.StepStatus.FAILED,
                      ev.StepEnd.detector("hard_short")))
    sink(ev.StepEnded(run_id, 1.0, 1, "ccd_ramp", ev.StepStatus.COMPLETED,
                      ev.StepEnd(ev.EndCause.OUTCOME, "failure detected")))
    sink(ev.ResultsReady(run_id, "ccd", "1", (ev.Result("ccd_mA_cm2", 0.5, "mA/cm^2"),)))
    sink(ev.RunEnded(run_id, 1.0, ev.RunStatus.COMPLETED, "all steps done"))
    with rec.engine.connect() as conn:
        steps = conn.execute(select(m.Step.id, m.Step.parent_id, m.Step.status,
                                    m.Step.end_reason).order_by(m.Step.id)).all()
        event = conn.execute(select(m.Event.kind, m.Event.step_id, m.Event.severity,
                                    m.Event.data)).one()
        run = conn.execute(select(m.Run.status, m.Run.end_reason)).one()
    assert [(s.status, s.end_reason) for s in steps] == [
        ("completed", "failure detected"), ("failed", "detector: hard_short")]
    assert steps[1].parent_id == steps[0].id == sink.row_of(run_id, 1)
    assert tuple(event) == ("detector", steps[1].id, "warning", {"mode": "hard_short"})
    assert tuple(run) == ("completed", "all steps done")
    assert _count(rec, m.Point) == 1 and _count(rec, m.Result) == 1
