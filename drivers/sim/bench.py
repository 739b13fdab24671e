"""The simulated bench: one clock, the cells, and the simulated hardware BELOW the real drivers.

What a bench holds is what a lab's bench holds, minus the PC: SP-300 chassis (`SimulatedEClib`,
the firmware the real SP-300 adapter talks to), spring frames (`SimulatedSpringStack`, their
screw and the operator who turns it) with their Mark-10 gauges (`SimulatedMark10`, answering the
real GCL2 driver in bytes), LANDT testers writing export files, and the cells on them. labctl
reaches all of it only through the real drivers, built from a station file.

Everything simulated shares the bench's clock and seed, so a run is reproducible for a seed,
and the pressure the springs apply is the pressure the cell feels. A bench runs in labctl's
process on a virtual clock (tests, rehearsals) or in its own process on the wall clock
(`labctl_drivers.sim.server`), where it outlives the labctl that drives it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl_drivers.biologic.sim_eclib import SimulatedEClib
from labctl_drivers.clock import Clock, VirtualClock
from labctl_drivers.errors import Unsupported
from labctl_drivers.mark10.sim_gauge import SimulatedMark10
from labctl_drivers.sim.cell_model import CellModel
from labctl_drivers.sim.faults import FaultPlan
from labctl_drivers.sim.landt import SimulatedLandt
from labctl_drivers.sim.spring_frame import GAUGE_NOISE_N, SimulatedSpringStack

#: An unloaded frame's nominal area (no cell under it: the springs press nothing).
_EMPTY_FRAME_AREA_MM2 = 1.0
_bench_ids = itertools.count(1)


@dataclass
class SimulatedFrameHardware:
    """A frame's springs and its gauge(s): in-process, and over TCP when served."""

    stack: SimulatedSpringStack
    gauge: SimulatedMark10
    served: SimulatedMark10 | None = None


@dataclass
class BenchSlot:
    """Where one cell sits: which chassis and channel, which frame presses it."""

    name: str
    cell: CellModel
    sp300: str
    channel: int
    frame: str | None


