"""A plain equivalent-circuit cell: OCV + R_s + (R_ct || C_dl). Linear, no failure physics.

Useful where a test needs a cell whose response is known in closed form (engine, recorder and
instrument tests). The paper-faithful cells with voids, filaments and NaK phase separation are in
`labctl_drivers.sim.cells`.
"""

from __future__ import annotations

import math

import numpy as np


class EquivalentCircuitCell:
    def __init__(
        self, area_cm2: float = 0.5, ocv_V: float = 0.0, r_series_ohm: float = 100.0,
        r_ct_ohm: float = 50.0, c_dl_F: float = 1e-4, noise_V: float = 0.0, seed: int = 0,
    ) -> None:
        self.area_cm2 = area_cm2
        self.ocv_V = ocv_V
        self.r_series_ohm = r_series_ohm
        self.r_ct_ohm = r_ct_ohm
        self.c_dl_F = c_dl_F
        self.noise_V = noise_V
        self.v_ct = 0.0  # voltage across the RC element
        self.pressure_MPa = 0.0
        self.short_ohm: float | None = None
        self._rng = np.random.default_rng(seed)

    def set_pressure(self, pressure_MPa: float) -> None:
        self.pressure_MPa = pressure_MPa

    def inject_short(self, r_ohm_cm2: float = 0.3) -> None:
        self.short_ohm = r_ohm_cm2 / self.area_cm2

    def _noise(self, n: int) -> np.ndarray:
        return self._rng.normal(0.0, self.noise_V, n) if self.noise_V else np.zeros(n)

    def run_constant_current(
        self, current_A: float, dt_s: float, n_steps: int,
        E_min_V: float | None = None, E_max_V: float | None = None,
    ) -> np.ndarray:
        tau = self.r_ct_ohm * self.c_dl_F
        k = np.arange(1, n_steps + 1)
        if self.short_ohm is not None:
            E = np.full(n_steps, current_A * self.short_ohm)
        else:
            v_inf = current_A * self.r_ct_ohm
            v_ct = v_inf + (self.v_ct - v_inf) * np.exp(-k * dt_s / tau)
            E = self.ocv_V + current_A * self.r_series_ohm + v_ct
        E = E + self._noise(n_steps)
        out = np.zeros(n_steps, dtype=bool)
        if E_max_V is not None:
            out |= E > E_max_V
        if E_min_V is not None:
            out |= E < E_min_V
        stop = int(np.argmax(out)) + 1 if out.any() else n_steps
        if self.short_ohm is None:
            v_inf = current_A * self.r_ct_ohm
            self.v_ct = v_inf + (self.v_ct - v_inf) * math.exp(-stop * dt_s / tau)
        return E[:stop]

    def step(self, current_A: float, dt_s: float) -> float:
        return float(self.run_constant_current(current_A, dt_s, 1)[0])

    def solve_current(self, voltage_V: float, dt_s: float) -> float:
        if self.short_ohm is not None:
            return voltage_V / self.short_ohm
        # implicit Euler on the RC node with the series resistor
        tau = self.r_ct_ohm * self.c_dl_F
        a = dt_s / (self.c_dl_F * self.r_series_ohm)
        b = dt_s / tau
        self.v_ct = (self.v_ct + a * (voltage_V - self.ocv_V)) / (1 + a + b)
        return (voltage_V - self.ocv_V - self.v_ct) / self.r_series_ohm

    def impedance(self, frequency_Hz: np.ndarray) -> np.ndarray:
        w = 2 * np.pi * np.asarray(frequency_Hz, dtype=float)
        if self.short_ohm is not None:
            return self.short_ohm + 1j * w * 1e-7
        return self.r_series_ohm + self.r_ct_ohm / (1 + 1j * w * self.r_ct_ohm * self.c_dl_F)
