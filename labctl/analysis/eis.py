"""Per-spectrum impedance products: lin-KK validity, DRT peaks, the paper's equivalent circuit.

The circuit is Wu et al.'s Fig. 2b: R∞ + (R_GB‖CPE) + (R_SnO2‖CPE) + (R_int‖CPE). An R‖CPE is a
ZARC, R/(1 + (iωτ)^α) with Q = τ^α/R, so it is fitted here in (R, log10 τ, α): bounds then say
what is physical in the units the spectrum resolves — R between 0 and ten times the largest Z',
τ within a decade of the measured window [1/(2π f_max), 1/(2π f_min)], α in [0.5, 1] — and a fit
cannot wander to R = 1e8 Ω with τ = 1e8 s. Starting values come from the DRT of the same
spectrum (R∞, the grain-boundary peak near 1e-7 s, the slower peaks), because fixed guesses land
in different local minima as the interface evolves; two starts are tried and the better kept.

Every value carries a quality (labctl.analysis.fit_quality): parameters at a bound, standard
errors not finite, below 1e-6 or above 100 % relative, strong correlations, τ outside the
measured window, a failed lin-KK check. The SnO2 (~1e-3 s) and interfacial arcs overlap in τ,
so on many spectra the paper's split is not identifiable. Then the spectrum is also fitted with
one electrode arc in their place (R∞ + GB + one ZARC), and that model's resistance is reported
as the identifiable combination R_SnO2 + R_int, with the split flagged as not identifiable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labctl.analysis.circuits import least_squares_with_covariance
from labctl.analysis.drt import DrtResult, fit_drt
from labctl.analysis.fit_quality import FitQuality, assess
from labctl.analysis.kramers_kronig import KKResult, lin_kk

VERSION = "2"
PAPER_CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)"
ARC_NAMES = ("GB", "SnO2", "int")
#: DRT peaks faster than this are the NASICON grain boundary (paper: τ ≈ 1e-7 s).
GB_TAU_MAX_S = 1e-5


ALPHA_BOUNDS = (0.5, 1.0)  # below 0.5 a "ZARC" is a diffusion tail, not a charge-transfer arc
TAU_MARGIN_DECADES = 1.0  # bounds on τ: this far outside the measured window


@dataclass(frozen=True)
class Arc:
    """One fitted ZARC; ``flag`` is why its values are not determined (None: they are)."""

    name: str
    R_ohm: float
    R_std_ohm: float
    tau_s: float
    tau_std_s: float
    alpha: float
    alpha_std: float
    flag: str | None


@dataclass(frozen=True)
class ZarcFit:
    """R∞ plus ZARCs ordered by τ, with the fit's quality."""

    R0_ohm: float
    R0_std_ohm: float
    R0_flag: str | None
    arcs: tuple[Arc, ...]
    chi_square: float
    quality: FitQuality
    covariance: np.ndarray  # of [R0, (R, log10 τ, α) per arc], arcs in τ order


@dataclass(frozen=True)
class CircuitResult:
    """The paper's circuit and what the spectrum determines of it.

    ``model`` is the fit the headline R∞ and R_GB come from: the paper's when its SnO2/interface
    split is identifiable, else the one-electrode-arc fit. ``electrode`` is R_SnO2 + R_int, the
    identifiable combination, with its standard error.
    """

    paper: ZarcFit
    combined: ZarcFit
    identifiable: bool
    electrode: Arc
    note: str | None

    @property
    def model(self) -> ZarcFit:
        return self.paper if self.identifiable else self.combined

    @property
    def arcs(self) -> tuple[Arc, ...]:
        return self.paper.arcs


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


