"""Stack pressure from a spring-loaded frame read by a force gauge.

P = F / A with A the smallest load-bearing area in the stack (usually the electrode disc):
F [N] / A [mm^2] = P [MPa]. 10 mm electrode: 1 MPa = 78.5 N, 10 MPa = 785.4 N.

`connect()` is the station's plausibility check, run before any current flows: it opens the
gauge, identifies it (model, serial number, firmware), checks that it prints a unit the driver
can convert, and takes a first reading that must lie inside the frame's force band — by
default 0 to the gauge's capacity (from its model number: M5-200 = 200 lbF = 889.6 N). A gauge
that reads 3 kN on a frame whose springs cannot make 900 N, or a gauge smaller than the band
the station declares, is not what the station file says it is, and the station refuses to start.

A manual spring frame is set by the operator turning the screw; labctl cannot move it.
`request_pressure` therefore records the set-point (and the force it means) so that the UI can
tell the operator "turn the screw until F = x N" and the engine can alarm on drift. If the frame
is motorised — or, in simulation, worked by the simulated operator
(`labctl_drivers.sim.spring_frame.SimulatedSpringStack.turn_screw_to`) — pass a `motor`
callable and it is asked to move to the force instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from labctl_drivers.errors import InstrumentError, NotConnected, OutOfBand
from labctl_drivers.interfaces import InstrumentIdentity

log = logging.getLogger(__name__)

#: How far below a band's lower edge a first reading may lie and still count as inside it: a
#: tared, unloaded gauge scatters around zero by a few counts of its resolution.
ZERO_TOLERANCE_N = 1.0


@runtime_checkable
class ForceGauge(Protocol):
    """What a frame needs of its gauge: a force in newtons (compression positive)."""

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
        force_band_N: tuple[float, float] | None = None,
        simulated: bool = False,
    ) -> None:
        """Give exactly one of `electrode_diameter_mm` or `area_mm2` (the load-bearing area).
        `motor(force_N)` is called by `request_pressure` when the frame can move itself.
        `force_band_N` is the (low, high) force a first reading must lie in; None means 0 to
        the gauge's capacity. `simulated` marks the frame simulated even if its gauge does not
        say so (a gauge stand-in in a test)."""
        if (electrode_diameter_mm is None) == (area_mm2 is None):
            raise ValueError("give exactly one of electrode_diameter_mm or area_mm2")
        if electrode_diameter_mm is not None:
            area_mm2 = math.pi * float(electrode_diameter_mm) ** 2 / 4.0
        assert area_mm2 is not None
        if not area_mm2 > 0:
            raise ValueError("area must be positive")
        if force_band_N is not None:
            low, high = (float(x) for x in force_band_N)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"force_band_N must be (low, high) with low < high, "
                                 f"got {force_band_N}")
            force_band_N = (low, high)
        self.gauge = gauge
        self.area_mm2 = float(area_mm2)
        self.electrode_diameter_mm = electrode_diameter_mm
        self.name = name
        self.motor = motor
        self.declared_band_N = force_band_N
        self.force_band_N: tuple[float, float] | None = force_band_N
        self._simulated = simulated
        self._identity: InstrumentIdentity | None = None
        self.setpoint_MPa: float | None = None

    # -- connection -----------------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        """True when the gauge is a simulated one (it says so, or its transport does)."""
        return self._simulated or bool(getattr(self.gauge, "simulated", False))

    def connect(self) -> None:
        """Open the gauge, identify it, check its unit and take a first reading inside the
        force band; raise an `InstrumentError` (`OutOfBand` for a reading or a band the gauge
        cannot hold) otherwise, with the gauge closed again. Changes nothing on the gauge (no
        tare, no unit change)."""
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        opener = getattr(self.gauge, "open", None)
        if opener is not None:
            opener()
        identity = getattr(self.gauge, "identity", None)
        model, serial_number, firmware = "force gauge", None, None
        capacity: float | None = None
        if identity is not None:
            ident = identity()
            model, serial_number, firmware = ident.model, ident.serial_number, ident.firmware
            capacity = ident.capacity_N
        band = self.declared_band_N
        if band is None:
            if capacity is None:
                raise InstrumentError(f"{self.name}: cannot tell the capacity of gauge "
                                      f"{model!r}; declare force_band_N for this frame")
            band = (0.0, capacity)
        elif capacity is not None and band[1] > capacity * (1 + 1e-9):
            raise OutOfBand(f"{self.name}: force band up to {band[1]:.1f} N exceeds the "
                            f"capacity of gauge {model} ({capacity:.1f} N)")
        read_current = getattr(self.gauge, "read_current", None)
        if read_current is not None:
            reading = read_current()
            unit = reading.unit
            force = reading.newtons  # raises UnitNotShown for a gauge printing no unit
        else:
            unit, force = "N", float(self.gauge.read_force_N())
        low, high = band
        if not (low - ZERO_TOLERANCE_N <= force <= high):
            raise OutOfBand(f"{self.name}: gauge {model} reads {force:.1f} N, outside the "
                            f"frame's band {low:g}..{high:g} N: not the gauge this frame has?")
        self.force_band_N = band
        address = str(getattr(self.gauge, "address", ""))
        self._identity = InstrumentIdentity(
            model=f"Mark-10 {model}" if identity is not None else model,
            serial_number=serial_number, firmware=firmware, address=address,
            simulated=self.simulated,
            details=(
                ("capacity_N", "unknown" if capacity is None else f"{capacity:.1f}"),
                ("force_band_N", f"{low:g}..{high:g}"),
                ("unit", unit),
                ("first_reading_N", f"{force:.1f}"),
                ("area_mm2", f"{self.area_mm2:.2f}"),
                ("actuator", "motor" if self.motor is not None else "operator"),
            ),
        )
        log.info("%s: %s %s reads %.1f N (band %g..%g N)", self.name, model,
                 serial_number or "", force, low, high)

    def close(self) -> None:
        closer = getattr(self.gauge, "close", None)
        if closer is not None:
            closer()

    def identity(self) -> InstrumentIdentity:
        if self._identity is None:
            raise NotConnected(f"{self.name}: connect() first")
        return self._identity

    # -- pressure -------------------------------------------------------------------------
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
