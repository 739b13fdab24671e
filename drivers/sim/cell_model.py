"""The contract between a simulated instrument and the cell it is wired to.

Simulated instruments (the simulated SP-300 firmware, `labctl_drivers.biologic.sim_firmware`)
drive any object with this shape; the cell's physics lives entirely on the cell side, never in
the instrument or the engine.
Sign convention: positive current strips the working electrode (electrode 1) and plates the
counter (electrode 2); voltage is E_WE - E_CE in volts.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class CellModel(Protocol):
    area_cm2: float

    def set_pressure(self, pressure_MPa: float) -> None:
        """The stack pressure the cell feels now (from the simulated frame)."""
        ...

    def step(self, current_A: float, dt_s: float) -> float:
        """Advance the state by dt at a constant applied current; return the voltage at the end."""
        ...

    def run_constant_current(
        self, current_A: float, dt_s: float, n_steps: int,
        E_min_V: float | None = None, E_max_V: float | None = None,
    ) -> np.ndarray:
        """Advance up to n_steps of dt at constant current; return the voltage after each step.

        Stops early (shorter array) after the first step whose voltage leaves [E_min_V, E_max_V].
        Exists so that models can integrate long constant-current segments fast.
        """
        ...

    def solve_current(self, voltage_V: float, dt_s: float) -> float:
        """Advance the state by dt at an applied voltage; return the current that flowed."""
        ...

    def impedance(self, frequency_Hz: np.ndarray) -> np.ndarray:
        """Complex impedance (ohm) of the present state, small-signal around open circuit."""
        ...
