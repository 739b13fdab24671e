"""DRT speed: labctl.analysis.drt.fit_drt vs a straightforward scipy.optimize.nnls DRT.

Spectrum: the lab's standard 69-point sweep (7 MHz–1 Hz, 10 points/decade) of a
NASICON-like cell (R∞, 0.1 µH, grain-boundary, SnO2 and interface ZARCs) with 0.2 %
noise. The baseline implements the same maths (pyDRTtools ridge formulation) the obvious way per
call: quadrature matrices, eigh factor of λM, NNLS on the stacked system. A second
baseline reuses cached matrices so the solver gain and the caching gain can be told
apart. Run: python benchmarks/drt.py
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labctl.analysis import drt
from labctl.analysis.circuits import zarc
from labctl.analysis.drt import drt_matrices, fit_drt, tau_grid

RUNS = 200
WARMUP = 5
LAMBDA = 1e-3


def spectrum() -> tuple[np.ndarray, np.ndarray]:
    f = np.logspace(math.log10(7e6), 0.0, 69)
    w = 2 * np.pi * f
    z = (30.0 + 1j * w * 1e-7 + zarc(f, 80.0, 1e-7, 0.9) + zarc(f, 15.0, 1e-4, 0.9)
         + zarc(f, 250.0, 1e-2, 0.85))
    rng = np.random.default_rng(42)
    noise = rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)
    return f, z + 2e-3 * np.abs(z) * noise


def baseline_nnls(f: np.ndarray, z: np.ndarray, cached: bool) -> np.ndarray:
    """Same problem, plain NNLS on [K_re; K_im; √λ·L] x = [Z'; Z''; 0]."""
    tb = tau_grid(f)
    if cached:
        a_re, a_im, m, _ = drt_matrices(f, tb)
    else:  # what a one-off script does on every call
        from labctl.analysis.drt import _matrices_cached

        a_re, a_im, m, _ = _matrices_cached.__wrapped__(
            tuple(map(float, f)), tuple(map(float, np.log(tb))), 0.5
        )
    w = 2 * np.pi * f
    nf, nb = a_re.shape
    k = np.block([[np.ones((nf, 1)), np.zeros((nf, 1)), a_re],
                  [np.zeros((nf, 1)), w[:, None], a_im]])
    col = np.linalg.norm(k, axis=0)
    pen = np.zeros((nb + 2, nb + 2))
    pen[2:, 2:] = LAMBDA * m
    ev, vec = np.linalg.eigh(pen)
    p = (vec * np.sqrt(np.clip(ev, 0, None))).T
    a = np.vstack([k / col, p / col])
    return nnls(a, np.concatenate([z.real, z.imag, np.zeros(nb + 2)]), maxiter=10000)[0] / col


def median_ms(fn: Callable[[], object], runs: int = RUNS) -> float:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def fit_cold(f: np.ndarray, z: np.ndarray) -> object:
    """fit_drt as if every spectrum had a new frequency grid: no cached matrices."""
    for cached in (drt._matrices_cached, drt._system_cached, drt._fine_basis_cached):
        cached.cache_clear()
    return fit_drt(f, z, lambda_=LAMBDA)


def main() -> None:
    f, z = spectrum()
    res = fit_drt(f, z, lambda_=LAMBDA)
    ref = baseline_nnls(f, z, cached=False)
    diff = np.abs(res.coefficients - ref[2:]).max() / np.abs(ref[2:]).max()
    print(f"spectrum: {f.size} points, {f.max():.3g}-{f.min():.3g} Hz; basis {res.tau_basis.size}")
    print(f"peaks: {[(f'{p.tau:.2e} s', round(p.resistance, 1)) for p in res.peaks]}")
    print(f"max |x_fast - x_nnls| / max x = {diff:.1e}")
    t_fast = median_ms(lambda: fit_drt(f, z, lambda_=LAMBDA))
    t_base = median_ms(lambda: baseline_nnls(f, z, cached=False), runs=min(RUNS, 50))
    t_base_cached = median_ms(lambda: baseline_nnls(f, z, cached=True))
    t_ref_solver = median_ms(lambda: fit_drt(f, z, lambda_=LAMBDA, solver="nnls"))
    t_cold = median_ms(lambda: fit_cold(f, z), runs=min(RUNS, 50))
    print(f"fit_drt (cached matrices, reduced NNLS):       {t_fast:7.2f} ms")
    print(f"fit_drt solver='nnls' (cached, stacked NNLS):  {t_ref_solver:7.2f} ms")
    print(f"baseline nnls, cached matrices:                {t_base_cached:7.2f} ms")
    print(f"fit_drt, new frequency grid every call (cold): {t_cold:7.2f} ms")
    print(f"baseline nnls, matrices built per call:        {t_base:7.2f} ms")
    print(f"drt median = {t_fast:.1f} ms (cold grid {t_cold:.1f} ms; baseline nnls {t_base:.1f} "
          f"ms, ratio {t_fast / t_base:.2f})")


if __name__ == "__main__":
    main()
