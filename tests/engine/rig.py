"""Shared helpers for the engine tests: a real SQLite file, a simulated bench, a hand-built run.

The precise tests drive the engine below `launch()`: the real SP-300 adapter over a simulated
bench's EClib, an `EquivalentCircuitCell` (closed-form response, so expected voltages and
charges are known),
a `ChannelContext` whose bus has the real recorder subscribed, and hand-built resolved steps.
The engine runs with `housekeeping_interval_s=0` so that operator controls written to the
database are picked up at simulated instants the test chooses, instead of once per wall second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from labctl.engine.channel import ChannelContext
from labctl.engine.events import EventBus, OperatorAction
from labctl.engine.runner import RunOutcome, run_protocol
from labctl.launch import DatabaseControls, linked_techniques
from labctl.protocol import resolved as rs
from labctl.protocol.cell import CellSpec
from labctl.recording.database import open_database
from labctl.recording.recorder import Recorder, RecordingSink
from labctl.stations import Station, builtin_sim_station, open_station
from labctl_drivers.sim.bench import SimulatedBench
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
    bus: EventBus
    station: Station
    ctx: ChannelContext

    @property
    def bench(self) -> SimulatedBench:
        assert self.station.bench is not None
        return self.station.bench

    @property
    def run_id(self) -> int:
        return self.ctx.run_id

    def channel_off(self) -> bool:
        """The simulated channel is idle: no technique is driving current through the cell."""
        slot = self.bench.slots[0]
        return not self.bench.sp300(slot.sp300).channel_status(slot.channel).running

    def run(
        self, steps: list[rs.ResolvedStep], limits: rs.Limits = rs.Limits(),
        on_tick: Callable[[Rig], None] | None = None,
    ) -> RunOutcome:
        """Run the steps to their end, calling `on_tick` before the operator requests are read
        (the real database controls) at each wake."""
        protocol = rs.ResolvedProtocol("engine test", 1, tuple(steps), limits)
        self.ctx.limits = limits
        controls = DatabaseControls(self.recorder)

        class Ticking:
            def request(_self, run_id: int) -> OperatorAction | None:
                if on_tick is not None:
                    on_tick(self)
                return controls.request(run_id)

        (out,) = run_protocol([(self.ctx, protocol)], Ticking(), housekeeping_interval_s=0.0)
        return out


def make_rig(
    db_url: str, cell: EquivalentCircuitCell | None = None, faults: list[Fault] | None = None,
    pressure_MPa: float | None = None, poll_interval_s: float = 5.0, linked: bool = True,
) -> Rig:
    """`linked=False`: one technique per load, as on a channel that cannot link them."""
    engine = open_database(db_url)
    recorder = Recorder(engine)
    bus = EventBus()
    bus.subscribe(RecordingSink(recorder), critical=True, name="recorder")
    cell = cell or EquivalentCircuitCell(area_cm2=0.5)
    spec = builtin_sim_station().model_copy(update={"poll_interval_s": poll_interval_s})
    described = CellSpec(id="ec-cell", anode={"material": "Na"}, area_cm2=cell.area_cm2,
                         stack_pressure_MPa=pressure_MPa)
    if pressure_MPa is None:  # no frame on the channel: nothing reads a pressure
        spec = spec.model_copy(update={"channels": [spec.channels[0].model_copy(
            update={"frame": None})]})
    station = open_station(spec, [described], seed=1, faults=FaultPlan(faults or []),
                           models=[cell])
    station.make_safe()
    (binding,) = station.bindings
    run_id = recorder.start_run(
        cell={"id": "ec-cell", "anode": {"material": "Na"}, "area_cm2_resolved": 0.5},
        protocol_name="engine test", protocol_text="(built by hand)",
        protocol_sha256="0" * 64, schema_version=1, station="sim-bench", simulated=True,
        operator="pytest", labctl_version="test", seed=1,
    )
    ctx = ChannelContext(
        run_id=run_id, bus=bus, channel=binding.channel, clock=station.clock,
        t0=station.clock.now(), limits=rs.Limits(), area_cm2=cell.area_cm2,
        frame=binding.frame, poll_interval_s=poll_interval_s,
        max_linked=linked_techniques(binding.channel) if linked else 1,
    )
    return Rig(engine, recorder, bus, station, ctx)


def write_protocol(tmp_path: Path, text: str, name: str = "protocol.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
