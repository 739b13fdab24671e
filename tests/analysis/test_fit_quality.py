"""Fits say when the data do not determine them: deliberately unidentifiable spectra are flagged.

Spectra are synthetic ZARC sums on the paper's grid (7 MHz to 1 Hz, 10 points per decade) with
0.1 % Gaussian noise on Z' and Z'' (a good potentiostat), so the standard errors are those of a
real measurement, not of exact data.
"""

from __future__ import annotations

import numpy as np
import pytest

from labctl.analysis import eis
from labctl.analysis.circuits import fit_circuit, zarc
from labctl.analysis.fit_quality import REL_STD_MAX, REL_STD_MIN, Flagged, assess
from labctl.engine.events import RunStatus
from labctl.notify import run_message

F = np.logspace(np.log10(7e6), 0, 69)
R_INF = 90.0


def _noisy(z: np.ndarray, seed: int = 0, rel: float = 1e-3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return z + rel * np.abs(z) * (rng.normal(size=z.size) + 1j * rng.normal(size=z.size))


def _spectrum(arcs: list[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    return _noisy(R_INF + sum(zarc(F, r, t, n) for r, t, n in arcs), seed)


def test_two_overlapping_arcs_are_flagged_and_their_sum_is_reported() -> None:
    """The twin's case: SnO2 at 1 ms and the interface at 2 ms cannot be told apart."""
    z = _spectrum([(50.0, 1e-7, 0.9), (70.0, 1e-3, 0.85), (170.0, 2e-3, 0.8)])
    c = eis.fit_paper_circuit(F, z, kk=eis.kk_check(F, z))
    assert not c.identifiable
    sno2, inter = c.paper.arcs[1], c.paper.arcs[2]
    assert sno2.flag is not None and inter.flag is not None
    assert "not separable" in (c.note or "")
    # the identifiable combination: one electrode arc, well determined
    assert c.electrode.flag is None
    assert c.electrode.R_ohm == pytest.approx(240.0, rel=0.02)
    assert REL_STD_MIN < c.electrode.R_std_ohm / c.electrode.R_ohm < 0.05
    assert c.model.arcs[0].flag is None and c.model.arcs[0].R_ohm == pytest.approx(50.0, rel=0.05)


def test_a_single_arc_fitted_with_three_is_flagged() -> None:
    z = _spectrum([(200.0, 1e-4, 0.85)], seed=1)
    c = eis.fit_paper_circuit(F, z, kk=eis.kk_check(F, z))
    assert not c.paper.quality.good
    assert sum(a.flag is not None for a in c.paper.arcs) >= 2
    # the same with a plain circuit string and impedance.py-style unbounded R, Q
    circuit = "R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)"
    guess = [80.0, 60.0, 1e-4**0.85 / 60, 0.85, 70.0, 1e-4**0.85 / 70, 0.85, 70.0,
             1e-4**0.85 / 70, 0.85]
    fit = fit_circuit(circuit, F, z, guess, weight_by_modulus=True)
    lo, hi = (np.zeros(10), np.array([np.inf, np.inf, np.inf, 1.0] * 2 + [np.inf, 1.0]))
    q = assess(fit.names, fit.values, fit.std_errors, fit.covariance, (lo, hi),
               success=fit.success, message=fit.message)
    assert fit.success  # the optimiser is happy ...
    assert not q.good  # ... the data are not
    flagged = [n for n in fit.names if q.reason(n)]
    assert len(flagged) >= 4


def test_separated_arcs_are_identifiable_and_good() -> None:
    truth = [(50.0, 1e-7, 0.9), (80.0, 1e-4, 0.85), (200.0, 1e-2, 0.8)]
    z = _spectrum(truth, seed=2)
    c = eis.fit_paper_circuit(F, z, kk=eis.kk_check(F, z))
    assert c.identifiable and c.paper.quality.good, c.paper.quality
    for arc, (r, tau, _) in zip(c.paper.arcs, truth):
        assert arc.flag is None
        assert arc.R_ohm == pytest.approx(r, rel=0.03)
        assert arc.tau_s == pytest.approx(tau, rel=0.1)
        assert REL_STD_MIN < arc.R_std_ohm / arc.R_ohm < REL_STD_MAX
    assert c.electrode.R_ohm == pytest.approx(280.0, rel=0.02)


def test_a_drifting_spectrum_flags_every_fitted_value() -> None:
    """A cell evolving during the sweep fails lin-KK: nothing fitted on it is a result."""
    z = R_INF + zarc(F, 50.0, 1e-7, 0.9) + zarc(F, 250.0, 2e-3, 0.8)
    z = z.real * np.linspace(1.0, 1.3, F.size) + 1j * z.imag  # Z' grows as the sweep goes on
    kk = eis.kk_check(F, z)
    assert not kk.passed
    c = eis.fit_paper_circuit(F, z, kk=kk)
    assert c.model.R0_flag is not None and "lin-KK" in c.model.R0_flag
    assert all(a.flag is not None for a in (*c.paper.arcs, c.electrode))


def test_time_constant_outside_the_window_is_flagged() -> None:
    names = ("R0", "tau_x")
    q = assess(names, [10.0, -1.0], [0.1, 0.01], np.diag([0.01, 1e-4]),
               ([0.0, -9.0], [100.0, 3.0]), log_parameters=["tau_x"],
               time_constants={"tau_x": 50.0}, tau_window=(2e-8, 0.16))
    assert q.reason("R0") is None
    assert "outside the measured window" in (q.reason("tau_x") or "")


def test_implausibly_small_and_non_finite_errors_are_flagged() -> None:
    q = assess(("a", "b", "c"), [2.6e6, 5.0, 1.0], [2e-13, np.inf, 0.01],
               np.diag([4e-26, np.inf, 1e-4]), (np.zeros(3), np.full(3, np.inf)))
    assert "implausibly small" in (q.reason("a") or "")
    assert "not finite" in (q.reason("b") or "")
    assert q.reason("c") is None


def test_flagged_values_never_reach_a_notification() -> None:
    results = {"R_int_first_ohm": Flagged(2.6e6, "R_int not determined"),
               "R_SnO2_plus_int_first_ohm": 245.4, "ccd_failure_mode": "hard_short"}
    _, body, _ = run_message(7, "cell-1", RunStatus.COMPLETED, "done", results)
    assert "2.6e+06" not in body and "2600000" not in body and "2.6e6" not in body
    assert "R_int_first_ohm =" not in body
    assert "withheld (failed their quality check): R_int_first_ohm" in body
    assert "R_SnO2_plus_int_first_ohm = 245.4" in body
    assert str(results["R_int_first_ohm"]).startswith("not reported")


def test_cv_peaks_only_where_the_current_falls_back_before_the_vertex() -> None:
    from labctl.analysis.cv import cv_peaks

    e_up = np.linspace(-0.3, 0.3, 200)
    e = np.concatenate([e_up, e_up[::-1]])
    line = e / 0.4  # a resistor: the largest |I| is at the vertices
    assert cv_peaks(e, line, np.ones(e.size, dtype=int)) == []
    # a stripping/plating couple: Gaussian-like peaks at ±0.1 V on a small capacitive offset
    peaked = np.concatenate([np.exp(-((e_up - 0.1) / 0.05) ** 2),
                             -np.exp(-((e_up[::-1] + 0.1) / 0.05) ** 2)]) + 0.01
    (c,) = cv_peaks(e, peaked, np.ones(e.size, dtype=int))
    assert c.ox_peak_E_V == pytest.approx(0.1, abs=0.01) and c.ox_peak_I_mA > 0.9
    assert c.red_peak_E_V == pytest.approx(-0.1, abs=0.01) and c.red_peak_I_mA < -0.9
