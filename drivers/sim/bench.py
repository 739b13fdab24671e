"""The simulated bench: one clock, the cells, and the instruments wired to them.

Everything simulated shares the bench's clock and seeded random generator, so a run is
deterministic for a seed, and the pressure the frame applies is the pressure the cell feels.
Cells get potentiostat channels in order: two per simulated SP-300, one frame each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl_drivers.clock import Clock, VirtualClock
from labctl_drivers.sim.cell_model import CellModel
from labctl_drivers.sim.faults import FaultPlan
from labctl_drivers.sim.landt import SimulatedLandt
from labctl_drivers.sim.potentiostat import SimulatedChannel, SimulatedSP300
from labctl_drivers.sim.pressure import SimulatedPressureFrame

CHANNELS_PER_SP300 = 2


@dataclass
class BenchSlot:
    """Where one cell sits on the bench."""

    name: str
    cell: CellModel
    potentiostat: SimulatedSP300
    channel: SimulatedChannel
    frame: SimulatedPressureFrame


class SimulatedBench:
    def __init__(
        self, seed: int = 0, faults: FaultPlan | None = None, clock: Clock | None = None
    ) -> None:
        self.seed = seed
        self.clock: Clock = clock or VirtualClock()
        self.faults = faults or FaultPlan()
        self.rng = np.random.default_rng(seed)
        self.potentiostats: list[SimulatedSP300] = []
        self.slots: list[BenchSlot] = []
        self.testers: list[SimulatedLandt] = []

    def add_cell(self, name: str, cell: CellModel, pressure_MPa: float | None = None) -> BenchSlot:
        k = len(self.slots)
        if k % CHANNELS_PER_SP300 == 0:
            self.potentiostats.append(
                SimulatedSP300(
                    f"sim-SP300-{len(self.potentiostats) + 1}", self.clock,
                    np.random.default_rng([self.seed, k]), self.faults, CHANNELS_PER_SP300,
                )
            )
        sp = self.potentiostats[-1]
        channel = sp.channel(k % CHANNELS_PER_SP300)
        channel.connect_cell(cell)
        channel.before_poll = self.apply_due_faults
        thinning = getattr(cell, "thinning_um", None)
        frame = SimulatedPressureFrame(
            f"sim-frame-{k + 1}", self.clock, cell.area_cm2,
            np.random.default_rng([self.seed, k, 1]), self.faults, cell.set_pressure,
            thinning_um=thinning,
        )
        if pressure_MPa is not None:
            frame.request_pressure(pressure_MPa)
        slot = BenchSlot(name, cell, sp, channel, frame)
        self.slots.append(slot)
        return slot

    def add_landt(self, folder: Path, **options: object) -> SimulatedLandt:
        """A simulated LANDT tester on this bench's clock, exporting into `folder`.

        Cells go on its channels with `SimulatedLandt.start_channel`; a `labctl_drivers.landt.
        LandtTester` following the same folder then sees what a real LANDdt export would show.
        """
        landt = SimulatedLandt(folder, self.clock, **options)  # type: ignore[arg-type]
        self.testers.append(landt)
        return landt

    def apply_due_faults(self) -> None:
        """Apply cell-level faults (shorts, pressure loss) whose time has come."""
        for f in self.faults.cell_faults_due(self.clock.now()):
            for slot in self.slots:
                if f.instrument not in (None, slot.name, slot.frame.name, slot.potentiostat.name):
                    continue
                if f.kind == "short":
                    inject = getattr(slot.cell, "inject_short", None)
                    if inject is not None:
                        inject()
                else:
                    slot.frame.lose_pressure()
