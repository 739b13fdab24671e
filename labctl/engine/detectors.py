"""Failure detectors for constant-current segments (echem.md §1.2, §1.4).

A `FailureDetector` lives for one adaptive step (a CCD ramp, or one galvanostatic step) and
sees every constant-current segment (half-cycle) in turn, so it can learn the cell's reference
resistance and noise from the first segments and compare later ones against them. It is fed
the same numbers whether they come from a real SP-300 or the twin: the thresholds are the same.

Signals are the polarisation in the direction of the current, s = E·sign(I), so plating and
stripping half-cycles of a symmetric cell look alike.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from labctl.protocol.resolved import DetectorSettings

REFERENCE_SEGMENTS = 3  # segments whose plateau resistance defines R_ref
MIN_SIGMA_V = 1e-4  # noise floor for the spike test (instrument resolution, well below 1 mV)


@dataclass(frozen=True)
class Trip:
    mode: str  # hard_short | sudden_drop | soft_short | divergence | voids
    message: str


class FailureDetector:
    def __init__(self, settings: DetectorSettings) -> None:
        self.s = settings
        self.plateau_R: list[float] = []  # ohm, per finished segment
        self.sigma_samples: list[float] = []
        self.sigma_ref: float | None = None
        self._seg_I = 0.0
        self._seg_vals: list[float] = []
        self._n = 0
        self._short_run = 0
        self._ma: deque[float] = deque(maxlen=5)
        self._ma_hist: deque[float] = deque(maxlen=10)
        self._spikes = 0
        self._prev: float | None = None
        self._R_ref: float | None = None
        self._R_ref_n = 0  # how many plateau values _R_ref was computed from
        self._nonfinite = False  # a NaN/inf sample in this segment: per-sample path to its end

    @property
    def R_ref(self) -> float | None:
        """Median plateau resistance of the first segments (ohm).

        Read for every sample, so it is cached: it only changes while the first
        REFERENCE_SEGMENTS segments are being appended (np.median per sample was ~25 % of a
        simulated CCD run's wall time).
        """
        n = min(len(self.plateau_R), REFERENCE_SEGMENTS)
        if n == 0:
            return None
        if self._R_ref_n != n:
            self._R_ref = float(np.median(self.plateau_R[:n]))
            self._R_ref_n = n
        return self._R_ref

    def start_segment(self, current_A: float) -> None:
        self._seg_I = current_A
        self._seg_vals = []
        self._n = 0
        self._short_run = 0
        self._ma.clear()
        self._ma_hist.clear()
        self._spikes = 0
        self._prev = None
        self._nonfinite = False

    def _segment_R(self) -> float | None:
        """This segment's own early resistance, used until R_ref is known."""
        if len(self._seg_vals) < 3:
            return None
        return float(np.median(self._seg_vals[: 10])) / abs(self._seg_I)

    def feed(self, E_V: np.ndarray) -> Trip | None:
        """Check new samples of the running segment; return the first trip, if any.

        A poll delivers tens of samples, and a per-sample Python loop over them was the engine's
        largest cost in long simulated campaigns. So the batch is checked with numpy: every test
        is evaluated for all samples at once, the earliest sample on which any test fires is
        found, the state is advanced over the samples before it in bulk, and that sample (and
        anything after it) goes through the per-sample code, which names the trip and leaves the
        state exactly as the per-sample loop would. The decisions are the per-sample loop's, to
        the sample (tests/engine/test_detectors_vectorised.py checks it against a plain loop).
        """
        if not self.s.enabled or self._seg_I == 0.0:
            return None
        sign = 1.0 if self._seg_I > 0 else -1.0
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
        k = 0 if self._nonfinite else self._vector_prefix(v, I)
        return self._feed_scalar(v[k:].tolist(), I) if k < len(v) else None

    def _feed_scalar(self, vals: list[float], I: float) -> Trip | None:
        """The per-sample path: the reference semantics, used from a batch's first trip on."""
        for v in vals:
            self._n += 1
            if self._n <= self.s.ignore_first_samples:
                self._prev = v
                continue
            self._seg_vals.append(v)
            R = self.R_ref or self._segment_R()
            trip = self._check_sample(v, I, R)
            self._prev = v
            if trip:
                return trip
        return None

    def _vector_prefix(self, v: np.ndarray, I: float) -> int:
        """Advance the state over `v` (signed, past the ignored samples) up to its first trip.

        Returns k: samples v[:k] trip nothing and the state now includes them, as if each had
        gone through `_check_sample`; v[k] (if k < len(v)) is the first sample on which a test
        fires.

        Called once per poll on ~60 samples, where each numpy call costs more than its
        arithmetic: once R_ref is known the thresholds are Python scalars (the same float
        products `_check_sample` forms), and the run-length, spike-count and 10-sample-maximum
        work is skipped when a cheap exact pre-test shows it cannot fire or change the state.
        """
        s = self.s
        L = len(v)
        c0 = len(self._seg_vals)
        R_ref = self.R_ref
        R: np.ndarray | None
        if R_ref:
            R, valid, R_const = None, None, R_ref
        else:
            R, valid = self._resistances(v, I, c0)
            R_const = None
        first = L

        def earliest(fires: np.ndarray) -> int:
            return int(np.argmax(fires)) if fires.any() else L

        run: np.ndarray | None = None  # None with hard-short on and R_const: all zeros
        if s.hard_short_fraction is not None and R_const is not None:
            fIR = s.hard_short_fraction * I * R_const
            below = v < (fIR if fIR > s.hard_short_floor_V else s.hard_short_floor_V)
            # else every sample resets the run: it is 0 throughout (and 0 trips nothing)
            if below.any() or s.hard_short_samples <= 0:
                hits = np.cumsum(below)
                reset_at = np.maximum.accumulate(np.where(below, -1, np.arange(L)))
                run = np.where(reset_at >= 0, hits - hits[np.maximum(reset_at, 0)],
                               self._short_run + hits)
                first = min(first, earliest(run >= s.hard_short_samples))
        elif R is not None and valid is not None and s.hard_short_fraction is not None:
            fIR = s.hard_short_fraction * I * R
            thr = np.where(fIR > s.hard_short_floor_V, fIR, s.hard_short_floor_V)  # max()
            below = valid & (v < thr)
            # run length of `below`, reset where a sample with a resistance is above the
            # threshold, carried through samples without one (no resistance yet: no test)
            hits = np.cumsum(below)
            reset_at = np.maximum.accumulate(np.where(valid & ~below, np.arange(L), -1))
            run = np.where(reset_at >= 0, hits - hits[np.maximum(reset_at, 0)],
                           self._short_run + hits)
            first = min(first, earliest(valid & (run >= s.hard_short_samples)))
        run_zero = run is None and s.hard_short_fraction is not None and R_const is not None
        if s.divergence_V is not None:
            limit: np.ndarray | float = s.divergence_V
            if R_const is not None:
                aIR = s.divergence_asr_factor * I * R_const
                limit = aIR if aIR < s.divergence_V else s.divergence_V  # min()
            elif R is not None and valid is not None:
                aIR_a = s.divergence_asr_factor * I * R
                limit = np.where(valid & (aIR_a < s.divergence_V), aIR_a, s.divergence_V)
            first = min(first, earliest(v > limit))
        mas: np.ndarray | None = None
        ma_from = 0
        if s.sudden_drop_fraction is not None:
            n_ma = len(self._ma)
            ext = np.concatenate([np.fromiter(self._ma, float, n_ma), v]) if n_ma else v
            ma_from = max(0, 5 - 1 - n_ma)  # first j with a full 5-sample window
            if ma_from < L:
                a = n_ma + ma_from - 4  # ext index where the first window starts
                M = L - ma_from
                # summed oldest first, as sum(deque) / 5 does: the same rounding
                mas = ((((ext[a:a + M] + ext[a + 1:a + 1 + M]) + ext[a + 2:a + 2 + M])
                        + ext[a + 3:a + 3 + M]) + ext[a + 4:a + 4 + M]) / 5
                h0 = len(self._ma_hist)
                hist = np.concatenate([np.full(10, -np.inf),
                                       np.fromiter(self._ma_hist, float, h0), mas])
                c = 1 - s.sudden_drop_fraction
                # Pre-test: each drop threshold c·max(10 MAs before) is at most c times the
                # largest MA in all those windows (c >= 0 keeps the order), so if no MA is below
                # that, none can be below its own threshold: nothing to compute
                if c < 0.0 or bool((mas < c * hist[h0:h0 + M + 9].max()).any()):
                    # max of the (up to) 10 MA values before each new one
                    hmax = hist[h0:h0 + M].copy()
                    for lag in range(1, 10):
                        np.maximum(hmax, hist[h0 + lag:h0 + lag + M], out=hmax)
                    if run is not None:
                        runs: np.ndarray = run[ma_from:]
                    else:
                        runs = np.full(L - ma_from, 0 if run_zero else self._short_run)
                    cnt = c0 + 1 + np.arange(ma_from, L)  # len(self._seg_vals) with sample j
                    drop = ((cnt > 10) & (h0 + np.arange(len(mas)) > 0) & (runs == 0)
                            & (mas < c * hmax))
                    first = min(first, ma_from + earliest(drop))
        d: np.ndarray | None = None
        has_prev = self._prev is not None
        spikes: np.ndarray | None = None
        if s.noise_sigma is not None:
            prev = np.empty(L)
            prev[0] = self._prev if has_prev else np.nan
            prev[1:] = v[:-1]
            d = v - prev
            if self.sigma_ref is not None:
                spike = d < -s.noise_sigma * self.sigma_ref
                if not has_prev:
                    spike[0] = False
                if spike.any():  # else the count stays where it is
                    spikes = self._spikes + np.cumsum(spike)
                    first = min(first, earliest(spike & (spikes >= s.noise_spikes)))
        k = first
        if k == 0:
            return 0
        # commit v[:k]
        head = v[:k].tolist()
        self._n += k
        self._seg_vals.extend(head)
        if run is not None:
            self._short_run = int(run[k - 1])
        elif run_zero:
            self._short_run = 0
        if s.sudden_drop_fraction is not None:
            self._ma.extend(head)
            if mas is not None and k > ma_from:
                self._ma_hist.extend(mas[: k - ma_from].tolist())
        if d is not None:
            if spikes is not None:
                self._spikes = int(spikes[k - 1])
            elif self.sigma_ref is None:
                self.sigma_samples.extend(d[0 if has_prev else 1:k].tolist())
        self._prev = head[-1]
        return k

    def _resistances(
        self, v: np.ndarray, I: float, c0: int
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The resistance `feed` would use at each sample of `v`, and where there is one.

        R_ref once known (and non-zero, as `R_ref or ...` reads it), else the segment's own
        early resistance, which needs 3 samples and changes only over the first 10.
        """
        L = len(v)
        R_ref = self.R_ref
        if R_ref:
            return np.full(L, R_ref), np.ones(L, dtype=bool)
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

    def _check_sample(self, v: float, I: float, R: float | None) -> Trip | None:
        s = self.s
        if R is not None and s.hard_short_fraction is not None:
            threshold = max(s.hard_short_floor_V, s.hard_short_fraction * I * R)
            self._short_run = self._short_run + 1 if v < threshold else 0
            if self._short_run >= s.hard_short_samples:
                return Trip("hard_short", f"|V| {abs(v) * 1e3:.1f} mV below {threshold * 1e3:.1f} "
                            f"mV for {self._short_run} samples")
        if s.divergence_V is not None:
            limit = s.divergence_V
            if R is not None:
                limit = min(limit, s.divergence_asr_factor * I * R)
            if v > limit:
                return Trip("divergence", f"|V| {v:.3f} V above {limit:.3f} V")
        if s.sudden_drop_fraction is not None:
            self._ma.append(v)
            if len(self._ma) == self._ma.maxlen:
                ma = sum(self._ma) / len(self._ma)
                # while the voltage sits in the hard-short band, let the hard-short test
                # (which needs a few samples) name it: a collapse to ~0 V is a hard short, and a
                # moving average would otherwise call it a sudden drop a sample or two earlier
                if (len(self._seg_vals) > 10 and self._ma_hist and self._short_run == 0
                        and ma < (1 - s.sudden_drop_fraction) * max(self._ma_hist)):
                    return Trip("sudden_drop", f"voltage fell from {max(self._ma_hist):.4f} V to "
                                f"{ma:.4f} V within 10 samples")
                self._ma_hist.append(ma)
        if s.noise_sigma is not None and self._prev is not None:
            d = v - self._prev
            if self.sigma_ref is None:
                self.sigma_samples.append(d)
            elif d < -s.noise_sigma * self.sigma_ref:
                self._spikes += 1
                if self._spikes >= s.noise_spikes:
                    return Trip("soft_short", f"{self._spikes} voltage spikes larger than "
                                f"{s.noise_sigma:g} sigma ({self.sigma_ref * 1e3:.2f} mV)")
        return None

    def end_segment(self) -> Trip | None:
        """Close the segment: learn the references, and compare with earlier segments."""
        if not self.s.enabled or self._seg_I == 0.0 or len(self._seg_vals) < 3:
            return None
        half = self._seg_vals[len(self._seg_vals) // 2:]
        R_k = float(np.median(half)) / abs(self._seg_I)
        trip = None
        if self.plateau_R and R_k < 0.5 * self.plateau_R[-1] and R_k > 0:
            trip = Trip("soft_short", f"plateau resistance fell from {self.plateau_R[-1]:.1f} "
                        f"to {R_k:.1f} ohm")
        elif self.R_ref is not None and R_k > 3 * self.R_ref:
            trip = Trip("voids", f"plateau resistance {R_k:.1f} ohm above 3x reference "
                        f"{self.R_ref:.1f} ohm")
        self.plateau_R.append(R_k)
        if self.sigma_ref is None and len(self.sigma_samples) >= 20:
            d = np.asarray(self.sigma_samples)
            mad = float(np.median(np.abs(d - np.median(d)))) * 1.4826
            self.sigma_ref = max(mad, MIN_SIGMA_V)
        return trip
