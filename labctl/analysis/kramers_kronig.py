"""Kramers–Kronig validity check by the linear KK test (Boukamp 1995; Schönleber 2014).

A causal, linear, stable and time-invariant system's impedance can be written as
R_0 + iωL + Σ_k R_k / (1 + iωτ_k) with τ_k log-spaced across the measured window. If a
least-squares fit of that (linear in R_k) model leaves systematic residuals, the
spectrum violates KK — most often because the cell drifted during the sweep (e.g. a
stripping interface still evolving) — and DRT or circuit fits on it are not
meaningful. Run this before DRT and mask or re-measure points above ~1 %.

M is chosen automatically by Schönleber's µ criterion: with too many RC elements the fit
starts to absorb noise with alternating-sign R_k, so M is increased until

    µ = 1 − Σ_{R_k<0} |R_k| / Σ_{R_k≥0} |R_k|

drops below ``mu_criterion`` (0.85 as in the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["KKResult", "lin_kk"]

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]


@dataclass(frozen=True)
class KKResult:
    """Result of :func:`lin_kk`.

    Residuals are relative to |Z| at each point, (Z − Z_KK)/|Z|, split into real and
    imaginary parts; ``passed`` is True when every |residual| is below ``threshold``.
    """

    frequencies: FloatArray
    m: int
    mu: float
    tau: FloatArray
    resistances: FloatArray  # R_k of the RC elements, Ohm
    r_0: float
    inductance: float
    capacitance_inverse: float  # 1/C of the optional series capacitor (0 if unused)
    z_fit: ComplexArray
    residuals_real: FloatArray
    residuals_imag: FloatArray
    max_residual: float
    threshold: float
    passed: bool


def _design(
    w: FloatArray, tau: FloatArray, with_l: bool, with_c: bool
) -> tuple[FloatArray, FloatArray]:
    """Real and imaginary design matrices for [R_0, R_1..R_M, (L), (1/C)]."""
    wt = w[:, None] * tau[None, :]
    d = 1.0 / (1.0 + wt * wt)
    cols_re = [np.ones_like(w)[:, None], d]
    cols_im = [np.zeros_like(w)[:, None], -wt * d]
    if with_l:
        cols_re.append(np.zeros_like(w)[:, None])
        cols_im.append(w[:, None])
    if with_c:
        cols_re.append(np.zeros_like(w)[:, None])
        cols_im.append(-1.0 / w[:, None])
    return np.hstack(cols_re), np.hstack(cols_im)


def _tau_for(m: int, w: FloatArray) -> FloatArray:
    lo, hi = 1.0 / w.max(), 1.0 / w.min()
    if m == 1:
        return np.array([math.sqrt(lo * hi)])
    return np.logspace(math.log10(lo), math.log10(hi), m)


def _fit(
    z: ComplexArray, w: FloatArray, tau: FloatArray, with_l: bool, with_c: bool
) -> tuple[FloatArray, ComplexArray]:
    a_re, a_im = _design(w, tau, with_l, with_c)
    # Weight by 1/|Z| so every point counts relatively: a spectrum spans decades of |Z|.
    wt = 1.0 / np.abs(z)
    a = np.vstack([a_re * wt[:, None], a_im * wt[:, None]])
    rhs = np.concatenate([z.real * wt, z.imag * wt])
    # Column scaling keeps lstsq well conditioned (the L column carries ω ~ 1e7).
    s = 1.0 / np.linalg.norm(a, axis=0)
    p = np.linalg.lstsq(a * s, rhs, rcond=None)[0] * s
    return p, a_re @ p + 1j * (a_im @ p)


def lin_kk(
    frequencies: ArrayLike,
    impedance: ArrayLike,
    *,
    m: int | None = None,
    mu_criterion: float = 0.85,
    max_m: int | None = None,
    fit_inductance: bool = True,
    fit_capacitance: bool = False,
    threshold: float = 0.01,
) -> KKResult:
    """Linear Kramers–Kronig test of a spectrum (f in Hz, Z = Z' + iZ'' in Ohm).

    ``m=None`` selects M automatically (µ criterion, up to ``max_m``, default the number
    of points). ``fit_inductance`` absorbs cable inductance, which is KK-compliant but
    not representable by RC elements; ``fit_capacitance`` is for blocking electrodes
    whose low-frequency branch does not return to the real axis. ``threshold`` is the
    largest allowed |relative residual| (default 1 %).
    """
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(impedance, dtype=complex)
    if f.ndim != 1 or f.shape != z.shape or f.size < 3:
        raise ValueError("need 1-D frequencies and impedance of equal length (≥ 3)")
    if np.any(f <= 0) or np.any(z == 0) or not np.all(np.isfinite(z)):
        raise ValueError("frequencies must be positive and impedance finite and non-zero")
    w = 2.0 * np.pi * f
    limit = f.size if max_m is None else max_m

    def evaluate(mm: int) -> tuple[FloatArray, FloatArray, ComplexArray, float]:
        tau = _tau_for(mm, w)
        p, zf = _fit(z, w, tau, fit_inductance, fit_capacitance)
        r = p[1 : 1 + mm]
        pos = float(np.abs(r[r >= 0]).sum())
        neg = float(np.abs(r[r < 0]).sum())
        mu = 1.0 - neg / pos if pos > 0 else -math.inf
        return tau, p, zf, mu

    if m is not None:
        chosen = m
        tau, p, zf, mu = evaluate(m)
    else:
        chosen = 1
        tau, p, zf, mu = evaluate(1)
        while mu >= mu_criterion and chosen < limit:
            chosen += 1
            tau, p, zf, mu = evaluate(chosen)

    mod = np.abs(z)
    res_re = (z.real - zf.real) / mod
    res_im = (z.imag - zf.imag) / mod
    max_res = float(max(np.abs(res_re).max(), np.abs(res_im).max()))
    k = 1 + chosen
    ind = float(p[k]) if fit_inductance else 0.0
    cinv = float(p[k + int(fit_inductance)]) if fit_capacitance else 0.0
    return KKResult(
        frequencies=f,
        m=chosen,
        mu=mu,
        tau=tau,
        resistances=p[1:k].copy(),
        r_0=float(p[0]),
        inductance=ind,
        capacitance_inverse=cinv,
        z_fit=zf,
        residuals_real=res_re,
        residuals_imag=res_im,
        max_residual=max_res,
        threshold=threshold,
        passed=max_res < threshold,
    )
