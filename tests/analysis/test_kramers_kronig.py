"""Linear Kramers–Kronig test: compliant circuit spectra pass, drifting spectra fail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.analysis.circuits import zarc
from labctl.analysis.kramers_kronig import lin_kk

F = np.logspace(math.log10(7e6), 0.0, 69)
W = 2.0 * np.pi * F


def _cell(r_int: np.ndarray | float = 300.0) -> np.ndarray:
    return 50.0 + 1j * W * 1e-7 + zarc(F, 100.0, 1e-7, 0.9) + zarc(F, r_int, 1e-2, 0.85)


def test_circuit_spectrum_passes() -> None:
    res = lin_kk(F, _cell())
    assert res.passed
    assert res.max_residual < 1e-3
    assert res.mu < 0.85 and 2 <= res.m <= F.size
    assert res.inductance == pytest.approx(1e-7, rel=0.05)


def test_noisy_circuit_spectrum_passes() -> None:
    rng = np.random.default_rng(0)
    z = _cell() * (1 + 2e-3 * (rng.standard_normal(F.size) + 1j * rng.standard_normal(F.size)))
    assert lin_kk(F, z).passed


def test_drifting_spectrum_fails() -> None:
    """Interface resistance growing 30 % during a high-to-low-frequency sweep.

    Elapsed time is taken as two periods per point, so most drift happens at the
    slow end — as in a cell still evolving after a stripping step.
    """
    t = np.cumsum(2.0 / F)
    t /= t[-1]
    res = lin_kk(F, _cell(300.0 * (1 + 0.3 * t)))
    assert not res.passed
    assert res.max_residual > 0.02


def test_fixed_m_and_capacitance_option() -> None:
    # A blocking electrode: series capacitor, representable only with fit_capacitance.
    z = _cell() + 1.0 / (1j * W * 1e-3)
    assert not lin_kk(F, z, m=20).passed
    res = lin_kk(F, z, m=20, fit_capacitance=True)
    assert res.passed and res.m == 20
    assert 1.0 / res.capacitance_inverse == pytest.approx(1e-3, rel=0.05)
