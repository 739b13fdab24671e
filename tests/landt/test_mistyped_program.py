"""A deliberately mistyped LAND program is flagged within one poll of the first wrong step.

The simulated LAND tester runs what the (simulated) operator typed -- here a program with a
mistake -- and the real follower and engine path (`labctl.engine.followed`) read its export; the
mismatch must be a fault event (so the notifier sends it) published at the first poll that can
see the wrong row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from labctl.engine.channel import ChannelContext
from labctl.engine.events import Event, EventBus, FaultOccurred
from labctl.engine.followed import FollowedChannel, run_followed
from labctl.landt.plan import SkippableKind, plan_for_land
from labctl.launch import prepare_runs
from labctl.notify import Notifier
from labctl.stations.connect import make_cell_model
from labctl_drivers.clock import VirtualClock
from labctl_drivers.landt.follower import ExportFollower
from labctl_drivers.landt.program import LandProgram, LandStep
from labctl_drivers.sim.landt import SimulatedLandProgram

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 60.0


def _retyped(program: LandProgram, number: int, **change: object) -> LandProgram:
    steps = list(program.steps)
    steps[number - 1] = dataclasses.replace(steps[number - 1], **change)  # type: ignore[arg-type]
    return dataclasses.replace(program, steps=tuple(steps))


def _follow(tmp_path: Path, protocol: str, cell: str, typed: object,
            also: Callable[[Event], None] | None = None) -> tuple[list, float]:
    """Run the protocol's program as typed; returns (mismatch events with the clock time each
    was published at, the run's start time)."""
    run = prepare_runs([(ROOT / "protocols" / protocol, ROOT / "examples" / "cells" / cell)])[0]
    plan = plan_for_land(run.document.path, run.protocol, frozenset(SkippableKind))
    clock = VirtualClock()
    sim = SimulatedLandProgram(tmp_path, clock)
    follower = ExportFollower(tmp_path, "cell*.csv", clock, stale_after_s=300.0,
                              before_read=sim.update)
    bus = EventBus()
    seen: list[tuple[float, FaultOccurred]] = []

    def operator(event: Event) -> None:  # reads the alert, stops the channel in LAND
        if isinstance(event, FaultOccurred) and "program mismatch" in event.message:
            seen.append((clock.now(), event))
            if sim.is_running("cell"):
                sim.stop_channel("cell")

    bus.subscribe(operator)
    if also is not None:
        bus.subscribe(also)
    ctx = ChannelContext(run_id=1, bus=bus, channel=None, clock=clock,  # type: ignore[arg-type]
                         t0=clock.now(), limits=run.protocol.limits, area_cm2=run.cell.area,
                         poll_interval_s=POLL_S)
    program = typed(plan.program) if callable(typed) else plan.program
    sim.start_program("cell", make_cell_model(run.cell, 10.0, 0), program)
    t0 = clock.now()
    run_followed([FollowedChannel(ctx, plan, follower, "stop channel 1-3", "p")])
    return seen, t0


def _first_row_time(tmp_path: Path, land_step: int, after_s: float = 0.0) -> float:
    """TestTime of the first exported row of LAND step `land_step` (at or after `after_s`)."""
    from labctl_drivers.landt.formats import read_export

    rec = read_export(tmp_path / "cell.csv").records
    return float(rec.t_s[(rec.step == land_step) & (rec.t_s >= after_s)][0])


def test_current_off_by_ten_is_flagged_at_the_next_poll(tmp_path: Path) -> None:
    def typo(p: LandProgram) -> LandProgram:
        assert p.step(4).current_mA < 0  # rest 1 h, strip, rest 1 min, plate
        return _retyped(p, 4, current_mA=p.step(4).current_mA * 10)  # 0.1 -> 1 mA/cm2

    seen, t0 = _follow(tmp_path, "ccd.yaml", "na_symmetric.yaml", typo)
    assert seen, "no mismatch reported"
    when, event = seen[0]
    assert "wrong current" in event.message and "step 4" in event.message
    assert "10x" in event.message and "Stop channel 1-3" in event.message
    wrong = _first_row_time(tmp_path, 4)
    assert wrong <= when - t0 <= wrong + POLL_S


