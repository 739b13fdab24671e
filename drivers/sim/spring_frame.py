"""The simulated spring frame: the hardware below the real Mark-10 driver and the real frame.

A spring-loaded pressure frame is a stack of disc springs compressed by a screw; the cell sits
under the springs and a force gauge reads the spring force. Here:

* `SimulatedSpringStack` is the springs and the screw: the force on the cell is
  k · (screw compression − how much the cell has thinned since the screw was set), so the force
  drifts as the cell creeps or Na is moved between electrodes (the cell's `thinning_um`), and a
  `lose_pressure()` fault (a slipped screw) drops it. Whatever force the springs make is the
  pressure the cell feels: every change goes to the cell's `set_pressure`.
* its **simulated operator**, `turn_screw_to(force_N)`, turns the screw until the springs make
  that force. The real `SpringPressureFrame` calls it through its `motor` hook: the frame
  computes the force from its own area (P · A), exactly as it would tell a person.
* the gauge is the simulated Mark-10 (`labctl_drivers.mark10.sim_gauge.SimulatedMark10`), which
  reads `force_N` of the stack and answers the real driver in GCL2 bytes.

The numbers are those of the model this replaces (`labctl_drivers.sim.pressure`): springs of
200 N/mm, gauge noise 0.2 N (1σ), so the cell feels the same pressures at the same times.

In-process, in four calls (the bench's clock, so a simulated run never sleeps)::

    stack = SimulatedSpringStack.for_cell("frame-1", cell)
    gauge = SimulatedMark10(stack.force_N, transport="inprocess", name="frame-1",
                            clock=bench.clock, noise_N=GAUGE_NOISE_N, rng=rng).start()
    frame = SpringPressureFrame(Mark10Gauge(gauge.url), area_mm2=stack.area_mm2,
                                name="frame-1", motor=stack.turn_screw_to)
    frame.request_pressure(10.0)  # the cell is assembled under pressure ...
    frame.connect()  # ... before the station checks its gauge

`simulated_frame()` does exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl_drivers.clock import Clock
from labctl_drivers.mark10 import Mark10Gauge
from labctl_drivers.mark10.sim_gauge import SimulatedMark10
from labctl_drivers.pressure_frame import SpringPressureFrame
from labctl_drivers.sim.faults import FaultPlan

__all__ = [
    "GAUGE_NOISE_N", "SPRING_N_PER_MM", "SimulatedFrame", "SimulatedSpringStack",
    "simulated_frame",
]

SPRING_N_PER_MM = 200.0  # disc-spring stack stiffness
GAUGE_NOISE_N = 0.2  # load-cell noise of the simulated gauge, 1σ


class SimulatedSpringStack:
    """Disc springs compressed by a screw, pressing one cell."""

    def __init__(
        self,
        name: str,
        area_mm2: float,
        on_pressure: Callable[[float], None] | None = None,
        *,
        thinning_um: Callable[[], float] | None = None,
        spring_N_per_mm: float = SPRING_N_PER_MM,
    ) -> None:
        """`area_mm2` is the cell's load-bearing area (pressure = force / area);
        `on_pressure(MPa)` is told the pressure whenever it may have changed (the cell's
        `set_pressure`); `thinning_um()` is how much thinner the cell is than at assembly."""
        if not area_mm2 > 0:
            raise ValueError("area must be positive")
        self.name = name
        self.area_mm2 = float(area_mm2)
        self.spring_N_per_mm = float(spring_N_per_mm)
        self._on_pressure = on_pressure or (lambda _p: None)
        self._thinning_um = thinning_um or (lambda: 0.0)
        self._compression_mm = 0.0
        self._thinning_at_set_um = 0.0
        self.screw_turns: list[float] = []  # every force the operator set, in order

    @classmethod
    def for_cell(cls, name: str, cell: Any, *,
                 spring_N_per_mm: float = SPRING_N_PER_MM) -> SimulatedSpringStack:
        """The stack pressing a simulated cell (`area_cm2`, `set_pressure`, and `thinning_um`
        if the cell model has one)."""
        return cls(name, float(cell.area_cm2) * 100.0, cell.set_pressure,
                   thinning_um=getattr(cell, "thinning_um", None),
                   spring_N_per_mm=spring_N_per_mm)

    def _spring_force_N(self) -> float:
        thinned_mm = (self._thinning_um() - self._thinning_at_set_um) / 1000.0
        return max(0.0, self.spring_N_per_mm * (self._compression_mm - thinned_mm))

    def force_N(self) -> float:
        """The force on the cell now (what the gauge's load cell sees). The cell is told the
        pressure it means, so it always feels what the gauge would read."""
        force = self._spring_force_N()
        self._on_pressure(force / self.area_mm2)
        return force

    def true_pressure_MPa(self) -> float:
        return self._spring_force_N() / self.area_mm2

    def turn_screw_to(self, force_N: float) -> None:
        """The simulated operator: turn the screw until the springs make `force_N`. (The
        frame asks for a force, as it tells a person; the operator watches the springs, not
        labctl.) The cell's present thickness becomes the new reference for drift."""
        if not force_N >= 0:
            raise ValueError(f"force must be >= 0 N, got {force_N}")
        self._thinning_at_set_um = self._thinning_um()
        self._compression_mm = float(force_N) / self.spring_N_per_mm
        self.screw_turns.append(float(force_N))
        self._on_pressure(self.true_pressure_MPa())

    def lose_pressure(self, fraction_left: float = 0.1) -> None:
        """Fault: the screw slips and the springs relax to `fraction_left` of their travel."""
        self._compression_mm *= fraction_left
        self._on_pressure(self.true_pressure_MPa())


@dataclass
class SimulatedFrame:
    """A simulated frame as a bench holds it: the real frame and the hardware under it."""

    frame: SpringPressureFrame
    stack: SimulatedSpringStack
    gauge: SimulatedMark10

    def close(self) -> None:
        self.frame.close()
        self.gauge.stop()


def simulated_frame(
    name: str,
    cell: Any,
    clock: Clock,
    *,
    rng: np.random.Generator | None = None,
    faults: FaultPlan | None = None,
    gauge_model: str = "M5-200",
    noise_N: float = GAUGE_NOISE_N,
    force_band_N: tuple[float, float] | None = None,
    timeout_s: float = 1.0,
    pressure_MPa: float | None = None,
    connect: bool = True,
) -> SimulatedFrame:
    """Build (and by default connect) a simulated frame pressing `cell`, in-process on
    `clock`: the spring stack, the simulated gauge registered as ``simgauge://NAME`` (faults of
    `faults` aimed at `name` are enacted by it), and the real frame over the real driver,
    worked by the simulated operator. `pressure_MPa` is the pressure the cell was assembled
    at: the operator sets it before the station connects, as on the bench, so the cell never
    sees an unloaded frame and the first reading is the loaded force."""
    stack = SimulatedSpringStack.for_cell(name, cell)
    gauge = SimulatedMark10(stack.force_N, transport="inprocess", name=name, clock=clock,
                            model=gauge_model, serial_number=f"SIM-{name}", noise_N=noise_N,
                            rng=rng, faults=faults).start()
    frame = SpringPressureFrame(Mark10Gauge(gauge.url, timeout_s=timeout_s),
                                area_mm2=stack.area_mm2, name=name, motor=stack.turn_screw_to,
                                force_band_N=force_band_N)
    if pressure_MPa is not None:
        frame.request_pressure(pressure_MPa)
    if connect:
        try:
            frame.connect()
        except Exception:
            gauge.stop()
            raise
    return SimulatedFrame(frame, stack, gauge)
