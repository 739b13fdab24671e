"""Linked techniques: consecutive simple steps run as one loaded sequence, without the
open-circuit gap a load per step leaves, and each technique still records into its own step.

The gap is measured on the instrument's clock: the time between the last point of step k and
the first point of step k+1, less one record interval (what two consecutive points of one
technique are apart). With one load per step the engine notices a step that ended on its
cut-off only at its next poll and loads the next technique then: the cell sits at open circuit
for up to a poll interval. Linked, the instrument goes on at once.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from labctl.engine.events import EventBus, Points, RunStatus, SinkFailure
from labctl.protocol import resolved as rs
from labctl.recording.queries import run_events, run_steps, step_points
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell

from .rig import Rig, make_rig

REC = rs.RecordEvery(dt_s=1.0, dE_V=None)
POLL_S = 60.0
STEPS = [
    rs.Rest("rest", duration_s=120.0, record=REC),
    rs.Galvanostatic("strip to cut-off", current_mA=1.0, E_max_V=0.145, record=REC),
    rs.Rest("rest 2", duration_s=120.0, record=REC),
    rs.Galvanostatic("plate", current_mA=-1.0, duration_s=300.0, record=REC),
    rs.EIS("eis", mode="PEIS", f_high_Hz=1e5, f_low_Hz=1.0, points_per_decade=5),
    rs.Rest("rest 3", duration_s=120.0, record=REC),
]


def _run(db_url: str, linked: bool) -> Rig:
    rig = make_rig(db_url, EquivalentCircuitCell(area_cm2=0.5), linked=linked,
                   poll_interval_s=POLL_S)
    out = rig.run(STEPS)
    assert out.status is RunStatus.COMPLETED, out
    return rig


def _gaps_s(rig: Rig) -> list[float]:
    """Open-circuit time between consecutive steps, on the instrument clock: between their
    points (less one record interval), or around a spectrum between the step bounds (an end on
    the instrument's clock, a start when the technique was started)."""
    steps = run_steps(rig.engine, rig.run_id)
    gaps = []
    for a, b in itertools.pairwise(steps):
        if a.n_points and b.n_points:
            t_a = step_points(rig.engine, [a.id])["t_s"]
            t_b = step_points(rig.engine, [b.id])["t_s"]
            gaps.append(float(t_b[0] - t_a[-1]) - REC.dt_s)
        else:
            gaps.append(b.t_start_s - a.t_end_s)
    return gaps


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Rig]:
    out = {}
    for linked in (False, True):
        url = f"sqlite:///{tmp_path_factory.mktemp('link') / 'db.sqlite'}"
        out[linked] = _run(url, linked)
    return out