def _zarcs(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """R∞ + Σ R/(1 + (iωτ)^α) for p = [R∞, (R, log10 τ, α) per arc]."""
    z = np.full(w.shape, p[0], dtype=complex)
    for k in range(1, p.size, 3):
        z = z + p[k] / (1.0 + (1j * w * 10.0 ** p[k + 1]) ** p[k + 2])
    return z


def fit_zarcs(f: np.ndarray, z: np.ndarray, names: tuple[str, ...], seeds: list[list[float]],
              kk: KKResult | None = None) -> ZarcFit:
    """Fit R∞ + one ZARC per name from each seed [R∞, (R, τ, α)...]; keep the lowest misfit.

    Residuals are weighted by 1/|Z| (a spectrum spans decades of |Z|).
    """
    w = 2.0 * np.pi * f
    window = (1.0 / w.max(), 1.0 / w.min())
    r_max = float(np.max(z.real))
    n = len(names)
    lt_lo = math.log10(window[0]) - TAU_MARGIN_DECADES
    lt_hi = math.log10(window[1]) + TAU_MARGIN_DECADES
    lo = np.array([0.0] + [0.0, lt_lo, ALPHA_BOUNDS[0]] * n)
    hi = np.array([r_max] + [10.0 * r_max, lt_hi, ALPHA_BOUNDS[1]] * n)
    target = np.concatenate([z.real, z.imag])
    sigma = np.tile(np.abs(z), 2)

    def residual(p: np.ndarray) -> np.ndarray:
        zm = _zarcs(p, w)
        return (np.concatenate([zm.real, zm.imag]) - target) / sigma

    best = None
    for seed in seeds:
        p0 = np.array([seed[0]] + [x for k in range(n) for x in (
            seed[1 + 3 * k], math.log10(seed[2 + 3 * k]), seed[3 + 3 * k])])
        p0 = np.clip(p0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
        res, cov = least_squares_with_covariance(residual, p0, (lo, hi), x_scale=np.abs(p0) + 1e-3)
        if best is None or res.cost < best[0].cost:
            best = (res, cov)
    assert best is not None
    res, cov = best
    v = res.x
    e = np.sqrt(np.abs(np.diag(cov)))
    order = sorted(range(n), key=lambda k: v[2 + 3 * k])  # by τ: "int" is always the slowest
    pnames = ["R0"]
    for name in names:
        pnames += [f"R_{name}", f"tau_{name}", f"alpha_{name}"]
    # parameters in τ order, so names and values line up after sorting
    idx = [0] + [1 + 3 * k + j for k in order for j in range(3)]
    v, e, cov = v[idx], e[idx], cov[np.ix_(idx, idx)]
    lo, hi = lo[idx], hi[idx]
    quality = assess(pnames, v, e, cov, (lo, hi), success=bool(res.success),
                     message=str(res.message),
                     log_parameters=[f"tau_{a}" for a in names],
                     time_constants={f"tau_{a}": 10.0 ** v[2 + 3 * k]
                                     for k, a in enumerate(names)},
                     tau_window=window)
    if kk is not None and not kk.passed:
        quality = quality.with_fit_reason(
            f"lin-KK residual {kk.max_residual:.3g} > {kk.threshold:.3g}")
    arcs = []
    for k, a in enumerate(names):
        r, lt, al = v[1 + 3 * k: 4 + 3 * k]
        tau = 10.0 ** lt
        arcs.append(Arc(a, float(r), float(e[1 + 3 * k]), float(tau),
                        float(tau * math.log(10.0) * e[2 + 3 * k]), float(al),
                        float(e[3 + 3 * k]),
                        quality.reason(f"R_{a}", f"tau_{a}", f"alpha_{a}")))
    return ZarcFit(float(v[0]), float(e[0]), quality.reason("R0"), tuple(arcs),
                   2.0 * float(res.cost), quality, cov)


def _peak_seeds(z: np.ndarray, d: DrtResult) -> tuple[tuple[float, float], list[tuple[float,
                                                                                  float]]]:
    """(R, τ) of the grain boundary and of the slower DRT peaks resolved by the data."""
    gb = [p for p in d.peaks if p.tau <= GB_TAU_MAX_S]
    slow = sorted((p for p in d.peaks if p.tau > GB_TAU_MAX_S and not p.edge_warning),
                  key=lambda p: p.tau)
    r_low = max(float(np.max(z.real)) - d.r_inf, 1e-3)
    r_gb = sum(p.resistance for p in gb) or 0.1 * r_low
    tau_gb = max(gb, key=lambda p: p.resistance).tau if gb else 1e-7
    return (max(r_gb, 1e-3), tau_gb), [(p.resistance, p.tau) for p in slow]


def fit_paper_circuit(f: np.ndarray, z: np.ndarray, d: DrtResult | None = None,
                      kk: KKResult | None = None) -> CircuitResult:
    """The paper's circuit, its quality, and the identifiable SnO2 + interface combination."""
    d = d if d is not None else drt(f, z)
    (r_gb, tau_gb), slow = _peak_seeds(z, d)
    r_rest = max(float(np.max(z.real)) - d.r_inf - r_gb, sum(r for r, _ in slow), 1e-3)
    r0 = max(d.r_inf, 1e-3)
    gb = [r_gb, tau_gb, 0.9]
    # the electrode's time constant: R-weighted geometric mean of the slower resolved peaks
    tau_el = (math.exp(sum(r * math.log(t) for r, t in slow) / sum(r for r, _ in slow))
              if slow else 2e-3)
    seeds3 = [[r0, *gb, 0.3 * r_rest, tau_el / 3.0, 0.85, 0.7 * r_rest, tau_el * 3.0, 0.8]]
    if len(slow) >= 2:
        (ra, ta), (rb, tb) = sorted(sorted(slow, key=lambda p: -p[0])[:2], key=lambda p: p[1])
        seeds3.append([r0, *gb, ra, ta, 0.85, rb, tb, 0.8])
    paper = fit_zarcs(f, z, ARC_NAMES, seeds3, kk)
    combined = fit_zarcs(f, z, ("GB", "SnO2_plus_int"), [[r0, *gb, r_rest, tau_el, 0.8]], kk)
    sno2, inter = paper.arcs[1], paper.arcs[2]
    if sno2.flag is None and inter.flag is None:
        cov = paper.covariance
        std = math.sqrt(max(cov[4, 4] + cov[7, 7] + 2.0 * cov[4, 7], 0.0))
        electrode = Arc("SnO2_plus_int", sno2.R_ohm + inter.R_ohm, std, math.nan, math.nan,
                        math.nan, math.nan, None)
        return CircuitResult(paper, combined, True, electrode, None)
    note = ("SnO2 and interface arcs are not separable on this spectrum "
            f"({sno2.flag or inter.flag}); R_SnO2_plus_int is the identifiable combination, "
            "from R∞ + GB + one electrode arc")
    paper = _flag_split(paper, note)
    return CircuitResult(paper, combined, False, combined.arcs[1], note)


def _flag_split(fit: ZarcFit, note: str) -> ZarcFit:
    """The paper fit with its SnO2 and interface arcs flagged as a not identifiable split."""
    arcs = tuple(a if a.name == "GB" else
                 Arc(a.name, a.R_ohm, a.R_std_ohm, a.tau_s, a.tau_std_s, a.alpha, a.alpha_std,
                     a.flag or note)
                 for a in fit.arcs)
    return ZarcFit(fit.R0_ohm, fit.R0_std_ohm, fit.R0_flag, arcs, fit.chi_square, fit.quality,
                   fit.covariance)