class SimulatedBench:
    def __init__(
        self, seed: int = 0, faults: FaultPlan | None = None, clock: Clock | None = None
    ) -> None:
        self.seed = seed
        self.clock: Clock = clock or VirtualClock()
        self.faults = faults or FaultPlan()
        self.id = next(_bench_ids)
        self._sp300: dict[str, SimulatedEClib] = {}
        self._frames: dict[str, SimulatedFrameHardware] = {}
        self.slots: list[BenchSlot] = []
        self.testers: list[SimulatedLandt] = []

    # -- instruments ----------------------------------------------------------------------
    def add_sp300(self, name: str, n_channels: int = 2) -> SimulatedEClib:
        """A simulated SP-300 chassis; its channels get cells with `place_cell`."""
        k = len(self._sp300)
        # channel c of the first chassis draws its instrument noise from [seed, c], as the
        # simulated SP-300 it replaces did for its first channel; later chassis get their own
        eclib = SimulatedEClib(self.clock, seed=[self.seed] if k == 0 else [self.seed, 1000 + k],
                               faults=self.faults, n_channels=n_channels, name=name,
                               serial_number=1001 + k)
        eclib.before_advance = self.apply_due_faults
        self._sp300[name] = eclib
        return eclib

    def sp300(self, name: str) -> SimulatedEClib:
        try:
            return self._sp300[name]
        except KeyError:
            raise Unsupported(f"no simulated SP-300 named {name!r} on this bench "
                              f"(have {', '.join(self._sp300) or 'none'})") from None

    def add_frame(self, name: str) -> SimulatedFrameHardware:
        """A spring frame with its gauge, empty until a cell is placed under it."""
        k = len(self._frames)
        stack = SimulatedSpringStack(name, _EMPTY_FRAME_AREA_MM2)
        # each bench registers its gauges under its own names: two benches in one process
        # never share one; faults aimed at the frame's name still reach it
        gauge = self._gauge(name, "inprocess", f"bench{self.id}.{name}",
                            np.random.default_rng([self.seed, 2 * k, 1]))
        hw = SimulatedFrameHardware(stack, gauge)
        self._frames[name] = hw
        return hw

    def _frame(self, name: str) -> SimulatedFrameHardware:
        try:
            return self._frames[name]
        except KeyError:
            raise Unsupported(f"no simulated frame named {name!r} on this bench") from None

    def gauge_url(self, frame: str) -> str:
        """Where the real Mark-10 driver reaches this frame's gauge in-process."""
        return self._frame(frame).gauge.url

    def serve_gauge(self, frame: str) -> str:
        """Serve this frame's gauge over TCP as well (for labctl in another process); the
        ``socket://`` URL the real driver opens."""
        hw = self._frame(frame)
        if hw.served is None:
            k = list(self._frames).index(frame)
            hw.served = self._gauge(frame, "socket", frame,
                                    np.random.default_rng([self.seed, 2 * k, 2]))
        return hw.served.url

    def _gauge(self, frame: str, transport: str, registered_as: str,
               rng: np.random.Generator) -> SimulatedMark10:
        """A started simulated Mark-10 reading this frame's springs (whichever stack is under
        the frame when it is read)."""
        return SimulatedMark10(lambda: self._frames[frame].stack.force_N(), transport=transport,
                               name=registered_as, instrument=frame, clock=self.clock,
                               serial_number=f"SIM-{frame}", noise_N=GAUGE_NOISE_N, rng=rng,
                               faults=self.faults).start()

    def operator(self, frame: str) -> Callable[[float], None]:
        """The simulated operator of one frame: turns its screw to a force (the real frame's
        `motor` hook in simulation)."""
        self._frame(frame)
        return lambda force_N: self._frames[frame].stack.turn_screw_to(force_N)

    def add_landt(self, folder: Path, **options: object) -> SimulatedLandt:
        """A simulated LANDT tester on this bench's clock, exporting into `folder`; the real
        export follower (`labctl_drivers.landt`) reads what it writes."""
        landt = SimulatedLandt(folder, self.clock, **options)  # type: ignore[arg-type]
        self.testers.append(landt)
        return landt

    # -- cells ----------------------------------------------------------------------------
    def place_cell(self, name: str, cell: CellModel, sp300: str, channel: int,
                   frame: str | None, pressure_MPa: float | None) -> BenchSlot:
        """Put a cell on a channel (and under a frame, assembled at `pressure_MPa`: the
        operator turns the screw before the station ever reads the gauge)."""
        self.sp300(sp300).attach_cell(channel, cell)
        if frame is not None:
            hw = self._frame(frame)
            hw.stack = SimulatedSpringStack.for_cell(frame, cell)
            if pressure_MPa is not None:
                hw.stack.turn_screw_to(pressure_MPa * hw.stack.area_mm2)
        elif pressure_MPa is not None:
            cell.set_pressure(pressure_MPa)
        slot = BenchSlot(name, cell, sp300, channel, frame)
        self.slots.append(slot)
        return slot

    def apply_due_faults(self) -> None:
        """Apply cell-level faults (shorts, pressure losses) whose time has come. (Called at
        the start of every simulated DLL call, two a poll: with no faults planned, at once.)"""
        if not self.faults.faults:
            return
        for f in self.faults.cell_faults_due(self.clock.now()):
            for slot in self.slots:
                if f.instrument not in (None, slot.name, slot.frame, slot.sp300):
                    continue
                if f.kind == "short":
                    inject = getattr(slot.cell, "inject_short", None)
                    if inject is not None:
                        inject()
                elif slot.frame is not None:
                    self._frames[slot.frame].stack.lose_pressure()

    def close(self) -> None:
        """Stop serving the gauges (in-process registrations and TCP servers)."""
        for hw in self._frames.values():
            hw.gauge.stop()
            if hw.served is not None:
                hw.served.stop()
