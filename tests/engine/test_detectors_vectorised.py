"""The batch (numpy) FailureDetector makes the per-sample reference's decisions, to the sample.

`fast.FailureDetector.feed` checks a poll's samples all at once for speed. Its contract is that
nothing observable changes: the same trip (mode and message) at the same sample, the same state
after every poll and the same learned references. `reference.ReferenceDetector`, shipped beside
it, is the plain per-sample definition; hypothesis drives both with synthetic traces (plateaus,
drops, collapses, spikes, runaways, NaNs), random settings and random poll sizes, and they must
agree on every call.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.engine.detectors import FailureDetector, ReferenceDetector
from labctl.protocol.resolved import DetectorSettings


def _same_state(fast: FailureDetector, ref: ReferenceDetector) -> bool:
    """Everything a later sample's decision depends on is equal (NaN equal to NaN)."""
    def same(x: object, y: object) -> bool:
        return bool(np.array_equal(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                                   equal_nan=True))
    return (fast._n == ref._n and fast._short_run == ref._short_run
            and fast._spikes == ref._spikes
            and same(fast._seg_vals, ref._seg_vals) and same(list(fast._ma), list(ref._ma))
            and same(list(fast._ma_hist), list(ref._ma_hist))
            and same([np.nan if fast._prev is None else fast._prev],
                     [np.nan if ref._prev is None else ref._prev])
            and (fast._prev is None) == (ref._prev is None))


# ---- synthetic traces -----------------------------------------------------------------------

_piece = st.tuples(
    st.sampled_from(["plateau", "drop", "collapse", "spike", "runaway", "ramp", "nan", "zero"]),
    st.integers(1, 40),  # samples
    st.floats(0.0, 3.0),  # a level/size parameter
)


def _segment_trace(rng: np.random.Generator, pieces: list[tuple[str, int, float]],
                   plateau: float, sigma: float) -> np.ndarray:
    """A |V| trace made of pieces: mostly a noisy plateau, with the failure shapes in between."""
    out = []
    level = plateau
    for kind, n, x in pieces:
        noise = rng.normal(0.0, sigma, n)
        if kind == "plateau":
            out.append(level + noise)
        elif kind == "drop":
            level *= 0.2 + 0.25 * x  # below and above the 50 % sudden-drop line
            out.append(level + noise)
        elif kind == "collapse":
            out.append(np.full(n, x * 1e-3) + noise * 0.01)
        elif kind == "spike":
            t = level + noise
            t[:: max(1, n // 3)] -= x * 30 * sigma
            out.append(t)
        elif kind == "runaway":
            out.append(level + np.linspace(0.0, x, n) + noise)
        elif kind == "ramp":
            out.append(level * np.linspace(1.0, x, n) + noise)
        elif kind == "nan":
            t = level + noise
            t[n // 2] = np.nan if x < 2.5 else np.inf
            out.append(t)
        else:
            out.append(np.zeros(n))
    return np.concatenate(out)


_settings = st.builds(
    DetectorSettings,
    enabled=st.just(True),
    ignore_first_samples=st.integers(0, 6),
    hard_short_fraction=st.one_of(st.none(), st.floats(0.05, 0.9)),
    hard_short_floor_V=st.floats(0.0, 0.01),
    hard_short_samples=st.integers(1, 7),
    sudden_drop_fraction=st.one_of(st.none(), st.floats(0.05, 0.95)),
    noise_sigma=st.one_of(st.none(), st.floats(1.0, 12.0)),
    noise_spikes=st.integers(1, 5),
    divergence_V=st.one_of(st.none(), st.floats(0.05, 3.0)),
    divergence_asr_factor=st.floats(1.0, 5.0),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    s=_settings,
    seed=st.integers(0, 2**32 - 1),
    segments=st.lists(st.lists(_piece, min_size=1, max_size=8), min_size=1, max_size=6),
    plateau=st.floats(0.005, 0.5),
    sigma=st.floats(0.0, 0.005),
    current=st.sampled_from([1e-3, 2.5e-4, 3e-3, 0.0]),
    polls=st.lists(st.integers(1, 70), min_size=1, max_size=10),
    keep_feeding=st.booleans(),
    area=st.sampled_from([None, 0.283, 0.785]),
    R_pre=st.one_of(st.none(), st.floats(0.5, 500.0)),
)
def test_batch_detector_matches_per_sample_reference(
    s: DetectorSettings, seed: int, segments: list[list[tuple[str, int, float]]],
    plateau: float, sigma: float, current: float, polls: list[int], keep_feeding: bool,
    area: float | None, R_pre: float | None,
) -> None:
    rng = np.random.default_rng(seed)
    fast, ref = FailureDetector(s, area), ReferenceDetector(s, area)
    fast.set_pre_stress_reference(R_pre)
    ref.set_pre_stress_reference(R_pre)
    for k, pieces in enumerate(segments):
        sign = 1.0 if k % 2 == 0 else -1.0
        trace = sign * _segment_trace(rng, pieces, plateau, sigma)
        fast.start_segment(sign * current)
        ref.start_segment(sign * current)
        i, p = 0, 0
        while i < len(trace):
            n = polls[p % len(polls)]
            p += 1
            chunk = trace[i:i + n]
            i += n
            got, want = fast.feed(chunk), ref.feed(chunk)
            assert got == want, (k, i)
            assert _same_state(fast, ref), (k, i)
            if want is not None and not keep_feeding:
                break  # the engine stops the step on a trip
        assert fast.end_segment() == ref.end_segment()
        assert np.array_equal(fast.plateau_R, ref.plateau_R, equal_nan=True)
        assert np.array_equal([fast.sigma_ref or 0.0], [ref.sigma_ref or 0.0], equal_nan=True)
        assert np.array_equal(fast.sigma_samples, ref.sigma_samples, equal_nan=True)


def test_trip_lands_on_the_same_sample_whatever_the_poll_size() -> None:
    """A collapse fed in one batch and sample by sample trips on the same sample."""
    rng = np.random.default_rng(3)
    trace = np.concatenate([0.1 + rng.normal(0, 1e-3, 200), np.full(20, 1e-4)])
    for poll in (1, 7, 60, len(trace)):
        det = FailureDetector(DetectorSettings())
        det.start_segment(1e-3)
        fed = 0
        for start in range(0, len(trace), poll):
            fed = start
            trip = det.feed(trace[start:start + poll])
            if trip is not None:
                break
        assert trip is not None and trip.mode == "hard_short"
        # 3 ignored samples; the trip sample is the last one appended
        assert det._n == 205 and len(det._seg_vals) == 202, (poll, fed)


def test_a_healthy_segment_never_takes_the_per_sample_path() -> None:
    """The fast path really is the one used: without a trip or a NaN, no sample goes through
    the reference's per-sample loop (it would still be correct, only slow)."""
    rng = np.random.default_rng(5)
    det = FailureDetector(DetectorSettings())
    calls: list[int] = []
    original = det._feed_samples

    def counting(vals: list[float], I: float) -> object:
        calls.append(len(vals))
        return original(vals, I)

    det._feed_samples = counting  # type: ignore[method-assign]
    for k in range(6):
        sign = 1.0 if k % 2 == 0 else -1.0
        det.start_segment(sign * 1e-3)
        for chunk in np.array_split(sign * (0.1 + rng.normal(0, 1e-3, 300)), 5):
            assert det.feed(chunk) is None
        assert det.end_segment() is None
    assert det.R_ref is not None and det.sigma_ref is not None
    assert calls == []