def test_linking_removes_the_open_circuit_gap(runs: dict[bool, Rig],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    before, after = _gaps_s(runs[False]), _gaps_s(runs[True])
    with capsys.disabled():
        print(f"\nopen-circuit gaps between steps (s), one load per step: {np.round(before, 3)}"
              f"; linked: {np.round(after, 3)}")
    # the cut-off strip ends between polls: unlinked, the cell waits for the next poll
    assert max(before) > POLL_S / 2
    assert max(abs(g) for g in after) < 1e-3  # the instrument timebase: microseconds


def test_each_linked_technique_records_into_its_own_step(runs: dict[bool, Rig]) -> None:
    rig = runs[True]
    steps = run_steps(rig.engine, rig.run_id)
    assert [s.name for s in steps] == [s.name for s in STEPS]
    assert [s.end_reason for s in steps] == ["time", "E_max", "time", "time", "complete", "time"]
    # each starts where the previous ended, on the instrument
    for a, b in itertools.pairwise(steps):
        assert b.t_start_s == pytest.approx(a.t_end_s, abs=1e-6)
    by_name = {s.name: s for s in steps}
    assert by_name["rest"].n_points == 120 and by_name["plate"].n_points == 300
    assert by_name["eis"].n_eis > 0 and by_name["eis"].n_points == 0
    plate = step_points(rig.engine, [by_name["plate"].id])
    assert np.all(plate["I_mA"] < 0)
    # charge is integrated per step, from its own start
    assert plate["Q_mAh"][-1] == pytest.approx(-1.0 * 300 / 3600, rel=1e-3)


def test_a_cut_off_between_two_records_still_names_the_end(db_url: str) -> None:
    """Records every 10 min: the cut-off fires between them; the reason is the instrument's."""
    rig = make_rig(db_url, EquivalentCircuitCell(area_cm2=0.5), poll_interval_s=POLL_S)
    sparse = rs.RecordEvery(dt_s=600.0, dE_V=None)
    out = rig.run([rs.Galvanostatic("strip", current_mA=1.0, E_max_V=0.145, record=sparse),
                   rs.Rest("rest", duration_s=60.0, record=sparse)])
    assert out.status is RunStatus.COMPLETED, out
    strip = run_steps(rig.engine, rig.run_id)[0]
    assert strip.status == "completed" and strip.end_reason == "E_max"


def test_a_safety_bound_on_the_instrument_fails_the_step_as_a_limit(db_url: str) -> None:
    """No cut-off asked for: the E bound the instrument enforced came from the safety limits."""
    rig = make_rig(db_url, poll_interval_s=POLL_S)
    out = rig.run([rs.Galvanostatic("push", current_mA=4.0, duration_s=36_000.0),
                   rs.Rest("after", duration_s=600.0)], rs.Limits(E_max_V=0.5))
    assert out.status is RunStatus.FAILED
    steps = run_steps(rig.engine, rig.run_id)
    assert steps[0].status == "failed" and steps[0].end_reason.startswith("safety limit: E")
    assert all(s.status != "completed" for s in steps[1:])
    assert any(e.kind == "limit" for e in run_events(rig.engine, rig.run_id))
    assert rig.channel_off()


def test_pause_and_resume_inside_a_linked_group(db_url: str) -> None:
    """Paused in the first technique of a group: the rest of it and every later technique of
    the group are loaded again on resume; each step still gets exactly its own duration."""
    rig = make_rig(db_url, EquivalentCircuitCell(area_cm2=0.5), poll_interval_s=POLL_S)
    pause_at, pause_wall_s = 300.0, 0.3  # a paused simulated run keeps wall time
    paused_since: list[float] = []

    def operator(r: Rig) -> None:
        if r.ctx.run_time() >= pause_at and not r.ctx.paused and not paused_since:
            r.recorder.request_control(r.run_id, "pause")
        elif r.ctx.paused:
            if not paused_since:
                paused_since.append(time.monotonic())
            elif time.monotonic() - paused_since[0] >= pause_wall_s:
                r.recorder.request_control(r.run_id, "resume")

    out = rig.run([rs.Galvanostatic("strip", current_mA=0.5, duration_s=900.0, record=REC),
                   rs.Rest("rest", duration_s=300.0, record=REC),
                   rs.Galvanostatic("plate", current_mA=-0.5, duration_s=600.0, record=REC)],
                  on_tick=operator)
    assert out.status is RunStatus.COMPLETED, out
    steps = run_steps(rig.engine, rig.run_id)
    assert [s.status for s in steps] == ["completed"] * 3
    assert [s.n_points for s in steps] == [900, 300, 600]
    strip = step_points(rig.engine, [steps[0].id])
    assert np.all(np.diff(strip["t_s"]) > 0)
    assert abs(strip["Q_mAh"][-1]) == pytest.approx(0.5 * 900 / 3600, rel=1e-3)


def test_a_failing_critical_sink_stops_once_other_sinks_are_isolated() -> None:
    bus = EventBus()
    seen: list[object] = []

    def broken_display(event: object) -> None:
        raise ValueError("display gone")

    def recorder(event: object) -> None:
        seen.append(event)
        if len(seen) == 2:
            raise OSError("disk full")

    bus.subscribe(broken_display)
    bus.subscribe(recorder, critical=True, name="recorder")
    event = Points(1, 1, np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), None)
    bus.publish(event)  # the display's failure is logged, nothing else
    with pytest.raises(SinkFailure, match="recorder: disk full"):
        bus.publish(event)
    bus.publish(event)  # the broken critical sink hears nothing more, and nothing raises
    assert len(seen) == 2 and bus.failed
