"""Dry-run plan: what each resolved step will do, how long and how much charge, what ends it.

Plans describe, engines act (bluesky documentation: plans vs the RunEngine): an operator checks
the table before committing a cell. Adaptive steps (voltage-ended strips, CCD ramps) have no
fixed length, so the row says which bound ends them and estimates the CCD ramp as if it reached
`max`.

How long an EIS sweep takes is the instrument's to say (its frequency list and time per
frequency are defined once, with the drivers' techniques), and this layer imports neither the
engine nor the drivers: `plan` takes an `InstrumentTiming` (the engine's is
`labctl.engine.timing.INSTRUMENT_TIMING`). Without one, EIS sweeps are left out of the
estimates and their rows are open-ended.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Protocol

from labctl.protocol.resolved import (
    CV,
    EIS,
    CCDRamp,
    Galvanostatic,
    Interleave,
    Potentiostatic,
    Pressure,
    ResolvedProtocol,
    ResolvedStep,
    Rest,
)


class InstrumentTiming(Protocol):
    """What only the instrument can time."""

    def eis_duration_s(self, eis: EIS) -> float:
        """Seconds the instrument takes for the whole sweep of `eis`."""
        ...


@dataclass(frozen=True)
class PlanRow:
    """One step of the plan. `est_duration_s` is None when nothing bounds it but the cell."""

    index: int
    name: str
    kind: str
    params: dict[str, float | str | None] = field(default_factory=dict)
    est_duration_s: float | None = None
    est_charge_mAh: float = 0.0
    bound: str = ""
    source_line: int | None = None


@dataclass(frozen=True)
class PlanTotal:
    """Sum over rows; `open_ended` counts rows whose duration could not be estimated."""

    duration_s: float
    charge_mAh: float
    open_ended: int


def _galv_duration(g: Galvanostatic) -> tuple[float | None, str]:
    t_cap = None if g.capacity_mAh is None else g.capacity_mAh / abs(g.current_mA) * 3600.0
    candidates = [t for t in (g.duration_s, t_cap) if t is not None]
    ends = []
    if g.E_max_V is not None:
        ends.append(f"E_max {g.E_max_V:g} V")
    if g.E_min_V is not None:
        ends.append(f"E_min {g.E_min_V:g} V")
    if g.capacity_mAh is not None:
        ends.append(f"capacity {g.capacity_mAh:.4g} mAh")
    if g.duration_s is not None:
        ends.append(f"duration {g.duration_s:g} s")
    bound = "ends at " + " or ".join(ends)
    return (min(candidates) if candidates else None), bound


def _row(index: int, s: ResolvedStep, timing: InstrumentTiming | None) -> PlanRow:
    def eis_s(e: EIS) -> float:
        return 0.0 if timing is None else timing.eis_duration_s(e)

    base = {"index": index, "name": s.name, "kind": s.kind, "source_line": s.source_line}
    if isinstance(s, Rest):
        bound = f"ends after {s.duration_s:g} s"
        if s.settle_dEdt_V_per_s is not None:
            bound += f" or when |dE/dt| < {s.settle_dEdt_V_per_s:g} V/s"
        return PlanRow(
            **base, params={"duration_s": s.duration_s}, est_duration_s=s.duration_s, bound=bound
        )
    if isinstance(s, Galvanostatic):
        t, bound = _galv_duration(s)
        q = 0.0 if t is None else abs(s.current_mA) * t / 3600.0
        return PlanRow(
            **base,
            params={
                "current_mA": s.current_mA,
                "duration_s": s.duration_s,
                "capacity_mAh": s.capacity_mAh,
                "E_min_V": s.E_min_V,
                "E_max_V": s.E_max_V,
            },
            est_duration_s=t,
            est_charge_mAh=q,
            bound=bound + ("" if t is not None else " (duration set by the cell)"),
        )
    if isinstance(s, Potentiostatic):
        return PlanRow(
            **base,
            params={
                "voltage_V": s.voltage_V,
                "duration_s": s.duration_s,
                "I_limit_mA": s.I_limit_mA,
            },
            est_duration_s=s.duration_s,
            bound=f"ends after {s.duration_s:g} s",
        )
    if isinstance(s, CV):
        points = (s.E_start_V, *s.vertices_V, s.E_start_V)
        path_V = sum(abs(b - a) for a, b in itertools.pairwise(points))
        t = path_V / s.scan_rate_V_s * s.cycles
        return PlanRow(
            **base,
            params={
                "E_start_V": s.E_start_V,
                "vertices_V": ", ".join(f"{v:g}" for v in s.vertices_V),
                "scan_rate_V_s": s.scan_rate_V_s,
                "cycles": s.cycles,
            },
            est_duration_s=t,
            bound=f"{s.cycles} cycle(s)",
        )
    if isinstance(s, EIS):
        return PlanRow(
            **base,
            params={
                "mode": s.mode,
                "f_high_Hz": s.f_high_Hz,
                "f_low_Hz": s.f_low_Hz,
                "points_per_decade": s.points_per_decade,
                "amplitude": s.amplitude,
            },
            est_duration_s=None if timing is None else timing.eis_duration_s(s),
            bound="sweep complete",
        )
    if isinstance(s, Pressure):
        return PlanRow(
            **base,
            params={
                "setpoint_MPa": s.setpoint_MPa,
                "tolerance_MPa": s.tolerance_MPa,
                "hold_s": s.hold_s,
                "timeout_s": s.timeout_s,
            },
            est_duration_s=s.hold_s,
            bound=f"in band for {s.hold_s:g} s; fails after {s.timeout_s:g} s",
        )
    if isinstance(s, CCDRamp):
        n_steps = math.floor((s.max_mA - s.start_mA) / s.increment_mA + 1e-9) + 1
        t_total = 0.0
        q_total = 0.0
        for k in range(n_steps):
            i = s.start_mA + k * s.increment_mA
            half = (
                s.half_cycle_s
                if s.half_cycle_s is not None
                else (s.half_cycle_mAh or 0.0) / i * 3600.0
            )
            halves = 2 * s.cycles_per_step
            t_total += halves * (half + s.rest_s)
            q_total += halves * i * half / 3600.0
            if s.eis_after_step is not None:
                t_total += eis_s(s.eis_after_step)
        per = (
            f"{s.half_cycle_s:g} s" if s.half_cycle_s is not None else f"{s.half_cycle_mAh:.4g} mAh"
        )
        return PlanRow(
            **base,
            params={
                "start_mA": s.start_mA,
                "increment_mA": s.increment_mA,
                "max_mA": s.max_mA,
                "area_cm2": s.area_cm2,
                "half_cycle": per,
                "cycles_per_step": s.cycles_per_step,
                "E_limit_V": s.E_limit_V,
                "current_steps": n_steps,
            },
            est_duration_s=t_total,
            est_charge_mAh=q_total,
            bound=f"ends at failure, |V| > {s.E_limit_V:g} V, or after {n_steps} steps to "
            f"{s.max_mA:.4g} mA (estimate assumes it reaches max)",
        )
    if isinstance(s, Interleave):
        t_g, bound = _galv_duration(s.galvanostatic)
        t_eis = eis_s(s.eis)
        if t_g is None:
            t = None
            q = 0.0
        else:
            q = abs(s.galvanostatic.current_mA) * t_g / 3600.0
            segments = max(1, math.ceil(q / s.every_mAh - 1e-9))
            t = t_g + t_eis + segments * (s.rest_s + t_eis)
        return PlanRow(
            **base,
            params={
                "current_mA": s.galvanostatic.current_mA,
                "every_mAh": s.every_mAh,
                "rest_s": s.rest_s,
                "capacity_mAh": s.galvanostatic.capacity_mAh,
                "E_max_V": s.galvanostatic.E_max_V,
                "E_min_V": s.galvanostatic.E_min_V,
            },
            est_duration_s=t,
            est_charge_mAh=q,
            bound=bound + f"; EIS every {s.every_mAh:.4g} mAh",
        )
    raise AssertionError(f"unhandled step {s!r}")  # pragma: no cover


def plan(resolved: ResolvedProtocol, timing: InstrumentTiming | None = None) -> list[PlanRow]:
    """One row per resolved step, in run order (index is 0-based, as the engine counts).

    `timing` times EIS sweeps (see the module docstring); without it they count for nothing.
    """
    return [_row(i, s, timing) for i, s in enumerate(resolved.steps)]


def plan_total(rows: list[PlanRow]) -> PlanTotal:
    """Totals for the bottom line of a plan table; open-ended steps add nothing to duration."""
    return PlanTotal(
        duration_s=sum(r.est_duration_s or 0.0 for r in rows),
        charge_mAh=sum(r.est_charge_mAh for r in rows),
        open_ended=sum(1 for r in rows if r.est_duration_s is None),
    )
