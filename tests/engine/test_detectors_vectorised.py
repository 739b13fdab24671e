"""The batch (numpy) FailureDetector makes the per-sample loop's decisions, to the sample.

`feed` checks a poll's samples all at once for speed. Its contract is that nothing observable
changes: the same trip (mode and message) at the same sample, and the same learned references
afterwards. `_Reference` below is the straightforward per-sample detector, written out plainly;
hypothesis drives both with synthetic traces (plateaus, drops, collapses, spikes, runaways,
NaNs), random settings and random poll sizes, and they must agree on every call.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.engine.detectors import MIN_SIGMA_V, REFERENCE_SEGMENTS, FailureDetector, Trip
from labctl.protocol.resolved import DetectorSettings


class _Reference:
    """One sample at a time, no shortcuts: the semantics the batch detector must keep."""

    def __init__(self, s: DetectorSettings) -> None:
        self.s = s
        self.plateau_R: list[float] = []
        self.sigma_samples: list[float] = []
        self.sigma_ref: float | None = None
        self.seg_I = 0.0
        self.seg_vals: list[float] = []
        self.n = 0
        self.short_run = 0
        self.ma: deque[float] = deque(maxlen=5)
        self.ma_hist: deque[float] = deque(maxlen=10)
        self.spikes = 0
        self.prev: float | None = None

    def R_ref(self) -> float | None:
        n = min(len(self.plateau_R), REFERENCE_SEGMENTS)
        return float(np.median(self.plateau_R[:n])) if n else None

    def start_segment(self, current_A: float) -> None:
        self.seg_I = current_A
        self.seg_vals = []
        self.n = 0
        self.short_run = 0
        self.ma.clear()
        self.ma_hist.clear()
        self.spikes = 0
        self.prev = None

    def feed(self, E_V: np.ndarray) -> Trip | None:
        s = self.s
        if not s.enabled or self.seg_I == 0.0:
            return None
        sign = 1.0 if self.seg_I > 0 else -1.0
        I = abs(self.seg_I)
        for e in E_V.tolist():
            self.n += 1
            v = e * sign
            if self.n <= s.ignore_first_samples:
                self.prev = v
                continue
            self.seg_vals.append(v)
            R = self.R_ref() or (
                float(np.median(self.seg_vals[:10])) / I if len(self.seg_vals) >= 3 else None)
            trip = self.check(v, I, R)
            self.prev = v
            if trip:
                return trip
        return None

    def check(self, v: float, I: float, R: float | None) -> Trip | None:
        s = self.s
        if R is not None and s.hard_short_fraction is not None:
            threshold = max(s.hard_short_floor_V, s.hard_short_fraction * I * R)
            self.short_run = self.short_run + 1 if v < threshold else 0
            if self.short_run >= s.hard_short_samples:
                return Trip("hard_short", f"|V| {abs(v) * 1e3:.1f} mV below {threshold * 1e3:.1f} "
                            f"mV for {self.short_run} samples")
        if s.divergence_V is not None:
            limit = s.divergence_V
            if R is not None:
                limit = min(limit, s.divergence_asr_factor * I * R)
            if v > limit:
                return Trip("divergence", f"|V| {v:.3f} V above {limit:.3f} V")
        if s.sudden_drop_fraction is not None:
            self.ma.append(v)
            if len(self.ma) == 5:
                ma = sum(self.ma) / 5
                if (len(self.seg_vals) > 10 and self.ma_hist and self.short_run == 0
                        and ma < (1 - s.sudden_drop_fraction) * max(self.ma_hist)):
                    return Trip("sudden_drop", f"voltage fell from {max(self.ma_hist):.4f} V to "
                                f"{ma:.4f} V within 10 samples")
                self.ma_hist.append(ma)
        if s.noise_sigma is not None and self.prev is not None:
            d = v - self.prev
            if self.sigma_ref is None:
                self.sigma_samples.append(d)
            elif d < -s.noise_sigma * self.sigma_ref:
                self.spikes += 1
                if self.spikes >= s.noise_spikes:
                    return Trip("soft_short", f"{self.spikes} voltage spikes larger than "
                                f"{s.noise_sigma:g} sigma ({self.sigma_ref * 1e3:.2f} mV)")
        return None

    def end_segment(self) -> Trip | None:
        if not self.s.enabled or self.seg_I == 0.0 or len(self.seg_vals) < 3:
            return None
        R_k = float(np.median(self.seg_vals[len(self.seg_vals) // 2:])) / abs(self.seg_I)
        trip = None
        if self.plateau_R and R_k < 0.5 * self.plateau_R[-1] and R_k > 0:
            trip = Trip("soft_short", f"plateau resistance fell from {self.plateau_R[-1]:.1f} "
                        f"to {R_k:.1f} ohm")
        elif self.R_ref() is not None and R_k > 3 * self.R_ref():  # type: ignore[operator]
            trip = Trip("voids", f"plateau resistance {R_k:.1f} ohm above 3x reference "
                        f"{self.R_ref():.1f} ohm")
        self.plateau_R.append(R_k)
        if self.sigma_ref is None and len(self.sigma_samples) >= 20:
            d = np.asarray(self.sigma_samples)
            self.sigma_ref = max(float(np.median(np.abs(d - np.median(d)))) * 1.4826, MIN_SIGMA_V)
        return trip


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
)
def test_batch_detector_matches_per_sample_reference(
    s: DetectorSettings, seed: int, segments: list[list[tuple[str, int, float]]],
    plateau: float, sigma: float, current: float, polls: list[int], keep_feeding: bool,
) -> None:
    rng = np.random.default_rng(seed)
    fast, ref = FailureDetector(s), _Reference(s)
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
