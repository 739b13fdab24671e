"""The Na–K binary: liquid window, Na activity in the liquid, theoretical capacities.

Why this lives in its own, neutral package (`labctl_chemistry`, importing neither labctl nor
the drivers): both the digital twin (`labctl_drivers.sim.cells`) and the analyses (Q_crit /
Q_window / Q_all reporting of the critical stripping test, Wu et al., J. Mater. Chem. A 2025,
Fig. 1d/e) need the same numbers, and the liquidus is the one input users are expected to edit
(the literature room-temperature windows disagree by several wt %). The tables are therefore
shipped as CSV package data in `chemistry/data/` and interpolated at run time instead of being
hard-coded.

Conventions: compositions are K *mass fractions* (0..1, "w"), temperatures in °C at the API,
capacities in mAh per gram of *initial* alloy.

The Na activity uses a subregular Redlich–Kister liquid, G^E = x_Na x_K [L0 + L1 (x_Na − x_K)]
(L0 = 3428, L1 = 200 J/mol, fitted to the eutectic and peritectic of the Na–K diagram as assessed
by Bale, Bull. Alloy Phase Diagrams 3 (1982), after Ott et al., Trans. Faraday Soc. 65 (1969)
2870), the same model the tables were generated from, so the OCV and the
window boundaries are thermodynamically consistent with each other.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

FARADAY: float = 96485.33212  # C/mol
GAS_CONSTANT: float = 8.314462618  # J/(mol K)
M_NA: float = 22.98977  # g/mol
M_K: float = 39.0983  # g/mol
#: Specific capacity of pure Na, F/M_Na, in mAh/g (1165.8).
Q_NA_MAH_G: float = FARADAY / M_NA / 3.6

#: Redlich–Kister parameters of the liquid (see the module docstring), J/mol.
RK_L0: float = 3428.0
RK_L1: float = 200.0

#: Eutectic L -> Na2K + K(s); below this there is no liquid at all.
EUTECTIC_T_C: float = -12.6
EUTECTIC_W_K: float = 0.778

DATA_DIR: Path = Path(__file__).resolve().parent / "data"
LIQUIDUS_CSV: Path = DATA_DIR / "nak_liquidus_table.csv"
WINDOW_CSV: Path = DATA_DIR / "nak_liquid_window.csv"


def _read_numeric_csv(path: Path) -> np.ndarray:
    """Rows of floats from a CSV, skipping '#' comment lines and blank lines.

    The shipped tables carry their provenance in a leading comment; users editing them in a
    spreadsheet may add more, so comments are tolerated anywhere.
    """
    rows: list[list[float]] = []
    with path.open(newline="") as fh:
        for raw in csv.reader(fh):
            if not raw or not raw[0].strip() or raw[0].lstrip().startswith("#"):
                continue
            try:
                rows.append([float(x) for x in raw])
            except ValueError:  # a header line without '#'
                continue
    if not rows:
        raise ValueError(f"no numeric rows in {path}")
    return np.asarray(rows, dtype=float)


@dataclass(frozen=True)
class LiquidWindow:
    """Interpolated boundaries of the Na–K liquid, built from the two editable tables.

    The window table (T -> low/high wt % K) is used inside its temperature range because it was
    tabulated directly; outside that range the liquidus table (wt % K -> T_liq) is inverted,
    branch by branch, so that e.g. 60–98 °C still works (the window table stops at 60 °C).
    """

    window_T_C: np.ndarray
    window_low: np.ndarray  # fraction K
    window_high: np.ndarray  # fraction K
    na_branch_T_C: np.ndarray  # increasing T, liquidus of the Na-rich side
    na_branch_w: np.ndarray  # corresponding w (decreasing with T)
    k_branch_T_C: np.ndarray  # increasing T, liquidus of the K-rich side
    k_branch_w: np.ndarray

    @classmethod
    def from_csv(
        cls, liquidus_csv: Path = LIQUIDUS_CSV, window_csv: Path = WINDOW_CSV
    ) -> LiquidWindow:
        liq = _read_numeric_csv(liquidus_csv)
        win = _read_numeric_csv(window_csv)
        w_pct, t_liq = liq[:, 0], liq[:, -1]
        order = np.argsort(w_pct)
        w_pct, t_liq = w_pct[order], t_liq[order]
        i_eut = int(np.argmin(t_liq))  # the eutectic splits the two branches
        na_w, na_t = w_pct[: i_eut + 1] / 100.0, t_liq[: i_eut + 1]
        k_w, k_t = w_pct[i_eut:] / 100.0, t_liq[i_eut:]
        na_order = np.argsort(na_t)
        win = win[np.argsort(win[:, 0])]
        return cls(
            window_T_C=win[:, 0],
            window_low=win[:, 1] / 100.0,
            window_high=win[:, 2] / 100.0,
            na_branch_T_C=na_t[na_order],
            na_branch_w=na_w[na_order],
            k_branch_T_C=k_t,
            k_branch_w=k_w,
        )

    def _boundary(
        self, T_C: ArrayLike, table: np.ndarray, branch_T: np.ndarray, branch_w: np.ndarray
    ) -> np.ndarray:
        T = np.asarray(T_C, dtype=float)
        inside = (T >= self.window_T_C[0]) & (T <= self.window_T_C[-1])
        from_window = np.interp(T, self.window_T_C, table)
        from_liquidus = np.interp(T, branch_T, branch_w)
        return np.where(inside, from_window, from_liquidus)

    def w_max(self, T_C: ArrayLike) -> np.ndarray:
        """K-rich boundary of the liquid (K(s) precipitates beyond it), K mass fraction."""
        return self._boundary(T_C, self.window_high, self.k_branch_T_C, self.k_branch_w)

    def w_min(self, T_C: ArrayLike) -> np.ndarray:
        """Na-rich boundary of the liquid (Na(s) or Na2K precipitates below it), K mass fraction."""
        return self._boundary(T_C, self.window_low, self.na_branch_T_C, self.na_branch_w)


@lru_cache(maxsize=1)
def default_window() -> LiquidWindow:
    """The window built from the package-data CSVs, loaded once per process."""
    return LiquidWindow.from_csv()


def w_max(T_C: float) -> float:
    """K-rich liquidus limit at T (K mass fraction); e.g. 0.928 at 25 °C.

    Below the eutectic (−12.6 °C) there is no liquid; the value is then clamped to the eutectic
    composition so callers get a finite number — use `is_liquid` to test for that case.
    """
    return float(default_window().w_max(T_C))


def w_min(T_C: float) -> float:
    """Na-rich liquidus limit at T (K mass fraction); e.g. 0.393 at 25 °C."""
    return float(default_window().w_min(T_C))


def is_liquid(w: float, T_C: float) -> bool:
    """Whether an alloy of K mass fraction w is fully liquid at T."""
    if T_C < EUTECTIC_T_C:
        return False
    return w_min(T_C) <= w <= w_max(T_C)


def mole_fraction_k(w: ArrayLike) -> np.ndarray:
    """K mole fraction from K mass fraction."""
    w_arr = np.asarray(w, dtype=float)
    n_k = w_arr / M_K
    n_na = (1.0 - w_arr) / M_NA
    return n_k / (n_k + n_na)


def ln_activity_na(w: ArrayLike, T_C: ArrayLike) -> np.ndarray:
    """ln a_Na of the liquid (reference: pure liquid Na), subregular RK model.

    RT ln γ_Na = x_K² [L0 + L1 (3 x_Na − x_K)], the partial of
    G^E = x_Na x_K [L0 + L1 (x_Na − x_K)].
    Vectorised because the simulator evaluates it for whole constant-current chunks at once.
    """
    x_k = mole_fraction_k(w)
    x_na = 1.0 - x_k
    T = np.asarray(T_C, dtype=float) + 273.15
    ln_gamma = x_k**2 * (RK_L0 + RK_L1 * (3.0 * x_na - x_k)) / (GAS_CONSTANT * T)
    with np.errstate(divide="ignore"):
        return np.log(x_na) + ln_gamma


def activity_na(w: ArrayLike, T_C: ArrayLike) -> np.ndarray:
    """Na activity a_Na = x_Na γ_Na in the liquid."""
    return np.exp(ln_activity_na(w, T_C))


def ocv_vs_na(w: ArrayLike, T_C: float, clamp: bool = True) -> np.ndarray:
    """Equilibrium potential of NaK (K mass fraction w) against Na metal, in V.

    E = −(RT/F) ln a_Na. With `clamp`, w is limited to the liquid window: beyond w_max the liquid
    coexists with K(s) and its composition (hence a_Na) is pinned at the liquidus (in this
    model +28.5 mV at 25 °C); likewise Na-side precipitation pins it at w_min.
    """
    w_arr = np.asarray(w, dtype=float)
    if clamp:
        w_arr = np.clip(w_arr, w_min(T_C), w_max(T_C))
    T = T_C + 273.15
    return -(GAS_CONSTANT * T / FARADAY) * ln_activity_na(w_arr, T_C)


def q_all(w0: ArrayLike) -> np.ndarray:
    """Capacity if every Na atom were removed, mAh per g of initial alloy: Q_Na (1 − w0)."""
    return Q_NA_MAH_G * (1.0 - np.asarray(w0, dtype=float))


def q_window(w0: ArrayLike, T_C: float) -> np.ndarray:
    """Capacity until the remaining liquid hits the K-rich liquidus: Q_Na (1 − w0 / w_max(T)).

    K is conserved (NASICON does not conduct K+), so the final mass is w0 m0 / w_max. Clipped at
    zero for alloys already beyond the liquidus.
    """
    w0_arr = np.asarray(w0, dtype=float)
    return np.maximum(0.0, Q_NA_MAH_G * (1.0 - w0_arr / w_max(T_C)))


def q_plate(w0: ArrayLike, T_C: float) -> np.ndarray:
    """Na that can be plated into the alloy before the Na-rich boundary: Q_Na (w0 / w_min − 1)."""
    w0_arr = np.asarray(w0, dtype=float)
    return np.maximum(0.0, Q_NA_MAH_G * (w0_arr / w_min(T_C) - 1.0))


def composition_after(w0: ArrayLike, q_mAh_g: ArrayLike) -> np.ndarray:
    """K mass fraction after stripping q mAh per g of alloy: w = w0 / (1 − q/Q_Na).

    Negative q means plating (Na added). Returns 1.0 once all Na is gone (q ≥ Q_all).
    """
    w0_arr = np.asarray(w0, dtype=float)
    denom = 1.0 - np.asarray(q_mAh_g, dtype=float) / Q_NA_MAH_G
    with np.errstate(divide="ignore", invalid="ignore"):
        w = w0_arr / denom
    return np.where(denom > w0_arr, w, 1.0)


def q_for_composition(w0: ArrayLike, w: ArrayLike) -> np.ndarray:
    """Inverse of `composition_after`: mAh/g stripped to move from w0 to w."""
    return Q_NA_MAH_G * (1.0 - np.asarray(w0, dtype=float) / np.asarray(w, dtype=float))


def ln_activity_na_scalar(w: float, T_C: float) -> float:
    """Scalar twin of `ln_activity_na` (pure `math`), ~20× faster for one value.

    The simulator's per-step path evaluates this once or twice per simulated second; numpy's
    per-call overhead would dominate there.
    """
    n_k = w / M_K
    n_na = (1.0 - w) / M_NA
    x_k = n_k / (n_k + n_na)
    x_na = 1.0 - x_k
    ln_gamma = x_k * x_k * (RK_L0 + RK_L1 * (3.0 * x_na - x_k)) / (GAS_CONSTANT * (T_C + 273.15))
    return (math.log(x_na) if x_na > 0.0 else -math.inf) + ln_gamma
