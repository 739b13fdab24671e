"""How each resolved step kind is run: techniques built from steps, linked where they can be.

Simple steps (rest, galvanostatic, potentiostatic, CV, EIS) become one technique each, with the
protocol's limits on the technique wherever the technique carries them, so the instrument
enforces them itself (software checks stay as the second layer). Consecutive simple steps whose
parameters do not depend on what the previous one did run as one linked sequence
(`run_segments`): no open-circuit gap between them. Adaptive steps decide between loads: the
CCD ramp links the half-cycles and rests of one current level, then looks at the outcome before
the next level; an interleave links each slice with its rest and EIS. Composite steps record
each stage as a child step, so every half-cycle and every spectrum has its own row and points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from labctl.engine import ccd
from labctl.engine.channel import (
    COMPLETED,
    FAILED,
    ChannelContext,
    Segment,
    SegmentOutcome,
    StepOpen,
    Wake,
    run_segments,
    run_technique,
)
from labctl.engine.detectors import FailureDetector
from labctl.engine.events import (
    EndCause,
    OperatorActed,
    OperatorAction,
    StepEnd,
    StepStatus,
)
from labctl.protocol import resolved as rs
from labctl_drivers.interfaces import EndReason
from labctl_drivers.techniques import (
    ConstantCurrent,
    ConstantVoltage,
    CyclicVoltammetry,
    GalvanoEIS,
    OpenCircuit,
    PotentioEIS,
    Recording,
    Technique,
)

EPS = 1e-9
SETTLE_WINDOW_S = 60.0  # a settling rest compares E over this window

#: step kinds that run as one technique whose parameters are fixed in advance, so consecutive
#: ones can be loaded as one linked sequence
LINKABLE = ("rest", "galvanostatic", "potentiostatic", "cv", "eis")


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus
    end: StepEnd


Outcome = StepOutcome | SegmentOutcome


def _params(step: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(step).items() if k not in ("name",)}


def _recording(r: rs.RecordEvery) -> Recording:
    return Recording(every_dt_s=r.dt_s, every_dE_V=r.dE_V)


def _lowest(*values: float | None) -> float | None:
    vals = [v for v in values if v is not None]
    return min(vals) if vals else None


def _highest(*values: float | None) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _safety(quantity: str, bound: float, unit: str, reason: EndReason) -> str:
    return f"safety limit: {quantity} {bound:g} {unit} ({reason.value}, on the instrument)"


def linkable(step: rs.ResolvedStep) -> bool:
    """One fixed technique: a rest that waits to settle decides as it goes, so it is not."""
    if isinstance(step, rs.Rest):
        return step.settle_dEdt_V_per_s is None
    return step.kind in LINKABLE


def groups(steps: Sequence[rs.ResolvedStep]) -> Iterator[list[rs.ResolvedStep]]:
    """Consecutive linkable steps together; every other step alone."""
    for link, run in groupby(steps, key=linkable):
        if link:
            yield list(run)
        else:
            yield from ([s] for s in run)


class StepRunner:
    """Runs resolved steps on one channel context."""

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx
        self._dispatch: dict[str, Callable[..., Wake]] = {
            "rest": self._one, "galvanostatic": self._one, "potentiostatic": self._one,
            "cv": self._one, "eis": self._one,
            "pressure": self.pressure, "ccd_ramp": self.ccd_ramp, "interleave": self.interleave,
        }

    # ---- protocol level ------------------------------------------------------------------
    def run_steps(self, steps: Sequence[rs.ResolvedStep]) -> Wake:
        """Run steps in order; returns (step, outcome) of the first that did not complete, or
        None when all did."""
        for group in groups(steps):
            if linkable(group[0]):
                outs: Sequence[Outcome] = yield from run_segments(
                    self.ctx, [self.segment(s, None) for s in group])
            else:
                outs = [(yield from self.run(group[0], None))]
            for step, out in zip(group, outs):
                if out.status is not COMPLETED:
                    return step, out
        return None

    def run(self, step: rs.ResolvedStep, parent: int | None) -> Wake:
        return (yield from self._dispatch[step.kind](step, parent))

    def _one(self, step: rs.ResolvedStep, parent: int | None) -> Wake:
        if isinstance(step, rs.Rest) and step.settle_dEdt_V_per_s is not None:
            return (yield from self._rest_until_settled(step, parent))
        return (yield from run_technique(self.ctx, self.segment(step, parent)))

    def _limits(self, step: Any) -> rs.Limits:
        return self.ctx.limits.merged(step.limits)

    # ---- techniques from steps -----------------------------------------------------------
    def segment(self, step: rs.ResolvedStep, parent: int | None,
                detector: FailureDetector | None = None, segment_checks: bool = False
                ) -> Segment:
        """The technique a simple step runs, its limits, and how its end is judged."""
        opens = StepOpen(step.kind, step.name, _params(step), parent)
        lim = self._limits(step)
        if isinstance(step, rs.Galvanostatic):
            return self._galvanostatic(step, opens, lim, detector, segment_checks)
        if isinstance(step, rs.Potentiostatic):
            return self._potentiostatic(step, opens, lim)
        tech: Technique
        normal = frozenset({EndReason.TIME})
        safety: dict[EndReason, str] = {}
        if isinstance(step, rs.Rest):
            tech = OpenCircuit(step.duration_s, _recording(step.record))
        elif isinstance(step, rs.CV):
            I_lim = None if lim.I_max_mA is None else lim.I_max_mA / 1000.0
            tech = CyclicVoltammetry(step.E_start_V, tuple(step.vertices_V), step.scan_rate_V_s,
                                     step.cycles, step.record_dE_V, I_limit_A=I_lim)
            normal = frozenset({EndReason.TIME, EndReason.COMPLETE})
            if lim.I_max_mA is not None:
                safety[EndReason.I_LIMIT] = _safety("|I|", lim.I_max_mA, "mA",
                                                    EndReason.I_LIMIT)
        elif isinstance(step, rs.EIS):
            tech = eis_technique(step)
            normal = frozenset({EndReason.COMPLETE, EndReason.TIME})
        else:
            raise TypeError(f"{step.kind} is not a single-technique step")
        return Segment(tech, lim, opens, normal, safety)

    def _galvanostatic(self, step: rs.Galvanostatic, opens: StepOpen, lim: rs.Limits,
                       detector: FailureDetector | None, segment_checks: bool) -> Segment:
        """CP with the instrument's own limits: the tighter of the step's cut-offs and the
        protocol's E window. A cut-off the step asked for ends it normally; a bound that came
        only from the safety window fails it as a safety limit."""
        if (step.duration_s is None and step.capacity_mAh is None and step.E_min_V is None
                and step.E_max_V is None):
            raise ValueError(f"galvanostatic step {step.name!r} has no end condition (the "
                             "protocol layer refuses this)")
        charge_C = step.capacity_mAh * 3.6 if step.capacity_mAh is not None else None
        tech = ConstantCurrent(
            step.current_mA / 1000.0, step.duration_s,
            E_min_V=_highest(step.E_min_V, lim.E_min_V),
            E_max_V=_lowest(step.E_max_V, lim.E_max_V),
            charge_limit_C=charge_C, recording=_recording(step.record),
        )
        normal = {EndReason.TIME, EndReason.CHARGE}
        safety: dict[EndReason, str] = {}
        if step.E_max_V is not None and (lim.E_max_V is None or step.E_max_V <= lim.E_max_V):
            normal.add(EndReason.E_MAX)
        elif lim.E_max_V is not None:
            safety[EndReason.E_MAX] = _safety("E", lim.E_max_V, "V", EndReason.E_MAX)
        if step.E_min_V is not None and (lim.E_min_V is None or step.E_min_V >= lim.E_min_V):
            normal.add(EndReason.E_MIN)
        elif lim.E_min_V is not None:
            safety[EndReason.E_MIN] = _safety("E", lim.E_min_V, "V", EndReason.E_MIN)
        if detector is None and step.detectors is not None:
            # one segment: in-segment checks only; the area scales the hard-short floor
            detector = FailureDetector(step.detectors, self.ctx.area_cm2)
            detector.set_pre_stress_reference(self.ctx.pre_stress_R_ohm)
        return Segment(tech, lim, opens, frozenset(normal), safety, detector, segment_checks)

    def _potentiostatic(self, step: rs.Potentiostatic, opens: StepOpen, lim: rs.Limits
                        ) -> Segment:
        """CA with the tighter of the step's |I| limit and the protocol's I_max on the
        instrument. The step's own limit ends it as today (failed, "I_limit"); the protocol's
        alone is a safety limit."""
        I_lim_mA = _lowest(step.I_limit_mA, lim.I_max_mA)
        tech = ConstantVoltage(step.voltage_V, step.duration_s,
                               None if I_lim_mA is None else I_lim_mA / 1000.0,
                               _recording(step.record))
        safety: dict[EndReason, str] = {}
        if lim.I_max_mA is not None and (step.I_limit_mA is None
                                         or lim.I_max_mA < step.I_limit_mA):
            safety[EndReason.I_LIMIT] = _safety("|I|", lim.I_max_mA, "mA", EndReason.I_LIMIT)
        return Segment(tech, lim, opens, frozenset({EndReason.TIME}), safety)

    # ---- steps that decide as they go ----------------------------------------------------
    def _rest_until_settled(self, step: rs.Rest, parent: int | None) -> Wake:
        """OCV that ends early once |dE/dt| over the last minute is below the threshold."""
        ctx = self.ctx
        assert step.settle_dEdt_V_per_s is not None
        step_id = ctx.open_step(step.kind, step.name, _params(step), parent)
        lim = self._limits(step)
        elapsed = 0.0
        out: SegmentOutcome | None = None
        end: StepEnd | None = None
        while elapsed < step.duration_s - EPS:
            chunk = OpenCircuit(min(SETTLE_WINDOW_S, step.duration_s - elapsed),
                                _recording(step.record))
            E_before = out.last_E_V if out else None
            out = yield from run_technique(
                ctx, Segment(chunk, lim, step_id, frozenset({EndReason.TIME})))
            elapsed += chunk.duration_s
            if out.status is not COMPLETED:
                break
            if E_before is not None and out.last_E_V is not None:
                if abs(out.last_E_V - E_before) / chunk.duration_s < step.settle_dEdt_V_per_s:
                    end = StepEnd(EndCause.SETTLED, "settled")
                    break
        assert out is not None
        ctx.close_step(step_id, out.status, end or out.end, out.t_end_s)
        return dataclasses.replace(out, end=end or out.end)

    def pressure(self, step: rs.Pressure, parent: int | None) -> Wake:
        """Ask for the set-point, wait until the gauge is in band, verify it holds."""
        ctx = self.ctx
        step_id = ctx.open_step(step.kind, step.name, _params(step), parent)
        frame = ctx.frame
        if frame is None:
            out = StepOutcome(FAILED, StepEnd(EndCause.OUTCOME,
                                              "no pressure frame on this station"))
            ctx.close_step(step_id, out.status, out.end)
            return out
        frame.request_pressure(step.setpoint_MPa)
        ctx.bus.publish(OperatorActed(ctx.run_id, ctx.run_time(), step_id,
                                      f"pressure set-point {step.setpoint_MPa} MPa",
                                      OperatorAction.SETPOINT))
        start = ctx.clock.now()
        in_band_since: float | None = None
        while True:
            P = frame.read_pressure_MPa()
            now = ctx.clock.now()
            if abs(P - step.setpoint_MPa) <= step.tolerance_MPa:
                in_band_since = now if in_band_since is None else in_band_since
                if now - in_band_since >= step.hold_s:
                    out = StepOutcome(COMPLETED, StepEnd(EndCause.OUTCOME,
                                                         f"in band at {P:.2f} MPa"))
                    break
            else:
                in_band_since = None
            if now - start > step.timeout_s:
                out = StepOutcome(FAILED, StepEnd(
                    EndCause.OUTCOME, f"pressure {P:.2f} MPa not within "
                    f"{step.setpoint_MPa}±{step.tolerance_MPa} MPa"))
                break
            yield now + max(ctx.poll_interval_s, 1.0)
        ctx.close_step(step_id, out.status, out.end)
        return out

    def ccd_ramp(self, step: rs.CCDRamp, parent: int | None) -> Wake:
        """Plate/strip at rising current density until a detector or limit trips, or j_max.

        Each current level (its half-cycles and the rests between them) is one linked load;
        whether the next level runs is decided from its outcome. The CCD itself is
        `labctl.engine.ccd.critical_current_density` of the half-cycles, the one definition
        the recorded-data analysis uses too; its values are published as the "ccd" analysis.
        """
        ctx = self.ctx
        ramp_id = ctx.open_step(step.kind, step.name, _params(step), parent)
        detector = FailureDetector(step.detectors, step.area_cm2)
        detector.set_pre_stress_reference(ctx.pre_stress_R_ohm)  # the pre-ramp EIS, if any
        halves: list[ccd.HalfCycle] = []
        j_step = step.start_mA
        k = 0
        status, end = COMPLETED, StepEnd(EndCause.OUTCOME, "reached maximum current")
        while j_step <= step.max_mA + EPS:
            k += 1
            level = [s for cycle in range(step.cycles_per_step)
                     for s in self._ccd_level(step, j_step, cycle, ramp_id, detector)]
            outs = yield from run_segments(ctx, level)
            bad = next((i for i, o in enumerate(outs) if o.status is not COMPLETED), None)
            ran = outs if bad is None else outs[:bad + 1]  # not what was cut short after it
            halves += [ccd.HalfCycle(out.step, seg.technique.current_A * 1e3, out.status,
                                     str(out.end), abs(out.Q_mAh),
                                     out.trip.mode if out.trip else None)
                       for seg, out in zip(level, ran)
                       if isinstance(seg.technique, ConstantCurrent)]
            if bad is not None and not isinstance(level[bad].technique, ConstantCurrent):
                # a rest between half-cycles was stopped (a safety limit): no CCD was found
                status, end = FAILED, outs[bad].end
                break
            if bad is not None:
                mode = outs[bad].trip.mode if outs[bad].trip else str(outs[bad].end)
                end = StepEnd(EndCause.OUTCOME, f"failure detected at "
                              f"{j_step / step.area_cm2:.2f} mA/cm2 ({mode})")
                break
            if step.eis_after_step is not None:
                yield from run_technique(ctx, self.segment(step.eis_after_step, ramp_id))
            j_step = step.start_mA + k * step.increment_mA
        res = ccd.critical_current_density(halves, step.area_cm2)
        if res.shorted_at_start:  # no CCD: a shorted cell, reported as such, not completed
            status, end = FAILED, StepEnd(EndCause.OUTCOME, ccd.SHORTED_AT_START)
        ctx.report("ccd", ccd.VERSION, ccd.result_rows(res))
        ctx.close_step(ramp_id, status, end)
        return StepOutcome(status, end)

    def _ccd_level(self, step: rs.CCDRamp, j_mA: float, cycle: int, ramp_id: int,
                   detector: FailureDetector) -> Iterator[Segment]:
        """One strip and one plate half-cycle at j_mA, each followed by its rest."""
        for sign, label in ((1.0, "strip"), (-1.0, "plate")):
            half = rs.Galvanostatic(
                name=f"{j_mA / step.area_cm2:.2f} mA/cm2 {label} {cycle + 1}",
                current_mA=sign * j_mA, duration_s=step.half_cycle_s,
                capacity_mAh=step.half_cycle_mAh,
                E_min_V=-step.E_limit_V, E_max_V=step.E_limit_V, record=step.record,
            )
            yield self.segment(half, ramp_id, detector, segment_checks=True)
            if step.rest_s > 0:
                yield self.segment(rs.Rest(name="rest", duration_s=step.rest_s,
                                           record=step.record), ramp_id)

    def interleave(self, step: rs.Interleave, parent: int | None) -> Wake:
        """Galvanostatic in slices of `every_mAh`, each followed by rest + EIS (in-situ EIS).

        Each slice is linked with its rest and EIS; whether another slice follows depends on
        how the slice ended.
        """
        ctx = self.ctx
        group_id = ctx.open_step(step.kind, step.name, _params(step), parent)
        body = step.galvanostatic
        total_cap = body.capacity_mAh
        total_time = body.duration_s
        passed_mAh = 0.0
        passed_s = 0.0
        first = yield from run_technique(ctx, self.segment(step.eis, group_id))
        outcome = StepOutcome(first.status, first.end) if first.status is not COMPLETED \
            else StepOutcome(COMPLETED, StepEnd(EndCause.OUTCOME, "done"))
        n = 0
        while outcome.status is COMPLETED:
            n += 1
            slice_cap = step.every_mAh
            if total_cap is not None:
                slice_cap = min(slice_cap, total_cap - passed_mAh)
            slice_time = None if total_time is None else total_time - passed_s
            seg = dataclasses.replace(body, name=f"{body.name} #{n}", capacity_mAh=slice_cap,
                                      duration_s=slice_time)
            rest = rs.Rest(name="rest", duration_s=step.rest_s)
            t_before = ctx.run_time()
            outs = yield from run_segments(ctx, [self.segment(s, group_id)
                                                 for s in (seg, rest, step.eis)])
            out = outs[0]
            # a slice that ended on its charge limit passed exactly that charge on the
            # instrument; the points' integral can fall short of it by up to one record
            charged = out.end.instrument is EndReason.CHARGE
            passed_mAh += slice_cap if charged else abs(out.Q_mAh)
            passed_s += out.t_end_s - t_before
            bad = next((o for o in outs if o.status is not COMPLETED), None)
            if bad is not None:
                outcome = StepOutcome(FAILED, bad.end)
            elif out.end.instrument is not EndReason.CHARGE:
                outcome = StepOutcome(COMPLETED, out.end)  # the body's own end was reached
                break
            elif total_cap is not None and passed_mAh >= total_cap - EPS:
                outcome = StepOutcome(COMPLETED, StepEnd(EndCause.OUTCOME, "capacity"))
                break
        ctx.results["interleave_capacity_mAh"] = passed_mAh
        ctx.close_step(group_id, outcome.status, outcome.end)
        return outcome


def eis_technique(step: rs.EIS) -> PotentioEIS | GalvanoEIS:
    """The impedance technique an EIS step loads (amplitude in V for PEIS, mA for GEIS)."""
    if step.mode == "PEIS":
        return PotentioEIS(step.f_high_Hz, step.f_low_Hz, step.points_per_decade,
                           step.amplitude, step.averages)
    return GalvanoEIS(step.f_high_Hz, step.f_low_Hz, step.points_per_decade,
                      step.amplitude / 1000.0, step.averages)
