"""The failure detectors, one sample at a time: the definition the fast path must reproduce.

A detector lives for one adaptive step (a CCD ramp, or one galvanostatic step) and sees every
constant-current segment (half-cycle) in turn, so it can learn the cell's reference resistance
and noise from the first segments and compare later ones against them. It is fed the same numbers
whether they come from a real SP-300 or the twin: the thresholds are the same.

Signals are the polarisation in the direction of the current, s = E·sign(I), so plating and
stripping half-cycles of a symmetric cell look alike. Per sample, in this order:

* hard short: s below max(floor, f·|I|·R) for N samples in a row (the cell voltage collapsing to
  ~0 V, how a lithium or sodium filament through a solid electrolyte shows during a critical
  current test; Kasemchainan et al., Nat. Mater. 18, 1105 (2019)). When the cell's area is known
  the floor is the drop a metallic path of SHORT_ASR_OHM_CM2 would give at this current density,
  |I|·SHORT_ASR/A (never below the noise, HARD_SHORT_NOISE_FLOOR_V), so it scales with the cell
  and the current: an absolute floor (2 mV) calls a
  healthy 10 mm cell at a low current density shorted, and misses a shorted cell at a high one;
  without an area the settings' absolute floor is used;
* divergence: s above min(V_cut, k·|I|·R), the polarisation running away (voids, contact loss);
* sudden drop: the 5-sample moving average below (1 - f) times the largest of the 10 moving
  averages before it, unless the hard-short test is already counting;
* soft short: N downward steps larger than k·σ_ref within the segment, σ_ref being the noise
  learned from the first segments' sample-to-sample differences as 1.4826·MAD (the normal-
  consistent median absolute deviation; Rousseeuw & Croux, JASA 88, 1273 (1993)).

R is the median plateau resistance of the first REFERENCE_SEGMENTS segments (R_ref) once known;
before that a reference taken before the cell was stressed (`set_pre_stress_reference`: the
low-frequency resistance of the pre-step EIS, or a low-current pulse), and only without one the
segment's own early resistance — which, for a cell already shorted at its first sample, is the
short's, so only the area-scaled floor can catch it then. At segment end the plateau resistance
is compared with the previous segment's (a halving: soft short) and with R_ref (three times:
voids).

This module is the plain version, kept readable on purpose and shipped: `fast.FailureDetector`
(what the engine uses) checks whole polls with numpy and must make exactly these decisions,
which tests/engine/test_detectors_vectorised.py checks by driving both.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from labctl.protocol.resolved import DetectorSettings

REFERENCE_SEGMENTS = 3  # segments whose plateau resistance defines R_ref
MIN_SIGMA_V = 1e-4  # noise floor for the spike test (instrument resolution, well below 1 mV)
#: Area-specific resistance below which a cell is an electronic short (Ω·cm²). A metallic
#: filament through the electrolyte is a fraction of an Ω·cm²; the thinnest sodium solid
#: electrolytes have bulk resistances of tens of Ω·cm² (Na3Zr2Si2PO12, ~1e-3 S/cm at 25 °C, as a
#: 1 mm pellet: ~100 Ω·cm²), so 1 Ω·cm² separates the two by more than an order of magnitude.
SHORT_ASR_OHM_CM2 = 1.0
#: The hard-short floor never goes below this: a polarisation within a few noise σ of 0 V
#: (σ ~0.1–0.2 mV on a potentiostat's 1 V range) cannot be told from a short, and a floor inside
#: the noise lets a shorted cell's samples scatter above it, so the run of N never completes.
HARD_SHORT_NOISE_FLOOR_V = 5 * MIN_SIGMA_V


@dataclass(frozen=True)
class Trip:
    mode: str  # hard_short | sudden_drop | soft_short | divergence | voids
    message: str


class ReferenceDetector:
    """Failure detection on constant-current segments, one sample at a time."""

    def __init__(self, settings: DetectorSettings, area_cm2: float | None = None) -> None:
        self.s = settings
        self.area_cm2 = area_cm2 if area_cm2 and area_cm2 > 0 else None
        self.R_pre: float | None = None  # ohm, measured before the cell was stressed
        self.plateau_R: list[float] = []  # ohm, per finished segment
        self.sigma_samples: list[float] = []
        self.sigma_ref: float | None = None
        self._seg_I = 0.0
        self._seg_vals: list[float] = []  # s of this segment's samples past the ignored ones
        self._n = 0  # samples seen in this segment, ignored ones included
        self._short_run = 0
        self._ma: deque[float] = deque(maxlen=5)
        self._ma_hist: deque[float] = deque(maxlen=10)
        self._spikes = 0
        self._prev: float | None = None

    @property
    def R_ref(self) -> float | None:
        """Median plateau resistance of the first REFERENCE_SEGMENTS segments (ohm)."""
        n = min(len(self.plateau_R), REFERENCE_SEGMENTS)
        return float(np.median(self.plateau_R[:n])) if n else None

    def set_pre_stress_reference(self, R_ohm: float | None) -> None:
        """The cell's resistance measured before it was stressed (ohmic + interfacial, e.g.
        the pre-step EIS's low-frequency Z', or V/I of a low-current pulse). Used until R_ref is
        learned, so a cell that shorts at its first sample is compared with what it was, not
        with itself. Non-positive or non-finite values are ignored."""
        self.R_pre = R_ohm if R_ohm is not None and np.isfinite(R_ohm) and R_ohm > 0 else None

    def hard_short_floor(self, I: float) -> float:
        """The hard-short floor at |current| `I` (A): max(|I|·SHORT_ASR/area, the noise floor)
        when the area is known, else the settings' absolute floor."""
        if self.area_cm2 is None:
            return self.s.hard_short_floor_V
        return max(I * SHORT_ASR_OHM_CM2 / self.area_cm2, HARD_SHORT_NOISE_FLOOR_V)

    def resolvable(self, R: float | None, I: float) -> float | None:
        """`R` raised to what the hard-short floor resolves at |current| `I`, floor/I, when the
        area is known: a resistance measured at the noise level (a cell shorted from its first
        sample at a low current) says nothing, and thresholds relative to it fire on noise."""
        if R is None or self.area_cm2 is None:
            return R
        return max(R, self.hard_short_floor(I) / I)

    def start_segment(self, current_A: float) -> None:
        self._seg_I = current_A
        self._seg_vals = []
        self._n = 0
        self._short_run = 0
        self._ma.clear()
        self._ma_hist.clear()
        self._spikes = 0
        self._prev = None

    def _segment_R(self) -> float | None:
        """This segment's own early resistance, used until R_ref is known."""
        if len(self._seg_vals) < 3:
            return None
        return float(np.median(self._seg_vals[:10])) / abs(self._seg_I)

    def _active_sign(self) -> float | None:
        """sign(I) of the running segment; None if detection is off or no current flows."""
        if not self.s.enabled or self._seg_I == 0.0:
            return None
        return 1.0 if self._seg_I > 0 else -1.0

    def feed(self, E_V: np.ndarray) -> Trip | None:
        """Check new samples of the running segment; return the first trip, if any."""
        sign = self._active_sign()
        if sign is None:
            return None
        return self._feed_samples([e * sign for e in np.asarray(E_V, dtype=float).tolist()],
                                  abs(self._seg_I))

    def _feed_samples(self, vals: list[float], I: float) -> Trip | None:
        """Signed samples `vals` (s = E·sign(I)) of a segment at |current| `I`, one by one."""
        for v in vals:
            self._n += 1
            if self._n <= self.s.ignore_first_samples:
                self._prev = v
                continue
            self._seg_vals.append(v)
            R = self.resolvable(self.R_ref or self.R_pre or self._segment_R(), I)
            trip = self._check_sample(v, I, R)
            self._prev = v
            if trip:
                return trip
        return None

    def _check_sample(self, v: float, I: float, R: float | None) -> Trip | None:
        s = self.s
        if R is not None and s.hard_short_fraction is not None:
            threshold = max(self.hard_short_floor(I), s.hard_short_fraction * I * R)
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
        R_ref = self.R_ref
        if self.plateau_R and R_k < 0.5 * self.plateau_R[-1] and R_k > 0:
            trip = Trip("soft_short", f"plateau resistance fell from {self.plateau_R[-1]:.1f} "
                        f"to {R_k:.1f} ohm")
        elif R_ref is not None and R_k > 3 * R_ref:
            trip = Trip("voids", f"plateau resistance {R_k:.1f} ohm above 3x reference "
                        f"{R_ref:.1f} ohm")
        self.plateau_R.append(R_k)
        if self.sigma_ref is None and len(self.sigma_samples) >= 20:
            d = np.asarray(self.sigma_samples)
            mad = float(np.median(np.abs(d - np.median(d)))) * 1.4826
            self.sigma_ref = max(mad, MIN_SIGMA_V)
        return trip
