"""Stack pressure from a spring-loaded frame read by a force gauge (landt_pressure.md §2.3-2.4).

P = F / A with A the smallest load-bearing area in the stack (usually the electrode disc):
F [N] / A [mm^2] = P [MPa]. 10 mm electrode: 1 MPa = 78.5 N, 10 MPa = 785.4 N.

A manual spring frame is set by the operator turning the screw; labctl cannot move it.
`request_pressure` therefore records the set-point (and the force it means) so that the UI can
tell the operator "turn the screw until F = x N" and the engine can alarm on drift. If the frame
is motorised, pass a `motor` callable and it is asked to move to the force instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class ForceGauge(Protocol):
    def read_force_N(self) -> float: ...


class SpringPressureFrame:
    """`PressureFrame` for a spring frame + force gauge; set-point by operator or optional motor."""

    def __init__(
        self,
        gauge: ForceGauge,
        *,
        electrode_diameter_mm: float | None = None,
        area_mm2: float | None = None,
        name: str = "spring-frame",
        motor: Callable[[float], None] | None = None,
        simulated: bool = False,
    ) -> None:
        """Give exactly one of `electrode_diameter_mm` or `area_mm2` (the load-bearing area).
        `motor(force_N)` is called by `request_pressure` when the frame can move itself."""
        if (electrode_diameter_mm is None) == (area_mm2 is None):
            raise ValueError("give exactly one of electrode_diameter_mm or area_mm2")
        if electrode_diameter_mm is not None:
            area_mm2 = math.pi * float(electrode_diameter_mm) ** 2 / 4.0
        assert area_mm2 is not None
        if area_mm2 <= 0:
            raise ValueError("area must be positive")
        self.gauge = gauge
        self.area_mm2 = float(area_mm2)
        self.electrode_diameter_mm = electrode_diameter_mm
        self.name = name
        self.motor = motor
        self.simulated = simulated
        self.setpoint_MPa: float | None = None

    def force_for_pressure_N(self, pressure_MPa: float) -> float:
        return float(pressure_MPa) * self.area_mm2

    def pressure_for_force_MPa(self, force_N: float) -> float:
        return float(force_N) / self.area_mm2

    @property
    def setpoint_force_N(self) -> float | None:
        return None if self.setpoint_MPa is None else self.force_for_pressure_N(self.setpoint_MPa)

    def read_force_N(self) -> float:
        return float(self.gauge.read_force_N())

    def read_pressure_MPa(self) -> float:
        return self.pressure_for_force_MPa(self.read_force_N())

    def request_pressure(self, pressure_MPa: float) -> None:
        """Record the set-point; move the motor if one is fitted, otherwise only log the
        instruction for the operator (a manual spring frame cannot be driven by labctl)."""
        if not math.isfinite(pressure_MPa) or pressure_MPa < 0:
            raise ValueError(f"pressure set-point must be >= 0 MPa, got {pressure_MPa}")
        self.setpoint_MPa = float(pressure_MPa)
        force = self.force_for_pressure_N(pressure_MPa)
        if self.motor is not None:
            self.motor(force)
        else:
            log.info("%s: %s", self.name, self.operator_instruction())

    def operator_instruction(self) -> str:
        if self.setpoint_MPa is None:
            return "no pressure set-point requested"
        return (
            f"turn the frame screw until the gauge reads {self.setpoint_force_N:.1f} N "
            f"({self.setpoint_MPa:g} MPa on {self.area_mm2:.2f} mm^2); labctl cannot move a "
            "manual spring frame"
        )

    def deviation_fraction(self) -> float | None:
        """(measured - set-point) / set-point, for drift alarms; None without a set-point."""
        if not self.setpoint_MPa:
            return None
        return (self.read_pressure_MPa() - self.setpoint_MPa) / self.setpoint_MPa
