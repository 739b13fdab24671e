"""Critical stripping: how much Na the NaK anode gives before its potential runs away.

The critical capacity is the charge passed in the stripping step that ended on its voltage
cut-off, normalised per gram of alloy (`critical_capacity_mAh_g`, the paper's
Fig. 1d/e unit) and per cm², and compared with two theoretical capacities: all of the alloy's
Na (Q_all) and the Na that can leave before the alloy crosses the K-rich liquidus at the cell's
temperature (Q_window, from the Na–K phase diagram).
"""

from __future__ import annotations

from dataclasses import dataclass

from labctl_chemistry import phase_diagram as pd

VERSION = "1"


@dataclass(frozen=True)
class StrippingStep:
    step_id: int
    current_mA: float
    capacity_mAh: float  # |Q| passed
    end_reason: str | None


@dataclass(frozen=True)
class CriticalStripping:
    step_id: int
    capacity_mAh: float
    capacity_mAh_g: float | None
    capacity_mAh_cm2: float
    fraction_of_q_all: float | None
    fraction_of_q_window: float | None
    w_final: float | None  # K mass fraction the accessible alloy reached
    reached_cutoff: bool


def critical_stripping(
    steps: list[StrippingStep], area_cm2: float, alloy_mass_g: float | None,
    k_wt_pct: float | None, temperature_C: float,
) -> CriticalStripping | None:
    """Pick the stripping step (positive current) that passed the most charge and normalise it."""
    stripping = [s for s in steps if s.current_mA > 0]
    if not stripping:
        return None
    best = max(stripping, key=lambda s: s.capacity_mAh)
    per_g = best.capacity_mAh / alloy_mass_g if alloy_mass_g else None
    f_all = f_window = w_final = None
    if per_g is not None and k_wt_pct is not None:
        w0 = k_wt_pct / 100.0
        f_all = per_g / float(pd.q_all(w0))
        f_window = per_g / float(pd.q_window(w0, temperature_C))
        w_final = float(pd.composition_after(w0, per_g))
    return CriticalStripping(
        best.step_id, best.capacity_mAh, per_g, best.capacity_mAh / area_cm2, f_all, f_window,
        w_final, bool(best.end_reason and best.end_reason.startswith("E_")),
    )
