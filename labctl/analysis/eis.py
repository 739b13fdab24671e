"""Per-spectrum impedance products: lin-KK validity, DRT peaks, the paper's equivalent circuit.

The circuit is Wu et al.'s Fig. 2b (echem.md §3.3): R∞ + (R_GB‖CPE) + (R_SnO2‖CPE) +
(R_int‖CPE), written ``R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)``. Starting values come from the
DRT of the same spectrum (R∞, the grain-boundary peak near 1e-7 s and the remaining
polarisation), because a circuit fit from fixed guesses lands in different local minima as the
interface evolves. After the fit the three arcs are ordered by their time constant
τ = (R·Q)^(1/α), so "R_int" is always the slowest arc whatever order the optimiser left them in.
The SnO2 (~1e-3 s) and interfacial arcs overlap in τ, so their split can be poorly determined;
the standard errors say so, and the DRT's ``R_electrode_ohm`` (everything slower than the grain
boundary) is reported as the robust companion number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labctl.analysis.circuits import CircuitFit, fit_circuit
from labctl.analysis.drt import DrtResult, fit_drt
from labctl.analysis.kramers_kronig import KKResult, lin_kk

VERSION = "1"
PAPER_CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)"
ARC_NAMES = ("GB", "SnO2", "int")
#: DRT peaks faster than this are the NASICON grain boundary (paper: τ ≈ 1e-7 s).
GB_TAU_MAX_S = 1e-5


@dataclass(frozen=True)
class Arc:
    name: str
    R_ohm: float
    R_std_ohm: float
    tau_s: float
    alpha: float


@dataclass(frozen=True)
class CircuitResult:
    R0_ohm: float
    R0_std_ohm: float
    arcs: tuple[Arc, ...]  # GB, SnO2, int (ordered by τ)
    chi_square: float
    success: bool
    fit: CircuitFit


def spectrum(f: np.ndarray, z_re: np.ndarray, z_im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite, positive-frequency points as (f, Z) with Z = Z' + iZ'' (Z'' negative=capacitive)."""
    z = np.asarray(z_re, float) + 1j * np.asarray(z_im, float)
    ok = np.isfinite(z) & (np.asarray(f) > 0) & (z != 0)
    return np.asarray(f, float)[ok], z[ok]


def kk_check(f: np.ndarray, z: np.ndarray) -> KKResult:
    return lin_kk(f, z)


def drt(f: np.ndarray, z: np.ndarray, lambda_: float = 1e-3) -> DrtResult:
    """DRT with the paper's λ = 1e-3 (see drt.py)."""
    return fit_drt(f, z, lambda_=lambda_)


def electrode_resistance(d: DrtResult) -> float:
    """DRT area of every peak slower than the grain boundary (SnO2 + interfaces), Ohm."""
    return float(sum(p.resistance for p in d.peaks if p.tau > GB_TAU_MAX_S))


def fit_paper_circuit(f: np.ndarray, z: np.ndarray, d: DrtResult | None = None) -> CircuitResult:
    """Fit the paper's circuit, seeded from the DRT, weighting by |Z| (spans decades)."""
    d = d if d is not None else drt(f, z)
    gb = [p for p in d.peaks if p.tau <= GB_TAU_MAX_S]
    slow = [p for p in d.peaks if p.tau > GB_TAU_MAX_S]
    r_low = float(np.max(z.real)) - d.r_inf
    r_gb = sum(p.resistance for p in gb) or 0.1 * max(r_low, 1.0)
    r_rest = max(sum(p.resistance for p in slow), r_low - r_gb, 1.0)
    tau_slow = max([p.tau for p in slow], default=1e-2)

    def seed(r: float, tau: float, n: float) -> list[float]:
        return [r, tau**n / r, n]

    guess = [max(d.r_inf, 1e-3), *seed(max(r_gb, 1e-3), 1e-7, 0.9),
             *seed(0.3 * r_rest, 1e-3, 0.85), *seed(0.7 * r_rest, max(tau_slow, 2e-3), 0.8)]
    fit = fit_circuit(PAPER_CIRCUIT, f, z, guess, weight_by_modulus=True)
    v, e = fit.values, fit.std_errors
    arcs = []
    for k in range(3):
        r, q, n = v[1 + 3 * k: 4 + 3 * k]
        tau = (r * q) ** (1.0 / n) if r > 0 and q > 0 and n > 0 else math.nan
        arcs.append((tau, float(r), float(e[1 + 3 * k]), float(n)))
    arcs.sort(key=lambda a: (math.isnan(a[0]), a[0]))
    return CircuitResult(
        float(v[0]), float(e[0]),
        tuple(Arc(name, r, se, tau, n) for name, (tau, r, se, n) in zip(ARC_NAMES, arcs)),
        fit.chi_square, fit.success, fit,
    )
