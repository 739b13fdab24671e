"""From a resolved protocol to the LAND step program an operator enters, or a located refusal.

What LAND can be asked to do, as far as labctl writes programs for it: rest for a time,
constant current (charge or discharge) ending on step time, step capacity or voltage, and loops
of identical steps (a cycle step). Everything else is refused with the protocol file and line of
the step, because a program LAND cannot run must not be half-entered:

* EIS (LAND testers measure no impedance) and pressure steps (a LAND channel reads no gauge)
  are refused unless the station's LANDT channel says to leave them out (``skip: [eis,
  pressure]``: the impedance is measured elsewhere, the frame is set by hand); what was left out
  is printed on the sheet and recorded as a note of the run;
* a rest that ends once the voltage settles (LAND ends steps on fixed conditions only),
  potentiostatic and CV steps (labctl writes rest and constant-current programs only), and the
  in-situ EIS interleave are refused always.

The CCD ramp is adaptive on the SP-300 (the engine decides after each current level whether to
go on); LAND cannot decide, so the ramp is written out to its last level and the detectors run on
the followed data: when they trip, labctl tells the operator to stop the channel.

Sign: labctl's positive current strips the working electrode; it is written as LAND's charge.
The protocol's safety window and per-step charge limit become each step's cut-offs where they
are tighter than the step's own (marked "safety" on the sheet), as the SP-300 path puts them on
the instrument, and are also listed for LAND's protection fields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from labctl.engine.followed import FollowedGroup, FollowedPlan, FollowedStep
from labctl.protocol import resolved as rs
from labctl.protocol.errors import LocatedError, ProtocolError
from labctl_drivers.landt.program import LandMode, LandProgram, LandStep, StepOrigin


class SkippableKind(enum.StrEnum):
    """Protocol step kinds a LANDT channel may be told to leave out."""

    EIS = "eis"
    PRESSURE = "pressure"


@dataclass(frozen=True)
class _Planned:
    land: LandStep  # numbered later
    followed: FollowedStep


def _lowest(*v: float | None) -> float | None:
    vals = [x for x in v if x is not None]
    return min(vals) if vals else None


def _highest(*v: float | None) -> float | None:
    vals = [x for x in v if x is not None]
    return max(vals) if vals else None


class _Planner:
    def __init__(self, file: str, protocol: rs.ResolvedProtocol,
                 skip: frozenset[SkippableKind]) -> None:
        self.file = file
        self.protocol = protocol
        self.skip = skip
        self.errors: list[LocatedError] = []
        self.planned: list[_Planned] = []
        self.groups: list[FollowedGroup] = []
        self.omitted: list[str] = []
        self.before: list[str] = []

    def where(self, step: rs.StepBase) -> str:
        return f"{self.file}:{step.source_line or 1}"

    def refuse(self, step: rs.StepBase, why: str) -> None:
        self.errors.append(LocatedError(self.file, step.source_line or 1, 1, (),
                                        f"step '{step.name}' ({getattr(step, 'kind', '?')}): "
                                        f"LAND cannot run this: {why}"))

    def omit(self, step: rs.StepBase, kind: SkippableKind, why: str) -> bool:
        if kind not in self.skip:
            self.refuse(step, f"{why} (a station can leave such steps out: skip: [{kind}])")
            return False
        self.omitted.append(f"{step.name} ({self.where(step)}): {why}")
        return True

    # ---- steps ----------------------------------------------------------------------------
    def add(self, step: rs.ResolvedStep) -> None:
        if isinstance(step, rs.Rest):
            self.rest(step, step.duration_s, step.record, None)
        elif isinstance(step, rs.Galvanostatic):
            self.galvanostatic(step, None)
        elif isinstance(step, rs.EIS):
            self.omit(step, SkippableKind.EIS, "LAND testers measure no impedance")
        elif isinstance(step, rs.Pressure):
            if self.omit(step, SkippableKind.PRESSURE, "a LAND channel reads no force gauge"):
                self.before.append(
                    f"Set the frame to {step.setpoint_MPa:g} MPa (within "
                    f"±{step.tolerance_MPa:g} MPa) and hold it {step.hold_s:g} s before "
                    "pressing start; labctl reads no gauge on this channel.")
        elif isinstance(step, rs.CCDRamp):
            self.ccd_ramp(step)
        elif isinstance(step, rs.Interleave):
            self.refuse(step, "the interleave measures EIS between slices")
        elif isinstance(step, rs.Potentiostatic):
            self.refuse(step, "labctl writes rest and constant-current LAND programs only")
        else:
            self.refuse(step, "labctl writes rest and constant-current LAND programs only")

    def rest(self, step: rs.StepBase, duration_s: float, record: rs.RecordEvery,
             group: int | None) -> None:
        if isinstance(step, rs.Rest) and step.settle_dEdt_V_per_s is not None:
            self.refuse(step, "LAND ends a rest on fixed conditions, not when dE/dt settles")
            return
        land = LandStep(0, LandMode.REST, time_s=duration_s, record_dt_s=record.dt_s,
                        record_dV_V=record.dE_V,
                        origin=StepOrigin("rest", step.name if group is None else "rest",
                                          self.where(step), group))
        lim = self.protocol.limits.merged(step.limits)
        self.planned.append(_Planned(land, FollowedStep(
            "rest", land.origin.name if land.origin else "rest",
            {"duration_s": duration_s}, group, lim, None, 0.0)))

    def galvanostatic(self, step: rs.Galvanostatic, group: int | None,
                      detectors: rs.DetectorSettings | None = None) -> None:
        lim = self.protocol.limits.merged(step.limits)
        safety: list[str] = []
        V_high = _lowest(step.E_max_V, lim.E_max_V)
        if V_high is not None and (step.E_max_V is None or V_high < step.E_max_V):
            safety.append("V_high")
        V_low = _highest(step.E_min_V, lim.E_min_V)
        if V_low is not None and (step.E_min_V is None or V_low > step.E_min_V):
            safety.append("V_low")
        cap = _lowest(step.capacity_mAh, lim.Q_max_mAh)
        if cap is not None and (step.capacity_mAh is None or cap < step.capacity_mAh):
            safety.append("capacity")
        if step.current_mA == 0:
            self.refuse(step, "a constant-current step at 0 mA is a rest; write it as one")
            return
        mode = LandMode.CC_CHARGE if step.current_mA > 0 else LandMode.CC_DISCHARGE
        land = LandStep(0, mode, step.current_mA, step.duration_s, cap, V_high, V_low,
                        tuple(safety), step.record.dt_s, step.record.dE_V,
                        origin=StepOrigin("galvanostatic", step.name, self.where(step), group))
        params = {"current_mA": step.current_mA, "duration_s": step.duration_s,
                  "capacity_mAh": step.capacity_mAh, "E_min_V": step.E_min_V,
                  "E_max_V": step.E_max_V}
        self.planned.append(_Planned(land, FollowedStep(
            "galvanostatic", step.name, params, group, lim,
            detectors if detectors is not None else step.detectors, step.current_mA)))

    def ccd_ramp(self, step: rs.CCDRamp) -> None:
        if step.eis_after_step is not None and not self.omit(
                step, SkippableKind.EIS, "the ramp measures EIS after each current level; "
                "LAND testers measure no impedance"):
            return
        group = len(self.groups)
        self.groups.append(FollowedGroup("ccd_ramp", step.name, {
            "start_mA": step.start_mA, "increment_mA": step.increment_mA, "max_mA": step.max_mA,
            "area_cm2": step.area_cm2, "half_cycle_mAh": step.half_cycle_mAh,
            "half_cycle_s": step.half_cycle_s, "E_limit_V": step.E_limit_V}, step.area_cm2,
            step.detectors))
        k = 0
        j = step.start_mA
        while j <= step.max_mA + 1e-9:
            for cycle in range(step.cycles_per_step):
                for sign, label in ((1.0, "strip"), (-1.0, "plate")):
                    half = rs.Galvanostatic(
                        name=f"{j / step.area_cm2:.2f} mA/cm2 {label} {cycle + 1}",
                        current_mA=sign * j, duration_s=step.half_cycle_s,
                        capacity_mAh=step.half_cycle_mAh, E_min_V=-step.E_limit_V,
                        E_max_V=step.E_limit_V, record=step.record,
                        source_line=step.source_line, limits=step.limits)
                    self.galvanostatic(half, group, step.detectors)
                    if step.rest_s > 0:
                        self.rest(step, step.rest_s, step.record, group)
            k += 1
            j = step.start_mA + k * step.increment_mA

    # ---- the program ----------------------------------------------------------------------------
    def program(self) -> LandProgram:
        steps = _with_loops([p.land for p in self.planned])
        lim = self.protocol.limits
        protection = []
        if lim.E_max_V is not None:
            protection.append(f"voltage upper limit {lim.E_max_V:g} V")
        if lim.E_min_V is not None:
            protection.append(f"voltage lower limit {lim.E_min_V:g} V")
        if lim.I_max_mA is not None:
            protection.append(f"current limit |I| <= {lim.I_max_mA:.6g} mA")
        if lim.Q_max_mAh is not None:
            protection.append(f"capacity limit per step {lim.Q_max_mAh:.6g} mAh")
        if lim.P_min_MPa is not None or lim.P_max_MPa is not None:
            protection.append(f"stack pressure {lim.P_min_MPa}-{lim.P_max_MPa} MPa: LAND cannot "
                              "watch it and labctl reads no gauge here; check the frame by hand")
        notes = []
        if self.groups:
            notes.append("The CCD ramp is written out to its last current level: LAND cannot "
                         "decide when the cell has failed. labctl's detectors watch the data "
                         "and tell you when to stop the channel.")
        return LandProgram(self.protocol.name, tuple(steps), tuple(protection),
                           tuple(self.before), tuple(self.omitted), tuple(notes))


def _same(a: LandStep, b: LandStep) -> bool:
    """Two steps LAND would run identically (their numbers and origins aside)."""
    return (a.mode, a.current_mA, a.time_s, a.capacity_mAh, a.V_high, a.V_low, a.record_dt_s,
            a.record_dV_V) == (b.mode, b.current_mA, b.time_s, b.capacity_mAh, b.V_high,
                               b.V_low, b.record_dt_s, b.record_dV_V)


def _repeats(steps: list[LandStep], i: int, n: int) -> int:
    k = 1
    while i + (k + 1) * n <= len(steps) and all(
            _same(steps[i + j], steps[i + k * n + j]) for j in range(n)):
        k += 1
    return k


def _with_loops(flat: list[LandStep]) -> list[LandStep]:
    """Number the steps, writing each run of identical blocks once followed by a cycle step.

    One level of loops: the block that saves the most steps at each position is chosen.
    """
    out: list[LandStep] = []
    i = 0
    while i < len(flat):
        best_saving, best_n, best_k = 0, 1, 1
        for n in range(1, (len(flat) - i) // 2 + 1):
            k = _repeats(flat, i, n)
            saving = n * (k - 1) - 1  # steps not written, less the cycle step
            if saving > best_saving:
                best_saving, best_n, best_k = saving, n, k
        first = len(out) + 1
        for j in range(best_n):
            out.append(replace(flat[i + j], number=len(out) + 1))
        if best_k > 1:
            out.append(LandStep(len(out) + 1, LandMode.CYCLE, goto=first, repeats=best_k))
        i += best_n * best_k
    return out


def plan_for_land(file: str, protocol: rs.ResolvedProtocol,
                  skip: frozenset[SkippableKind] = frozenset(), tester: str = "",
                  channel: str = "") -> FollowedPlan:
    """The LAND program for `protocol` and what the follower expects of each executed step.

    Raises ProtocolError with every step LAND cannot run, each located in `file`.
    """
    planner = _Planner(file, protocol, skip)
    for step in protocol.steps:
        planner.add(step)
    if not planner.errors and not planner.planned:
        planner.errors.append(LocatedError(file, 1, 1, (), "nothing in this protocol runs on "
                                           "LAND (no rest or constant-current step)"))
    if planner.errors:
        raise ProtocolError(planner.errors)
    program = planner.program()
    steps = tuple(p.followed for p in planner.planned)
    if len(list(program.executed())) != len(steps):  # the loops must unroll to the protocol
        raise AssertionError("LAND program loops do not unroll to the protocol's steps")
    return FollowedPlan(program, steps, tuple(planner.groups), tester, channel)
