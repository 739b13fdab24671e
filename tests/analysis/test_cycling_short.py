"""The after-the-fact short screen of cycling runs scales with the cell, as the detectors do."""

from __future__ import annotations

import numpy as np

from labctl.analysis.cycling import HalfCycleData, analyze_cycling

AREA_10MM = np.pi * 0.5**2  # cm²


def _halves(plateaus_V: list[float], j_mA_cm2: float) -> list[HalfCycleData]:
    out = []
    for k, v in enumerate(plateaus_V):
        sign = 1.0 if k % 2 == 0 else -1.0
        out.append(HalfCycleData(k, sign * j_mA_cm2 * AREA_10MM, np.full(50, sign * v)))
    return out


def test_healthy_large_cell_at_low_current_density_is_not_a_short() -> None:
    """50 Ω·cm² at 0.036 mA/cm²: 1.8 mV plateaus, below the old absolute 2 mV floor."""
    res = analyze_cycling(_halves([0.0018] * 6, 0.036), AREA_10MM)
    assert res.short_cycle is None and res.cycle_overpotential_V[1] == 0.0018


def test_a_plateau_collapsing_to_the_shorts_drop_is_a_hard_short() -> None:
    res = analyze_cycling(_halves([0.0018] * 4 + [1e-5], 0.036), AREA_10MM)
    assert res.short_cycle == 3 and (res.short_reason or "").startswith("hard short")
