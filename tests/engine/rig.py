"""Shared helpers for the engine tests: a real SQLite file, a simulated bench, a hand-built run.

The precise tests drive the engine below `launch()`: a `SimulatedBench` with an
`EquivalentCircuitCell` (closed-form response, so expected voltages and charges are known),
a `ChannelContext` opened on a real recorder, and hand-built resolved steps. The scheduler is
given `housekeeping_interval_s=0` so that operator controls written to the database are picked
up at simulated instants the test chooses, instead of once per wall second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from labctl.engine.channel import ChannelContext
from labctl.engine.runner import RunOutcome, channel_runner
from labctl.engine.scheduler import Scheduler
from labctl.launch import _housekeeping
from labctl.protocol import resolved as rs
from labctl.recording.database import open_database
from labctl.recording.recorder import Recorder
from labctl_drivers.interfaces import ChannelState
from labctl_drivers.sim.bench import BenchSlot, SimulatedBench
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell
from labctl_drivers.sim.faults import Fault, FaultPlan

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = REPO / "protocols"
CELLS = REPO / "examples" / "cells"


@dataclass
class Rig:
    """One simulated channel wired to a real database, ready for `run()`."""

    engine: Engine
    recorder: Recorder
    bench: SimulatedBench
    slot: BenchSlot
    ctx: ChannelContext

    @property
    def run_id(self) -> int:
        return self.ctx.run_id

    def channel_off(self) -> bool:
        """The simulated channel is idle: no technique is driving current through the cell."""
        return self.slot.channel._state is ChannelState.IDLE

    def run(
        self, steps: list[rs.ResolvedStep], limits: rs.Limits = rs.Limits(),
        on_tick: Callable[[Rig], None] | None = None,
    ) -> RunOutcome:
        """Run the steps to their end, calling `on_tick` then the real housekeeping each wake."""
        protocol = rs.ResolvedProtocol("engine test", 1, tuple(steps), limits)
        self.ctx.limits = limits
        house = _housekeeping([self.ctx], self.recorder)
        sched = Scheduler(self.bench.clock, housekeeping_interval_s=0.0)

        def tick() -> None:
            if on_tick is not None:
                on_tick(self)
            house(sched)

        sched.housekeeping = tick
        job = sched.add(self.run_id, channel_runner(self.ctx, protocol))
        sched.run()
        out = job.result
        assert isinstance(out, RunOutcome), job.error
        self.recorder.end_run(self.run_id, out.status, out.end_reason)
        return out


def make_rig(
    db_url: str, cell: EquivalentCircuitCell | None = None, faults: list[Fault] | None = None,
    pressure_MPa: float | None = None, poll_interval_s: float = 5.0,
) -> Rig:
    engine = open_database(db_url)
    recorder = Recorder(engine)
    bench = SimulatedBench(seed=1, faults=FaultPlan(faults or []))
    cell = cell or EquivalentCircuitCell(area_cm2=0.5)
    slot = bench.add_cell("ec-cell", cell, pressure_MPa)
    run_id = recorder.start_run(
        cell={"id": "ec-cell", "anode": {"material": "Na"}, "area_cm2_resolved": 0.5},
        protocol_name="engine test", protocol_text="(built by hand)",
        protocol_sha256="0" * 64, schema_version=1, station="sim-bench", simulated=True,
        operator="pytest", labctl_version="test", seed=1,
    )
    ctx = ChannelContext(
        run_id=run_id, recorder=recorder, channel=slot.channel, clock=bench.clock,
        t0=bench.clock.now(), limits=rs.Limits(), area_cm2=0.5,
        frame=slot.frame if pressure_MPa is not None else None,
        poll_interval_s=poll_interval_s,
    )
    return Rig(engine, recorder, bench, slot, ctx)


def write_protocol(tmp_path: Path, text: str, name: str = "protocol.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
