"""DRT: quadrature matrices, recovery of known ZARCs, grid-edge behaviour, fast solver."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import nnls

from labctl.analysis.circuits import zarc
from labctl.analysis.drt import drt_matrices, fit_drt, tau_grid

# 7 MHz to 1 Hz at 10 points per decade: the lab's standard sweep (69 points).
F = np.logspace(math.log10(7e6), 0.0, 69)
W = 2.0 * np.pi * F


def _noisy(z: np.ndarray, rel: float = 1e-3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return z + rel * np.abs(z) * (rng.standard_normal(z.size) + 1j * rng.standard_normal(z.size))


def test_tau_grid_reaches_one_decade_beyond_window() -> None:
    tb = tau_grid(F)
    assert tb[0] == pytest.approx(1 / (2 * math.pi * 7e6) / 10, rel=1e-9)
    assert tb[-1] == pytest.approx(1 / (2 * math.pi) * 10, rel=1e-9)
    assert np.diff(np.log10(tb)).mean() == pytest.approx(0.1, rel=0.01)


def test_matrices_match_direct_quadrature() -> None:
    tb = tau_grid(F)
    a_re, a_im, _, eps = drt_matrices(F, tb)
    for n, m in [(0, 0), (10, 20), (40, 45), (68, 88), (30, 60)]:
        a = W[n] * tb[m]
        re = quad(lambda u, a=a: math.exp(-((eps * u) ** 2)) / (1 + (a * math.exp(u)) ** 2),
                  -5, 5)[0]
        im = quad(lambda u, a=a: -math.exp(-((eps * u) ** 2)) * a * math.exp(u)
                  / (1 + (a * math.exp(u)) ** 2), -5, 5)[0]
        assert a_re[n, m] == pytest.approx(re, abs=1e-10)
        assert a_im[n, m] == pytest.approx(im, abs=1e-10)


def test_recovers_three_zarcs() -> None:
    """Well separated ZARCs (n = 0.9–0.95): every τ and R within 10 %."""
    elements = [(100.0, 1e-6, 0.95), (200.0, 1e-4, 0.93), (150.0, 1e-2, 0.9)]
    z = 20.0 + 1j * W * 1e-7 + sum(zarc(F, *e) for e in elements)
    res = fit_drt(F, _noisy(z))
    assert len(res.peaks) == 3
    for peak, (r, tau, _) in zip(res.peaks, elements):
        assert peak.tau == pytest.approx(tau, rel=0.1)
        assert peak.resistance == pytest.approx(r, rel=0.1)
        assert not peak.edge_warning
    assert res.r_inf == pytest.approx(20.0, rel=0.1)
    assert res.inductance == pytest.approx(1e-7, rel=0.1)
    assert res.r_pol == pytest.approx(450.0, rel=0.03)
    assert np.abs(res.residuals).max() < 0.01 * np.abs(z).max()


def test_grain_boundary_peak_not_pinned_to_grid_edge() -> None:
    """GB arc at τ = 1e-7 s measured to 7 MHz, with 0.1 µH of cable inductance.

    With the pyDRTtools grid (τ = 1/f, ≥ 1.43e-7 s) this peak sits on the grid edge and
    L is underestimated by an order of magnitude; the extended grid must resolve it.
    """
    z = 50.0 + 1j * W * 1e-7 + zarc(F, 100.0, 1e-7, 0.9) + zarc(F, 300.0, 1e-3, 0.85)
    res = fit_drt(F, _noisy(z, seed=1))
    gb = res.peaks[0]
    assert gb.tau == pytest.approx(1e-7, rel=0.1)
    assert gb.tau > 2 * res.tau_basis[0]
    assert gb.resistance == pytest.approx(100.0, rel=0.1)
    assert not gb.edge_warning
    assert res.inductance == pytest.approx(1e-7, rel=0.1)
    assert res.r_inf == pytest.approx(50.0, rel=0.1)


def test_process_beyond_low_frequency_limit_is_flagged() -> None:
    """A τ = 1 s process measured only to 1 Hz (window ends at 0.16 s): warn, do not hide.

    Its position and area are not trustworthy (here ~0.6 s and ~65 of 100 Ohm).
    """
    z = 20.0 + zarc(F, 100.0, 1e-4, 0.9) + zarc(F, 100.0, 1.0, 0.9)
    res = fit_drt(F, z)
    assert len(res.peaks) == 2
    assert not res.peaks[0].edge_warning
    assert res.peaks[1].edge_warning
    assert res.peaks[1].tau > res.tau_window[1] / 10**0.5


def test_100_s_process_is_invisible_from_1_hz() -> None:
    """A 100 Ohm, τ = 100 s arc leaves only a few Ohm in a 1 Hz DRT."""
    z = 20.0 + zarc(F, 100.0, 1e-4, 0.9) + zarc(F, 100.0, 100.0, 0.9)
    res = fit_drt(F, z)
    assert res.r_pol < 110.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_solver_equals_reference_nnls(seed: int) -> None:
    """The cached, reduced solve equals plain NNLS on the stacked, unscaled system."""
    rng = np.random.default_rng(seed)
    z = (rng.uniform(5, 50) + 1j * W * rng.uniform(0, 2e-7)
         + sum(zarc(F, rng.uniform(10, 300), 10 ** rng.uniform(-7, -1), rng.uniform(0.7, 1))
               for _ in range(3)))
    z = _noisy(z, 5e-3, seed)
    lam = 1e-3
    res = fit_drt(F, z, lambda_=lam)

    # Reference written independently from the pyDRTtools formulation (Wan 2015):
    # K = [[1, 0, A'], [0, ω, A'']],
    # λM̃ = PᵀP from eigh, scipy.optimize.nnls on [K; P] x = [Z'; Z''; 0].
    tb = tau_grid(F)
    a_re, a_im, m, _ = drt_matrices(F, tb)
    nf, nb = a_re.shape
    k = np.block([[np.ones((nf, 1)), np.zeros((nf, 1)), a_re],
                  [np.zeros((nf, 1)), W[:, None], a_im]])
    col = np.linalg.norm(k, axis=0)  # plain NNLS needs comparable column norms
    pen = np.zeros((nb + 2, nb + 2))
    pen[2:, 2:] = lam * m
    ev, vec = np.linalg.eigh(pen)
    p = (vec * np.sqrt(np.clip(ev, 0, None))).T
    a = np.vstack([k / col, p / col])
    x = nnls(a, np.concatenate([z.real, z.imag, np.zeros(nb + 2)]), maxiter=10000)[0] / col

    scale = np.abs(x[2:]).max()
    np.testing.assert_allclose(res.coefficients, x[2:], rtol=0, atol=1e-7 * scale)
    assert res.r_inf == pytest.approx(x[0], rel=1e-7, abs=1e-9)
    assert res.inductance == pytest.approx(x[1], rel=1e-6, abs=1e-15)

    ref = fit_drt(F, z, lambda_=lam, solver="nnls")
    np.testing.assert_allclose(res.coefficients, ref.coefficients, rtol=0, atol=1e-9 * scale)


def test_input_validation() -> None:
    with pytest.raises(ValueError):
        fit_drt(F, np.ones(5))
    with pytest.raises(ValueError):
        fit_drt(F, np.ones(F.size), solver="bogus")  # type: ignore[arg-type]
