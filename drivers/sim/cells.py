"""Digital-twin cells: Na|NASICON|Na, NaK@CC|SnO2-NASICON|Na and NaK|NaK, and `make_cell`.

The twin is two modules side by side, a readable reference and a fast path that must give its
numbers (tests/sim/test_cell_physics.py compares them):

* `cells_reference` — the model (equations, parameters, calibration) and `PerStepCell`, which
  integrates it one explicit time step at a time in plain Python scalars;
* `cells_fast` — `SimulatedCell`, the same cell with closed-form chunks for the dormant regime
  and a shortcut for rest steps: what stations, benchmarks and the paper tests run.

This module is the public face: the named pairings below (all `SimulatedCell`s) and `make_cell`,
which builds one from a cell description, plus the names the rest of the code imports from here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from labctl_drivers.sim.cells_fast import SimulatedCell
from labctl_drivers.sim.cells_reference import (
    DEFAULT_NAK_LOADING_MG_CM2,
    K_BOLTZMANN_EV,
    NA_UM_PER_MAH_CM2,
    NAK_CALIBRATION,
    CellParameters,
    CellState,
    PerStepCell,
    na_metal_defaults,
    nak_defaults,
)

__all__ = [
    "DEFAULT_NAK_LOADING_MG_CM2",
    "K_BOLTZMANN_EV",
    "NAK_CALIBRATION",
    "NA_UM_PER_MAH_CM2",
    "CellParameters",
    "CellState",
    "NaKHalfCell",
    "NaKSymmetricCell",
    "NaSymmetricCell",
    "PerStepCell",
    "SimulatedCell",
    "make_cell",
    "na_metal_defaults",
    "nak_defaults",
]


class NaSymmetricCell(SimulatedCell):
    """Na | NASICON | Na symmetric cell (uncoated pellet unless `coated=True`)."""

    def __init__(self, params: CellParameters | None = None, **overrides: Any) -> None:
        super().__init__(
            params,
            **{
                **overrides,
                "anode_material": "Na",
                "counter": "Na",
                "k_wt_pct": None,
                "counter_k_wt_pct": None,
            },
        )


class NaKHalfCell(SimulatedCell):
    """NaK@carbon cloth | SnO2-NASICON | Na: the Na counter doubles as quasi-reference."""

    def __init__(self, params: CellParameters | None = None, **overrides: Any) -> None:
        super().__init__(
            params,
            **{**overrides, "anode_material": "NaK", "counter": "Na", "counter_k_wt_pct": None},
        )


class NaKSymmetricCell(SimulatedCell):
    """NaK | SnO2-NASICON | NaK symmetric cell; both electrodes get the same alloy and loading
    unless the counter fields are set explicitly."""

    def __init__(self, params: CellParameters | None = None, **overrides: Any) -> None:
        p = replace(params or CellParameters(), **overrides)
        super().__init__(
            p,
            anode_material="NaK",
            counter="NaK",
            counter_k_wt_pct=p.counter_k_wt_pct if p.counter_k_wt_pct is not None else p.k_wt_pct,
            counter_alloy_mass_mg=p.counter_alloy_mass_mg
            if p.counter_alloy_mass_mg is not None
            else p.alloy_mass_mg,
        )


def make_cell(
    anode_material: str,
    k_wt_pct: float | None,
    alloy_mass_mg: float | None,
    counter: str,
    counter_k_wt_pct: float | None,
    area_cm2: float,
    temperature_C: float,
    pressure_MPa: float,
    seed: int,
    coated: bool | None = None,
) -> SimulatedCell:
    """Build the twin for a cell description; picks the named class for known pairings.

    Material names are matched case-insensitively ("na", "NaK", "nak"); `alloy_mass_mg` applies
    to every NaK electrode (None = DEFAULT_NAK_LOADING_MG_CM2 × area).
    """

    def norm(m: str) -> str:
        key = m.strip().lower()
        if key in ("na", "sodium", "na metal"):
            return "Na"
        if key in ("nak", "na-k", "nak alloy"):
            return "NaK"
        raise ValueError(f"unknown electrode material {m!r} (expected 'Na' or 'NaK')")

    a, c = norm(anode_material), norm(counter)
    p = CellParameters(
        area_cm2=area_cm2,
        anode_material=a,
        k_wt_pct=k_wt_pct if a == "NaK" else None,
        alloy_mass_mg=alloy_mass_mg,
        counter=c,
        counter_k_wt_pct=counter_k_wt_pct if c == "NaK" else None,
        counter_alloy_mass_mg=alloy_mass_mg if c == "NaK" else None,
        temperature_C=temperature_C,
        pressure_MPa=pressure_MPa,
        seed=seed,
        coated=coated,
    )
    if a == "Na" and c == "Na":
        return NaSymmetricCell(p)
    if a == "NaK" and c == "Na":
        return NaKHalfCell(p)
    if a == "NaK" and c == "NaK":
        if p.counter_k_wt_pct is None:
            p = replace(p, counter_k_wt_pct=k_wt_pct)
        return NaKSymmetricCell(p)
    return SimulatedCell(p)
