"""A followed LAND run's ends: an operator abort, and a safety limit labctl cannot enforce."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from labctl.engine.channel import ChannelContext
from labctl.engine.events import (
    Event,
    EventBus,
    LimitTripped,
    OperatorActed,
    OperatorAction,
    RunEnded,
    SafeStateAction,
    StepEnded,
)
from labctl.engine.followed import FollowedChannel, run_followed
from labctl.landt.plan import SkippableKind, plan_for_land
from labctl.launch import prepare_runs
from labctl.stations.connect import make_cell_model
from labctl_drivers.clock import VirtualClock
from labctl_drivers.landt.follower import ExportFollower
from labctl_drivers.landt.program import LandProgram
from labctl_drivers.sim.landt import SimulatedLandProgram

ROOT = Path(__file__).resolve().parents[2]


class AbortAfter:
    """Operator controls: `labctl pause` typed at `t_s / 2`, `labctl abort` once the clock
    passes `t_s`."""

    def __init__(self, clock: VirtualClock, t_s: float) -> None:
        self.clock, self.t_s = clock, t_s
        self.paused = False

    def request(self, run_id: int) -> OperatorAction | None:
        if not self.paused and self.clock.now() >= self.t_s / 2:
            self.paused = True
            return OperatorAction.PAUSE
        return OperatorAction.ABORT if self.clock.now() >= self.t_s else None


def _run(tmp_path: Path, protocol: str, cell: str, typed=None, controls_at: float | None = None
         ) -> list[Event]:
    run = prepare_runs([(ROOT / "protocols" / protocol, ROOT / "examples" / "cells" / cell)])[0]
    plan = plan_for_land(run.document.path, run.protocol, frozenset(SkippableKind))
    clock = VirtualClock()
    sim = SimulatedLandProgram(tmp_path, clock)
    sim.start_program("cell", make_cell_model(run.cell, 10.0, 0),
                      typed(plan.program) if typed else plan.program)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)

    def operator(event: Event) -> None:  # does what labctl tells people at a trip
        if isinstance(event, SafeStateAction) and sim.is_running("cell"):
            sim.stop_channel("cell")

    bus.subscribe(operator)
    ctx = ChannelContext(run_id=1, bus=bus, channel=None, clock=clock,  # type: ignore[arg-type]
                         t0=clock.now(), limits=run.protocol.limits, area_cm2=run.cell.area,
                         poll_interval_s=60.0)
    follower = ExportFollower(tmp_path, "cell*.csv", clock, stale_after_s=600.0,
                              before_read=sim.update)
    controls = AbortAfter(clock, controls_at) if controls_at is not None else None
    run_followed([FollowedChannel(ctx, plan, follower, "stop channel 1-3 in LAND", "p")],
                 controls=controls, housekeeping_interval_s=0.0)  # at every wake
    return events


def test_abort_stops_following_and_says_land_keeps_running(tmp_path: Path) -> None:
    events = _run(tmp_path, "ccd.yaml", "na_symmetric.yaml", controls_at=2 * 3600.0)
    end = next(e for e in events if isinstance(e, RunEnded))
    assert end.status.value == "aborted"
    told = [e for e in events if isinstance(e, OperatorActed) and "LAND keeps running" in
            e.message]
    assert told and "stop channel 1-3 in LAND" in told[0].message
    pause = [e for e in events if isinstance(e, OperatorActed)
             and "cannot pause a LAND channel" in e.message]
    assert pause and "pause the channel in LAND's software (channel 1-3 in LAND)" in \
        pause[0].message
    points = [e for e in events if type(e).__name__ == "Points"]
    assert points[-1].t_s[-1] > 2 * 3600.0 - 120  # recording went on through the pause
    opened = {e.step for e in events if type(e).__name__ == "StepStarted"}
    closed = {e.step for e in events if isinstance(e, StepEnded)}
    assert opened == closed  # every step closed


def test_a_safety_limit_is_recorded_and_the_operator_told_to_stop(tmp_path: Path) -> None:
    def no_voltage_cutoff(p: LandProgram) -> LandProgram:
        steps = list(p.steps)
        steps[1] = dataclasses.replace(steps[1], V_high=None, capacity_mAh=None)
        return dataclasses.replace(p, steps=tuple(steps))

    events = _run(tmp_path, "critical_stripping.yaml", "nak65_half.yaml", no_voltage_cutoff)
    limits = [e for e in events if isinstance(e, LimitTripped)]
    assert limits and "safety limit: E" in limits[0].message
    stop = [e for e in events if isinstance(e, SafeStateAction)]
    assert stop and not stop[0].confirmed and "stop channel 1-3 in LAND now" in stop[0].message
    faults = [e for e in events if type(e).__name__ == "FaultOccurred"]
    assert any("cut-off missed" in e.message for e in faults)  # the mistake itself, earlier
    assert faults[0].t_s <= limits[0].t_s
    end = next(e for e in events if isinstance(e, RunEnded))
    assert end.status.value == "failed" and "safety limit" in end.reason
