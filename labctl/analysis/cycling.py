"""Galvanostatic cycling: overpotential per half-cycle and cycle, and short detection.

The plateau overpotential of a half-cycle is the median |E − E_ocv| over its second half
(the first half contains the ohmic jump and the transient); E_ocv is the last
open-circuit potential before it, because a NaK-vs-Na half cell rests at +7–13 mV, not 0.
Shorts are flagged with the same thresholds the live detectors use, applied after the fact,
so a run recorded without detectors (or imported) is screened too: a hard short is a plateau
below max(|j|·SHORT_ASR, 0.3·|j|·ASR_ref) — the detectors' area-scaled floor (never below their
noise floor), not an absolute 2 mV that a healthy large cell at a low current density sits
under; a soft short is an ASR falling below half the previous half-cycle's. Detector events
already recorded for the run are reported as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.engine.detectors.reference import HARD_SHORT_NOISE_FLOOR_V, SHORT_ASR_OHM_CM2

VERSION = "2"


@dataclass(frozen=True)
class HalfCycleData:
    step_id: int
    current_mA: float
    E_V: np.ndarray
    E_ref_V: float = 0.0  # open-circuit potential before the half-cycle (NaK vs Na: ~+10 mV)


@dataclass(frozen=True)
class HalfCycleResult:
    step_id: int
    cycle: int
    overpotential_V: float
    asr_ohm_cm2: float
    j_mA_cm2: float


@dataclass(frozen=True)
class CyclingResult:
    halves: list[HalfCycleResult]
    cycle_overpotential_V: dict[int, float]
    short_cycle: int | None
    short_reason: str | None


def analyze_cycling(halves: list[HalfCycleData], area_cm2: float,
                    hard_short_fraction: float = 0.3) -> CyclingResult:
    """Number cycles (a new cycle starts at a strip after a plate) and screen for shorts."""
    out: list[HalfCycleResult] = []
    cycle, prev_sign = 0, 0.0
    for h in halves:
        if len(h.E_V) == 0 or h.current_mA == 0:
            continue
        sign = float(np.sign(h.current_mA))
        if cycle == 0 or (sign > 0 and prev_sign < 0):
            cycle += 1
        prev_sign = sign
        plateau = float(np.nanmedian(np.abs(h.E_V[len(h.E_V) // 2:] - h.E_ref_V)))
        j = abs(h.current_mA) / area_cm2
        out.append(HalfCycleResult(h.step_id, cycle, plateau, plateau / j * 1e3, j))
    per_cycle = {
        c: float(np.mean([r.overpotential_V for r in out if r.cycle == c]))
        for c in sorted({r.cycle for r in out})
    }
    short_cycle, reason = None, None
    if out:
        asr_ref = float(np.median([r.asr_ohm_cm2 for r in out[:3]]))
        for prev, r in zip([None, *out[:-1]], out):
            expected_V = r.j_mA_cm2 * asr_ref * 1e-3
            floor_V = max(r.j_mA_cm2 * 1e-3 * SHORT_ASR_OHM_CM2, HARD_SHORT_NOISE_FLOOR_V)
            if r.overpotential_V < max(floor_V, hard_short_fraction * expected_V):
                short_cycle, reason = r.cycle, "hard short: plateau below 0.3·j·ASR_ref"
                break
            if prev is not None and r.asr_ohm_cm2 < 0.5 * prev.asr_ohm_cm2:
                short_cycle, reason = r.cycle, "soft short: ASR fell below half the previous"
                break
    return CyclingResult(out, per_cycle, short_cycle, reason)
