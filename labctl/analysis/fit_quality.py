"""Whether a fitted parameter is determined by the data: the quality every fitted value carries.

A least-squares optimiser reports "success" whenever its step criteria are met, which says
nothing about whether the data pin the parameters down. A fit of more elements than a spectrum
resolves (two arcs with nearly the same time constant, a single arc fitted with three) still
"converges", with values anywhere along a valley of equal misfit. The symptoms are the textbook
ones for non-linear regression (Bates & Watts, *Nonlinear Regression Analysis and Its
Applications*, Wiley 1988, ch. 2–3; the same covariance as scipy's ``curve_fit``):

* a parameter sitting on a bound (the optimum is outside what the model allows);
* a standard error that is not finite, or implausibly small (rank-deficient Jacobian: the
  pseudo-inverse reports ~0 for a direction the data do not constrain), or larger than the
  value itself (the data allow anything from 0 to twice it);
* two parameters almost perfectly correlated (only their combination is determined);
* a time constant outside what the measured frequencies can resolve, [1/(2π f_max), 1/(2π f_min)];
* a spectrum that fails the Kramers–Kronig check (no equivalent circuit is meaningful on it).

`assess` turns these into reasons per parameter; a parameter with any reason is *flagged*: it is
stored with the reason, never reported as a headline value, and never sent in a notification.
`Flagged` is how a flagged value travels in a results mapping, so whoever renders one sees the
reason instead of a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["CORRELATION_MAX", "REL_STD_MAX", "REL_STD_MIN", "FitQuality", "Flagged", "assess"]

#: below this relative standard error the error is an artefact of a rank-deficient Jacobian,
#: not a measurement: no impedance spectrum with noise determines a parameter to 1 ppm
REL_STD_MIN = 1e-6
#: above this (100 %) the data do not determine the parameter at all
REL_STD_MAX = 1.0
#: |correlation| above this: only a combination of the two parameters is determined
CORRELATION_MAX = 0.99
#: a parameter within this fraction of its bound range of a bound is "at the bound"
AT_BOUND_FRACTION = 1e-6


@dataclass(frozen=True)
class Flagged:
    """A result value that failed its quality check, as it travels in a results mapping.

    ``str()`` gives the reason, not the value, so a CLI line or a notification that formats
    it cannot show the number by accident; the value stays available for storage.
    """

    value: float | str | None
    reason: str

    def __str__(self) -> str:
        return f"not reported (flagged: {self.reason})"


@dataclass(frozen=True)
class FitQuality:
    """Reasons a fit's parameters are not determined: per parameter and for the whole fit."""

    per_parameter: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    whole_fit: tuple[str, ...] = ()

    def reason(self, *names: str) -> str | None:
        """Why the value computed from `names` is flagged (None: it is good)."""
        reasons = list(self.whole_fit)
        for n in names:
            reasons += [r for r in self.per_parameter.get(n, ()) if r not in reasons]
        return "; ".join(reasons) if reasons else None

    @property
    def good(self) -> bool:
        return not self.whole_fit and not any(self.per_parameter.values())

    def with_fit_reason(self, reason: str) -> FitQuality:
        return FitQuality(self.per_parameter, (*self.whole_fit, reason))


def assess(
    names: Sequence[str], values: ArrayLike, std_errors: ArrayLike, covariance: ArrayLike,
    bounds: tuple[ArrayLike, ArrayLike], *, success: bool = True, message: str = "",
    log_parameters: Sequence[str] = (),
    time_constants: Mapping[str, float] | None = None,
    tau_window: tuple[float, float] | None = None,
) -> FitQuality:
    """Check a fit's parameters against the symptoms of non-identifiability (module docstring).

    ``log_parameters`` are fitted as log10 of the physical value: their standard error is
    already relative (σ·ln 10). ``time_constants`` maps a parameter name to the τ it stands
    for, checked against ``tau_window`` (s).
    """
    v = np.asarray(values, dtype=float)
    e = np.asarray(std_errors, dtype=float)
    cov = np.asarray(covariance, dtype=float)
    lo, hi = (np.broadcast_to(np.asarray(b, dtype=float), v.shape) for b in bounds)
    per: dict[str, list[str]] = {n: [] for n in names}
    for k, n in enumerate(names):
        span = hi[k] - lo[k]
        tol = AT_BOUND_FRACTION * (span if math.isfinite(span) else max(abs(v[k]), 1.0))
        if math.isfinite(lo[k]) and v[k] - lo[k] <= tol:
            per[n].append(f"{n} at its lower bound {lo[k]:.3g}")
        elif math.isfinite(hi[k]) and hi[k] - v[k] <= tol:
            per[n].append(f"{n} at its upper bound {hi[k]:.3g}")
        rel = e[k] * math.log(10.0) if n in log_parameters else (
            e[k] / abs(v[k]) if v[k] != 0 else math.inf)
        if not math.isfinite(rel):
            per[n].append(f"{n} standard error not finite")
        elif rel < REL_STD_MIN:
            per[n].append(f"{n} standard error implausibly small ({rel:.1e} relative)")
        elif rel > REL_STD_MAX:
            per[n].append(f"{n} not determined (standard error {rel:.0%} of the value)")
    if cov.shape == (v.size, v.size) and np.all(np.isfinite(cov)):
        sd = np.sqrt(np.abs(np.diag(cov)))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / np.outer(sd, sd)
        for i in range(v.size):
            for j in range(i + 1, v.size):
                r = corr[i, j]
                if math.isfinite(r) and abs(r) > CORRELATION_MAX:
                    text = f"{names[i]} and {names[j]} correlated (r = {r:+.4f})"
                    per[names[i]].append(text)
                    per[names[j]].append(text)
    if time_constants and tau_window is not None:
        t_lo, t_hi = tau_window
        for n, tau in time_constants.items():
            if not (math.isfinite(tau) and t_lo <= tau <= t_hi):
                per[n].append(f"τ = {tau:.2g} s outside the measured window "
                              f"[{t_lo:.2g}, {t_hi:.2g}] s")
    whole = () if success else (f"optimiser did not converge ({message})",)
    return FitQuality({n: tuple(r) for n, r in per.items()}, whole)
