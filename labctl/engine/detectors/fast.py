"""The failure detectors a poll at a time, with numpy: the reference's decisions, faster.

A poll delivers tens of samples, and the per-sample Python loop of `reference.ReferenceDetector`
was the engine's largest cost in long simulated campaigns. So `FailureDetector.feed` evaluates
every test for all samples of the poll at once, finds the earliest sample on which any test
fires, advances the state over the samples before it in bulk, and hands that sample (and
anything after it) to the reference's per-sample code, which names the trip and leaves the state
exactly as the per-sample loop would. The decisions are the reference's, to the sample and to the
bit (tests/engine/test_detectors_vectorised.py drives both with hypothesis).

Each vectorised test mirrors one branch of `ReferenceDetector._check_sample`, with the same float
operations in the same order (a threshold `max(a, b)` is written `b if b > a else a`, which is
what Python's max returns; a moving average is summed oldest first, as `sum(deque)` does), so
results match bit for bit, not just to a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.engine.detectors.reference import REFERENCE_SEGMENTS, ReferenceDetector, Trip
from labctl.protocol.resolved import DetectorSettings


def _earliest(fires: np.ndarray, L: int) -> int:
    """Index of the first True in `fires`, or L if there is none."""
    return int(np.argmax(fires)) if fires.any() else L


#: Polls with at most this many samples go straight to the per-sample reference rule.
SMALL_POLL_SAMPLES = 8


@dataclass
class _Resistance:
    """The resistance each sample of a poll is checked with.

    `const` once R_ref is known (as Python scalars, the very products `_check_sample` forms);
    before that `per_sample`, with `valid` False where the segment has no resistance yet.
    """

    const: float | None
    per_sample: np.ndarray | None
    valid: np.ndarray | None


@dataclass
class _PollState:
    """What the vectorised tests computed that the state must take up for the committed prefix."""

    run: np.ndarray | None = None  # hard-short run length after each sample (None: unchanged)
    run_zero: bool = False  # the hard-short test ran and the run is 0 throughout
    mas: np.ndarray | None = None  # 5-sample moving averages from sample `ma_from` on
    ma_from: int = 0
    d: np.ndarray | None = None  # sample-to-sample differences (noise test on)
    spikes: np.ndarray | None = None  # running spike count (sigma_ref known and a spike seen)
    has_prev: bool = False


class FailureDetector(ReferenceDetector):
    """What the engine uses: `ReferenceDetector`'s decisions, a poll at a time."""

    def __init__(self, settings: DetectorSettings, area_cm2: float | None = None) -> None:
        super().__init__(settings, area_cm2)
        self._R_ref: float | None = None
        self._R_ref_n = 0  # how many plateau values _R_ref was computed from
        self._nonfinite = False  # a NaN/inf sample in this segment: per-sample path to its end

    @property
    def R_ref(self) -> float | None:
        """The reference's R_ref, cached: it is read for every sample and only changes while
        the first REFERENCE_SEGMENTS segments are appended (np.median per sample was ~25 % of a
        simulated CCD run's wall time)."""
        n = min(len(self.plateau_R), REFERENCE_SEGMENTS)
        if n == 0:
            return None
        if self._R_ref_n != n:
            self._R_ref = super().R_ref
            self._R_ref_n = n
        return self._R_ref

    def start_segment(self, current_A: float) -> None:
        super().start_segment(current_A)
        self._nonfinite = False

    def feed(self, E_V: np.ndarray) -> Trip | None:
        """Check new samples of the running segment; return the first trip, if any."""
        sign = self._active_sign()
        if sign is None:
            return None
        I = abs(self._seg_I)
        v = np.asarray(E_V, dtype=float) * sign
        skip = min(len(v), max(self.s.ignore_first_samples - self._n, 0))
        if skip:
            self._n += skip
            self._prev = float(v[skip - 1])
            if not np.isfinite(self._prev):
                self._nonfinite = True
            v = v[skip:]
        if len(v) == 0:
            return None
        # NaN/inf make Python's max() order-dependent: once one is in the segment's state
        # (moving averages, previous sample), the rest of the segment takes the per-sample path
        if not self._nonfinite and not np.isfinite(v).all():
            self._nonfinite = True
        if len(v) <= SMALL_POLL_SAMPLES:
            # a 1 s poll brings one sample: the per-sample reference rule is cheaper than the
            # numpy set-up, and is what the batch path is checked against anyway
            return self._feed_samples(v.tolist(), I)
        k = 0 if self._nonfinite else self._vector_prefix(v, I)
        return self._feed_samples(v[k:].tolist(), I) if k < len(v) else None

    def _vector_prefix(self, v: np.ndarray, I: float) -> int:
        """Advance the state over `v` (signed, past the ignored samples) up to its first trip.

        Returns k: samples v[:k] trip nothing and the state now includes them, as if each had
        gone through `_check_sample`; v[k] (if k < len(v)) is the first sample on which a test
        fires. Called once per poll on ~60 samples, where each numpy call costs more than its
        arithmetic, so work that a cheap exact pre-test shows cannot fire or change the state is
        skipped.
        """
        c0 = len(self._seg_vals)
        R = self._resistance(v, I, c0)
        st = _PollState()
        first = self._hard_short(v, I, R, st)
        first = min(first, self._divergence(v, I, R))
        first = min(first, self._sudden_drop(v, c0, st))
        first = min(first, self._noise_spikes(v, st))
        if first > 0:
            self._commit(v, first, st)
        return first

    # ---- the tests, vectorised -----------------------------------------------------------------
    def _resistance(self, v: np.ndarray, I: float, c0: int) -> _Resistance:
        R_known = self.R_ref or self.R_pre
        if R_known:  # `R_ref or R_pre or ...`, as the reference reads it: 0 falls through
            return _Resistance(self.resolvable(R_known, I), None, None)
        R, valid = self._resistances(v, c0)
        if R is not None and self.area_cm2 is not None:  # `resolvable`, per sample (NaN stays)
            R = np.maximum(R, self.hard_short_floor(I) / I)
        return _Resistance(None, R, valid)

    def _resistances(self, v: np.ndarray, c0: int) -> tuple[np.ndarray | None, np.ndarray]:
        """The segment's own early resistance at each sample of `v`, and where there is one.

        It needs 3 samples and changes only over the first 10.
        """
        L = len(v)
        R = np.full(L, np.nan)
        valid = np.zeros(L, dtype=bool)
        early = self._seg_vals[:10] + v[: max(0, 10 - c0)].tolist()
        for j in range(L):
            n = c0 + 1 + j
            if n < 3:
                continue
            if n > 10 and j > 0 and valid[j - 1] and c0 + j >= 10:
                R[j:] = R[j - 1]
                valid[j:] = True
                break
            R[j] = float(np.median(early[: min(n, 10)])) / abs(self._seg_I)
            valid[j] = True
        if not valid.any():
            return None, valid
        return R, valid

    def _hard_short(self, v: np.ndarray, I: float, R: _Resistance, st: _PollState) -> int:
        """Run length of samples below the hard-short threshold; the first that reaches N."""
        s = self.s
        L = len(v)
        if s.hard_short_fraction is None:
            return L
        floor = self.hard_short_floor(I)
        if R.const is not None:
            fIR = s.hard_short_fraction * I * R.const
            below = v < (fIR if fIR > floor else floor)
            if not below.any() and s.hard_short_samples > 0:
                st.run_zero = True  # every sample resets the run: 0 throughout, trips nothing
                return L
            st.run = self._run_lengths(below, ~below)
            return _earliest(st.run >= s.hard_short_samples, L)
        if R.per_sample is None or R.valid is None:
            return L
        fIR = s.hard_short_fraction * I * R.per_sample
        thr = np.where(fIR > floor, fIR, floor)  # max()
        below = R.valid & (v < thr)
        # reset where a sample with a resistance is above the threshold, carried through
        # samples without one (no resistance yet: no test)
        st.run = self._run_lengths(below, R.valid & ~below)
        return _earliest(R.valid & (st.run >= s.hard_short_samples), L)

    def _run_lengths(self, below: np.ndarray, reset: np.ndarray) -> np.ndarray:
        """The hard-short run after each sample: one longer where `below`, back to 0 where
        `reset`, and carried on from the segment's run so far until the first reset."""
        hits = np.cumsum(below)
        reset_at = np.maximum.accumulate(np.where(reset, np.arange(len(below)), -1))
        return np.where(reset_at >= 0, hits - hits[np.maximum(reset_at, 0)],
                        self._short_run + hits)

    def _divergence(self, v: np.ndarray, I: float, R: _Resistance) -> int:
        """The first sample above min(V_cut, k·|I|·R)."""
        s = self.s
        if s.divergence_V is None:
            return len(v)
        limit: np.ndarray | float = s.divergence_V
        if R.const is not None:
            aIR = s.divergence_asr_factor * I * R.const
            limit = aIR if aIR < s.divergence_V else s.divergence_V  # min()
        elif R.per_sample is not None and R.valid is not None:
            aIR_a = s.divergence_asr_factor * I * R.per_sample
            limit = np.where(R.valid & (aIR_a < s.divergence_V), aIR_a, s.divergence_V)
        return _earliest(v > limit, len(v))

    def _sudden_drop(self, v: np.ndarray, c0: int, st: _PollState) -> int:
        """The first 5-sample moving average below (1 - f) times the largest of the 10 before."""
        s = self.s
        L = len(v)
        if s.sudden_drop_fraction is None:
            return L
        n_ma = len(self._ma)
        ext = np.concatenate([np.fromiter(self._ma, float, n_ma), v]) if n_ma else v
        st.ma_from = max(0, 5 - 1 - n_ma)  # first j with a full 5-sample window
        if st.ma_from >= L:
            return L
        a = n_ma + st.ma_from - 4  # ext index where the first window starts
        M = L - st.ma_from
        # summed oldest first, as sum(deque) / 5 does: the same rounding
        mas = ((((ext[a:a + M] + ext[a + 1:a + 1 + M]) + ext[a + 2:a + 2 + M])
                + ext[a + 3:a + 3 + M]) + ext[a + 4:a + 4 + M]) / 5
        st.mas = mas
        h0 = len(self._ma_hist)
        hist = np.concatenate([np.full(10, -np.inf), np.fromiter(self._ma_hist, float, h0), mas])
        c = 1 - s.sudden_drop_fraction
        # Pre-test: each drop threshold c·max(10 MAs before) is at most c times the largest MA in
        # all those windows (c >= 0 keeps the order), so if no MA is below that, none can be
        # below its own threshold: nothing to compute
        if c >= 0.0 and not bool((mas < c * hist[h0:h0 + M + 9].max()).any()):
            return L
        hmax = hist[h0:h0 + M].copy()  # max of the (up to) 10 MA values before each new one
        for lag in range(1, 10):
            np.maximum(hmax, hist[h0 + lag:h0 + lag + M], out=hmax)
        if st.run is not None:
            runs: np.ndarray = st.run[st.ma_from:]
        else:
            runs = np.full(M, 0 if st.run_zero else self._short_run)
        cnt = c0 + 1 + np.arange(st.ma_from, L)  # len(self._seg_vals) with sample j
        drop = (cnt > 10) & (h0 + np.arange(M) > 0) & (runs == 0) & (mas < c * hmax)
        return st.ma_from + _earliest(drop, M)

    def _noise_spikes(self, v: np.ndarray, st: _PollState) -> int:
        """The sample on which the N-th downward step larger than k·σ_ref arrives."""
        s = self.s
        L = len(v)
        if s.noise_sigma is None:
            return L
        st.has_prev = self._prev is not None
        prev = np.empty(L)
        prev[0] = self._prev if st.has_prev else np.nan
        prev[1:] = v[:-1]
        st.d = v - prev
        if self.sigma_ref is None:
            return L
        spike = st.d < -s.noise_sigma * self.sigma_ref
        if not st.has_prev:
            spike[0] = False
        if not spike.any():  # the count stays where it is
            return L
        st.spikes = self._spikes + np.cumsum(spike)
        return _earliest(spike & (st.spikes >= s.noise_spikes), L)

    def _commit(self, v: np.ndarray, k: int, st: _PollState) -> None:
        """Take samples v[:k] into the state, as k calls of `_check_sample` would have."""
        head = v[:k].tolist()
        self._n += k
        self._seg_vals.extend(head)
        if st.run is not None:
            self._short_run = int(st.run[k - 1])
        elif st.run_zero:
            self._short_run = 0
        if self.s.sudden_drop_fraction is not None:
            self._ma.extend(head)
            if st.mas is not None and k > st.ma_from:
                self._ma_hist.extend(st.mas[: k - st.ma_from].tolist())
        if st.d is not None:
            if st.spikes is not None:
                self._spikes = int(st.spikes[k - 1])
            elif self.sigma_ref is None:
                self.sigma_samples.extend(st.d[0 if st.has_prev else 1:k].tolist())
        self._prev = head[-1]
