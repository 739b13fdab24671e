"""FailureDetector on synthetic voltage traces: each mode trips, a healthy cell does not.

Traces are 1 mA segments of a 100 ohm cell (0.1 V plateau) with 1 mV Gaussian noise, the
polarity following the current as on a symmetric cell.
"""

from __future__ import annotations

import numpy as np

from labctl.engine.detectors import FailureDetector
from labctl.protocol.resolved import DetectorSettings

I_A = 1e-3
PLATEAU_V = 0.1
SIGMA_V = 0.001


def _plateau(rng: np.random.Generator, n: int, sign: float = 1.0) -> np.ndarray:
    return sign * (PLATEAU_V + rng.normal(0.0, SIGMA_V, n))


def _learned(rng: np.random.Generator, segments: int = 2) -> FailureDetector:
    """A detector that has seen healthy segments (R_ref and sigma_ref learned)."""
    det = FailureDetector(DetectorSettings())
    for k in range(segments):
        sign = 1.0 if k % 2 == 0 else -1.0
        det.start_segment(sign * I_A)
        assert det.feed(_plateau(rng, 100, sign)) is None
        assert det.end_segment() is None
    assert det.R_ref is not None and det.sigma_ref is not None
    return det


def test_healthy_noisy_plateau_never_trips() -> None:
    rng = np.random.default_rng(0)
    det = FailureDetector(DetectorSettings())
    for k in range(20):
        sign = 1.0 if k % 2 == 0 else -1.0
        det.start_segment(sign * I_A)
        for chunk in np.array_split(_plateau(rng, 300, sign), 7):  # as polls deliver them
            assert det.feed(chunk) is None
        assert det.end_segment() is None
    assert det.R_ref is not None and abs(det.R_ref - 100.0) < 2.0


def test_hard_short_collapse_to_zero() -> None:
    rng = np.random.default_rng(1)
    det = _learned(rng)
    det.start_segment(I_A)
    trace = np.concatenate([_plateau(rng, 50), np.full(10, 0.0005)])
    trip = det.feed(trace)
    assert trip is not None and trip.mode == "hard_short"


def test_hard_short_in_the_first_segment_uses_its_own_resistance() -> None:
    det = FailureDetector(DetectorSettings())
    det.start_segment(-I_A)
    trip = det.feed(np.concatenate([np.full(40, -PLATEAU_V), np.full(10, -0.0003)]))
    assert trip is not None and trip.mode == "hard_short"


def test_sudden_drop_to_a_lower_plateau() -> None:
    rng = np.random.default_rng(2)
    det = _learned(rng)
    det.start_segment(I_A)
    trace = np.concatenate([_plateau(rng, 50), 0.04 + rng.normal(0, SIGMA_V, 20)])
    trip = det.feed(trace)
    assert trip is not None and trip.mode == "sudden_drop"


def test_soft_short_noise_spikes() -> None:
    rng = np.random.default_rng(3)
    det = _learned(rng)
    det.start_segment(I_A)
    trace = _plateau(rng, 120)
    trace[[40, 70, 100]] -= 0.015  # single-sample dips of ~15 sigma: micro-shorts
    trip = det.feed(trace)
    assert trip is not None and trip.mode == "soft_short"


def test_two_spikes_are_not_yet_a_soft_short() -> None:
    rng = np.random.default_rng(4)
    det = _learned(rng)
    det.start_segment(I_A)
    trace = _plateau(rng, 120)
    trace[[40, 70]] -= 0.015
    assert det.feed(trace) is None


def test_divergence_voltage_runaway() -> None:
    rng = np.random.default_rng(5)
    det = _learned(rng)
    det.start_segment(-I_A)
    trace = -np.concatenate([_plateau(rng, 30), np.linspace(0.1, 0.5, 40)])
    trip = det.feed(trace)
    assert trip is not None and trip.mode == "divergence"


def test_disabled_detector_ignores_a_short() -> None:
    det = FailureDetector(DetectorSettings(enabled=False))
    det.start_segment(I_A)
    assert det.feed(np.concatenate([np.full(40, 0.1), np.zeros(20)])) is None