def test_missing_cutoff_is_flagged_within_a_poll_of_where_the_step_should_have_ended(
        tmp_path: Path) -> None:
    seen, t0 = _follow(tmp_path, "ccd.yaml", "na_symmetric.yaml",
                       lambda p: _retyped(p, 2, capacity_mAh=None))
    assert seen, "no mismatch reported"
    when, event = seen[0]
    assert "cut-off missed" in event.message and "step 2" in event.message
    step = prepare_and_plan_step(2)
    assert step.capacity_mAh is not None
    # the step should have ended once its capacity was passed: 0.1 mAh/cm2 at 0.1 mA/cm2
    should_end = _first_row_time(tmp_path, 2) + step.capacity_mAh / abs(step.current_mA) * 3600
    assert should_end <= when - t0 <= should_end + step.record_dt_s + POLL_S


def test_missing_loop_is_flagged_when_land_leaves_the_loop(tmp_path: Path) -> None:
    seen, _ = _follow(tmp_path, "quickstart.yaml", "na_symmetric.yaml", None)
    assert not seen  # the program as printed runs without a mismatch
    run = prepare_runs([(ROOT / "protocols" / "cycling.yaml",
                         ROOT / "examples" / "cells" / "na_symmetric.yaml")])[0]
    program = plan_for_land(run.document.path, run.protocol, frozenset(SkippableKind)).program
    assert program.step(4).repeats == 100
    # cycling's loop typed as 2 repeats instead of 100: LAND stops after 2 cycles; the
    # program's third cycle never starts, which the check sees when the export stops
    sub = tmp_path / "loop"
    sub.mkdir()
    seen, _ = _follow(sub, "cycling.yaml", "na_symmetric.yaml",
                       lambda p: _retyped(p, 4, repeats=2))
    assert seen and "missing loop" in seen[0][1].message, seen
    assert "step 2 (cycle 3)" in seen[0][1].message


def prepare_and_plan_step(number: int) -> LandStep:
    run = prepare_runs([(ROOT / "protocols" / "ccd.yaml",
                         ROOT / "examples" / "cells" / "na_symmetric.yaml")])[0]
    return plan_for_land(run.document.path, run.protocol,
                         frozenset(SkippableKind)).program.step(number)


@pytest.mark.parametrize("repeats", [1, 2, 4])
def test_loop_cut_short_then_more_steps_is_a_missing_loop(tmp_path: Path, repeats: int) -> None:
    """A loop typed with too few repeats, followed by more steps: LAND jumps ahead."""
    from labctl_drivers.landt.check import ProgramCheck
    from labctl_drivers.landt.formats import read_export
    from labctl_drivers.landt.program import LandMode
    from labctl_drivers.sim.cells import make_cell

    prog = LandProgram("loop", (
        LandStep(1, LandMode.REST, time_s=60, record_dt_s=10),
        LandStep(2, LandMode.CC_CHARGE, 0.1, capacity_mAh=0.005, V_high=1.0, record_dt_s=10),
        LandStep(3, LandMode.CC_DISCHARGE, -0.1, capacity_mAh=0.005, V_low=-1.0,
                 record_dt_s=10),
        LandStep(4, LandMode.CYCLE, goto=2, repeats=5),
        LandStep(5, LandMode.REST, time_s=60, record_dt_s=10),
    ))
    clock = VirtualClock()
    sim = SimulatedLandProgram(tmp_path, clock)
    sim.start_program("cell", make_cell("Na", None, None, "Na", None, 0.283, 25.0, 10.0, 0),
                      _retyped(prog, 4, repeats=repeats))
    follower = ExportFollower(tmp_path, "cell*.csv", clock, before_read=sim.update)
    check = ProgramCheck(prog)
    flagged_at = None
    for t in range(0, 20_000, int(POLL_S)):
        clock.sleep_until(float(t))
        found = check.feed(follower.poll().records).mismatches
        if found and flagged_at is None:
            flagged_at, first = float(t), found[0]
    assert flagged_at is not None and first.kind.value == "missing loop"
    rec = read_export(tmp_path / "cell.csv").records
    jump = float(rec.t_s[rec.step == 5][0])  # the first row of the step LAND jumped to
    assert jump <= flagged_at <= jump + POLL_S


def test_a_mismatch_is_a_notification(tmp_path: Path,
                                      webhook: tuple[str, list[dict[str, str]]]) -> None:
    url, received = webhook
    notifier = Notifier([url])
    try:
        seen, _ = _follow(tmp_path, "ccd.yaml", "na_symmetric.yaml",
                          lambda p: _retyped(p, 4, current_mA=p.step(4).current_mA * 10),
                          also=notifier)
    finally:
        notifier.close()
    assert seen
    sent = [m for m in received if "LAND program mismatch (wrong current)" in m["message"]]
    assert sent and sent[0]["title"].endswith("run 1: fault")
