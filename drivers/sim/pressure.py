"""A simulated spring-loaded pressure frame with a force gauge.

The frame is a stack of disc springs compressed by a screw (or a motor, if fitted). The gauge
reads the spring force; pressure is force over the electrode area (landt_pressure.md §2.3,
P[MPa] = F[N] / A[mm²]). The force drifts as the cell thins or swells under the springs, and a
`pressure_loss` fault drops it (a slipped screw). Whatever the frame applies is what the cell
feels: the bench wires `set_pressure` of the cell to every change.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labctl_drivers.clock import Clock
from labctl_drivers.interfaces import InstrumentError
from labctl_drivers.sim.faults import FaultPlan


class SimulatedPressureFrame:
    simulated = True

    def __init__(
        self, name: str, clock: Clock, area_cm2: float, rng: np.random.Generator,
        faults: FaultPlan, on_pressure: Callable[[float], None],
        spring_N_per_mm: float = 200.0, gauge_noise_N: float = 0.2,
        thinning_um: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.area_mm2 = area_cm2 * 100.0
        self.rng = rng
        self.faults = faults
        self.spring_N_per_mm = spring_N_per_mm
        self.gauge_noise_N = gauge_noise_N
        self._on_pressure = on_pressure
        self._thinning_um = thinning_um or (lambda: 0.0)
        self._compression_mm = 0.0
        self._thinning_at_set_um = 0.0
        self.setpoint_MPa: float | None = None

    def _force_N(self) -> float:
        thinned_mm = (self._thinning_um() - self._thinning_at_set_um) / 1000.0
        return max(0.0, self.spring_N_per_mm * (self._compression_mm - thinned_mm))

    def true_pressure_MPa(self) -> float:
        return self._force_N() / self.area_mm2

    def read_force_N(self) -> float:
        self.faults.check(self.name, "read", self.clock.now())
        self._on_pressure(self.true_pressure_MPa())
        return self._force_N() + float(self.rng.normal(0.0, self.gauge_noise_N))

    def read_pressure_MPa(self) -> float:
        return self.read_force_N() / self.area_mm2

    def request_pressure(self, pressure_MPa: float) -> None:
        """The simulated operator turns the screw until the gauge shows the set-point."""
        if pressure_MPa < 0:
            raise InstrumentError("pressure set-point must be >= 0")
        self.setpoint_MPa = pressure_MPa
        self._thinning_at_set_um = self._thinning_um()
        self._compression_mm = pressure_MPa * self.area_mm2 / self.spring_N_per_mm
        self._on_pressure(pressure_MPa)

    def lose_pressure(self, fraction_left: float = 0.1) -> None:
        self._compression_mm *= fraction_left
        self._on_pressure(self.true_pressure_MPa())
