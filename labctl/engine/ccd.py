"""Critical current density of a ccd_ramp from its half-cycles.

`critical_current_density` is the one definition of a CCD, and both paths that report one call
it: the engine's ccd_ramp on the half-cycles it just ran (so the value is known the moment the
ramp ends), and `labctl.analysis.products.analyze_ccd` on the recorded child steps, points and
detector events (so a value in the database can always be traced to, and re-derived from, the
data, including for imported or re-analysed runs). It lives in the engine because the engine
may not import the analysis layer; it is a pure function of half-cycle records. Both paths
store their values as the "ccd" analysis under the names of `result_rows`, so a run has one row
per value (the re-analysis replaces the engine's). Both conventions are reported — the current
density of the failing step (`ccd_mA_cm2`) and of the last step passed — together with what
must accompany any CCD value: the half-cycle capacity (ACL, which biases the CCD: "Standardizing
critical current density measurements in lithium garnets", Commun. Chem. 2023), the cumulative
areal capacity before failure (CAC, proposed in "Re-evaluating critical current density in
solid-state batteries: challenges and proposing an alternative"), the failure mode and (from the
recorded data) the stack pressure. A ramp whose very first half-cycle trips a hard short has no
CCD: the cell was shorted before it was stressed (`shorted_at_start`), and the ramp fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.engine.events import StepStatus

VERSION = "2"


@dataclass(frozen=True)
class HalfCycle:
    """One recorded strip or plate half-cycle of the ramp."""

    step_id: int
    current_mA: float  # signed set-point
    status: StepStatus
    end_reason: str | None
    capacity_mAh: float  # |Q| passed in the half-cycle
    detector_mode: str | None  # mode of a detector event attached to this step, if any


@dataclass(frozen=True)
class CcdResult:
    ccd_mA_cm2: float | None
    last_passed_mA_cm2: float | None
    failure_mode: str | None
    failed_step_id: int | None
    half_cycle_capacity_mAh_cm2: float | None
    cumulative_capacity_mAh_cm2: float
    stack_pressure_MPa: float | None
    n_steps: int
    #: the very first half-cycle tripped a hard short: the cell was shorted before the ramp (or
    #: at its first sample), so there is no critical current density, only a shorted cell
    shorted_at_start: bool = False


def critical_current_density(
    halves: list[HalfCycle], area_cm2: float, ramp_detector_mode: str | None = None,
    pressures_MPa: np.ndarray | None = None,
) -> CcdResult:
    """CCD from the half-cycles in execution order.

    A current step passes when all its half-cycles completed; the first half-cycle that did not
    complete marks the failing step. The mode is the detector's (an in-segment trip is attached
    to the half-cycle, an end-of-segment trip to the ramp), else the step's end reason (e.g. a
    voltage limit). The cumulative capacity counts every half-cycle up to and including the
    failing one, as the engine does.
    """
    failed: HalfCycle | None = None
    passed: list[float] = []
    levels: list[float] = []
    cac = 0.0
    for h in halves:
        j = abs(h.current_mA)
        cac += h.capacity_mAh
        if not levels or not np.isclose(levels[-1], j, rtol=1e-9):
            if levels and failed is None:
                passed.append(levels[-1])
            levels.append(j)
        if h.status is not StepStatus.COMPLETED:
            failed = h
            break
    if failed is None and levels:
        passed.append(levels[-1])
    mode = None
    if failed is not None:
        mode = failed.detector_mode or ramp_detector_mode
        if mode is None:
            reason = failed.end_reason or ""
            mode = reason.removeprefix("detector: ") or None
    caps = [h.capacity_mAh for h in halves if h.status is StepStatus.COMPLETED]
    p = None
    if pressures_MPa is not None:
        finite = pressures_MPa[np.isfinite(pressures_MPa)]
        p = float(np.median(finite)) if finite.size else None
    shorted = failed is not None and failed is halves[0] and mode == "hard_short"
    return CcdResult(
        ccd_mA_cm2=abs(failed.current_mA) / area_cm2 if failed is not None and not shorted
        else None,
        last_passed_mA_cm2=passed[-1] / area_cm2 if passed else None,
        failure_mode=mode,
        failed_step_id=failed.step_id if failed is not None else None,
        half_cycle_capacity_mAh_cm2=float(np.median(caps)) / area_cm2 if caps else None,
        cumulative_capacity_mAh_cm2=cac / area_cm2,
        stack_pressure_MPa=p,
        n_steps=len(levels),
        shorted_at_start=shorted,
    )


def result_rows(res: CcdResult) -> list[tuple[str, float | str | None, str]]:
    """The run-level (name, value, unit) rows of a CCD, as both paths store them."""
    return [
        ("ccd_mA_cm2", res.ccd_mA_cm2, "mA/cm^2"),
        ("ccd_last_passed_mA_cm2", res.last_passed_mA_cm2, "mA/cm^2"),
        ("ccd_failure_mode", res.failure_mode, ""),
        ("ccd_half_cycle_capacity_mAh_cm2", res.half_cycle_capacity_mAh_cm2, "mAh/cm^2"),
        ("ccd_cumulative_capacity_mAh_cm2", res.cumulative_capacity_mAh_cm2, "mAh/cm^2"),
        ("ccd_current_steps", res.n_steps, ""),
        ("ccd_shorted_at_start", 1.0 if res.shorted_at_start else 0.0, ""),
    ]


SHORTED_AT_START = ("cell shorted at the ramp's first half-cycle (hard_short): no critical "
                    "current density")
