"""How each resolved step kind is run: one runner per kind, each a generator of wake-up times.

A runner opens a step row, runs one or more techniques through `run_technique`, and closes the
row with a status and an end reason. Composite steps (CCD ramp, interleave) record each stage
as a child step, so every half-cycle and every spectrum has its own row and points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labctl.engine.channel import (
    NORMAL_ENDS,
    ChannelContext,
    SegmentOutcome,
    Wake,
    run_technique,
)
from labctl.engine.detectors import FailureDetector
from labctl.protocol import resolved as rs
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
CCD_RESULT_UNIT = "mA/cm^2"


@dataclass
class StepOutcome:
    status: str  # completed | failed | aborted
    end_reason: str


def _params(step: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(step).items() if k not in ("name",)}


def _recording(r: rs.RecordEvery) -> Recording:
    return Recording(every_dt_s=r.dt_s, every_dE_V=r.dE_V)


def _opt_max(*values: float | None) -> float | None:
    vals = [v for v in values if v is not None]
    return min(vals) if vals else None


def _opt_min(*values: float | None) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


class StepRunner:
    """Runs resolved steps on one channel context."""

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx
        self.open_steps: list[int] = []  # step rows not yet closed, innermost last
        self._kinds: dict[int, str] = {}
        self._dispatch: dict[str, Callable[..., Wake]] = {
            "rest": self.rest, "galvanostatic": self.galvanostatic,
            "potentiostatic": self.potentiostatic, "cv": self.cv, "eis": self.eis,
            "pressure": self.pressure, "ccd_ramp": self.ccd_ramp, "interleave": self.interleave,
        }

    # ---- bookkeeping ---------------------------------------------------------------------
    def run(self, step: rs.ResolvedStep, parent_id: int | None = None) -> Wake:
        return (yield from self._dispatch[step.kind](step, parent_id))

    def _open(self, step: Any, parent_id: int | None, name: str | None = None,
              params: dict[str, Any] | None = None) -> int:
        ctx = self.ctx
        step_id = ctx.recorder.start_step(
            ctx.run_id, ctx.next_index(), step.kind, name or step.name,
            params if params is not None else _params(step), ctx.run_time(), parent_id,
        )
        self.open_steps.append(step_id)
        self._kinds[step_id] = step.kind
        ctx.step_name = name or step.name
        return step_id

    def _close(self, step_id: int, outcome: SegmentOutcome | StepOutcome) -> None:
        self.ctx.recorder.end_step(step_id, outcome.status, outcome.end_reason,
                                   self.ctx.run_time())
        self.open_steps.remove(step_id)
        kind = self._kinds.pop(step_id)
        if self.ctx.on_step_end is not None and outcome.status == "completed":
            self.ctx.on_step_end(step_id, kind)

    def close_open_steps(self, status: str, reason: str) -> None:
        """After an abort or fault: close every step still open, innermost first."""
        while self.open_steps:
            step_id = self.open_steps.pop()
            self.ctx.recorder.end_step(step_id, status, reason, self.ctx.run_time())

    def _limits(self, step: Any) -> rs.Limits:
        return self.ctx.limits.merged(step.limits)

    def _technique_step(self, step: Any, parent_id: int | None, tech: Technique,
                        normal_ends: frozenset[str] = NORMAL_ENDS,
                        detector: FailureDetector | None = None) -> Wake:
        step_id = self._open(step, parent_id)
        out = yield from run_technique(self.ctx, step_id, tech, self._limits(step), detector,
                                       normal_ends)
        self._close(step_id, out)
        return out

    # ---- simple steps --------------------------------------------------------------------
    def rest(self, step: rs.Rest, parent_id: int | None) -> Wake:
        tech = OpenCircuit(step.duration_s, _recording(step.record))
        if step.settle_dEdt_V_per_s is None:
            return (yield from self._technique_step(step, parent_id, tech))
        return (yield from self._rest_until_settled(step, parent_id, tech))

    def _rest_until_settled(self, step: rs.Rest, parent_id: int | None,
                            tech: OpenCircuit) -> Wake:
        """OCV that ends early once |dE/dt| over the last minute is below the threshold."""
        window_s = 60.0
        step_id = self._open(step, parent_id)
        elapsed = 0.0
        out: SegmentOutcome | None = None
        while elapsed < step.duration_s - EPS:
            chunk = OpenCircuit(min(window_s, step.duration_s - elapsed), tech.recording)
            E_before = out.last_E_V if out else None
            out = yield from run_technique(self.ctx, step_id, chunk, self._limits(step))
            elapsed += chunk.duration_s
            if out.status != "completed":
                break
            if E_before is not None and out.last_E_V is not None:
                if abs(out.last_E_V - E_before) / chunk.duration_s < step.settle_dEdt_V_per_s:
                    out = dataclasses.replace(out, end_reason="settled")
                    break
        assert out is not None
        self._close(step_id, out)
        return out

    def galvanostatic(self, step: rs.Galvanostatic, parent_id: int | None,
                      detector: FailureDetector | None = None) -> Wake:
        lim = self._limits(step)
        I_A = step.current_mA / 1000.0
        duration = step.duration_s if step.duration_s is not None else 1e9
        charge_C = step.capacity_mAh * 3.6 if step.capacity_mAh is not None else None
        tech = ConstantCurrent(
            I_A, duration,
            E_min_V=_opt_min(step.E_min_V, lim.E_min_V),
            E_max_V=_opt_max(step.E_max_V, lim.E_max_V),
            charge_limit_C=charge_C, recording=_recording(step.record),
        )
        normal = {"time", "charge"}
        # a voltage end the step asked for is a normal end, a safety window is not
        if step.E_max_V is not None and (lim.E_max_V is None or step.E_max_V <= lim.E_max_V):
            normal.add("E_max")
        if step.E_min_V is not None and (lim.E_min_V is None or step.E_min_V >= lim.E_min_V):
            normal.add("E_min")
        if detector is None and step.detectors is not None:
            detector = FailureDetector(step.detectors)  # one segment: in-segment checks only
        return (yield from self._technique_step(step, parent_id, tech, frozenset(normal),
                                                detector))

    def potentiostatic(self, step: rs.Potentiostatic, parent_id: int | None) -> Wake:
        I_lim = step.I_limit_mA / 1000.0 if step.I_limit_mA is not None else None
        tech = ConstantVoltage(step.voltage_V, step.duration_s, I_lim, _recording(step.record))
        return (yield from self._technique_step(step, parent_id, tech))

    def cv(self, step: rs.CV, parent_id: int | None) -> Wake:
        tech = CyclicVoltammetry(step.E_start_V, tuple(step.vertices_V), step.scan_rate_V_s,
                                 step.cycles, step.record_dE_V)
        return (yield from self._technique_step(step, parent_id, tech))

    def eis(self, step: rs.EIS, parent_id: int | None) -> Wake:
        tech: Technique
        if step.mode == "PEIS":
            tech = PotentioEIS(step.f_high_Hz, step.f_low_Hz, step.points_per_decade,
                               step.amplitude, step.averages)
        else:
            tech = GalvanoEIS(step.f_high_Hz, step.f_low_Hz, step.points_per_decade,
                              step.amplitude / 1000.0, step.averages)
        return (yield from self._technique_step(step, parent_id, tech))

    def pressure(self, step: rs.Pressure, parent_id: int | None) -> Wake:
        """Ask for the set-point, wait until the gauge is in band, verify it holds."""
        ctx = self.ctx
        step_id = self._open(step, parent_id)
        if ctx.frame is None:
            out = StepOutcome("failed", "no pressure frame on this station")
            self._close(step_id, out)
            return out
        ctx.frame.request_pressure(step.setpoint_MPa)
        ctx.recorder.event(ctx.run_id, "operator", f"pressure set-point {step.setpoint_MPa} MPa",
                           step_id=step_id, t_s=ctx.run_time())
        start = ctx.clock.now()
        in_band_since: float | None = None
        while True:
            P = ctx.frame.read_pressure_MPa()
            now = ctx.clock.now()
            if abs(P - step.setpoint_MPa) <= step.tolerance_MPa:
                in_band_since = now if in_band_since is None else in_band_since
                if now - in_band_since >= step.hold_s:
                    out = StepOutcome("completed", f"in band at {P:.2f} MPa")
                    break
            else:
                in_band_since = None
            if now - start > step.timeout_s:
                out = StepOutcome("failed", f"pressure {P:.2f} MPa not within "
                                  f"{step.setpoint_MPa}±{step.tolerance_MPa} MPa")
                break
            yield now + max(ctx.poll_interval_s, 1.0)
        self._close(step_id, out)
        return out

    # ---- adaptive steps ------------------------------------------------------------------
    def ccd_ramp(self, step: rs.CCDRamp, parent_id: int | None) -> Wake:
        """Plate/strip at rising current density until a detector or limit trips, or j_max."""
        ctx = self.ctx
        ramp_id = self._open(step, parent_id)
        detector = FailureDetector(step.detectors)
        j_step = step.start_mA
        k = 0
        last_passed: float | None = None
        failed_at: float | None = None
        mode: str | None = None
        cac_mAh = 0.0
        outcome = StepOutcome("completed", "reached maximum current")
        while j_step <= step.max_mA + EPS:
            k += 1
            failed = False
            for cycle in range(step.cycles_per_step):
                for sign, label in ((1.0, "strip"), (-1.0, "plate")):
                    half = rs.Galvanostatic(
                        name=f"{j_step / step.area_cm2:.2f} mA/cm2 {label} {cycle + 1}",
                        current_mA=sign * j_step,
                        duration_s=step.half_cycle_s,
                        capacity_mAh=step.half_cycle_mAh,
                        E_min_V=-step.E_limit_V, E_max_V=step.E_limit_V,
                        record=step.record,
                    )
                    out = yield from self.galvanostatic(half, ramp_id, detector)
                    cac_mAh += abs(out.Q_mAh)
                    if out.status == "completed":
                        trip = detector.end_segment()
                        if trip is not None:
                            ctx.recorder.event(ctx.run_id, "detector",
                                               f"{trip.mode}: {trip.message}",
                                               step_id=ramp_id, t_s=ctx.run_time(),
                                               severity="warning", data={"mode": trip.mode})
                            out = dataclasses.replace(out, status="failed",
                                                      end_reason=f"detector: {trip.mode}",
                                                      trip=trip)
                    if out.status != "completed":
                        failed = True
                        mode = out.trip.mode if out.trip else out.end_reason
                        break
                    if step.rest_s > 0:
                        rest = rs.Rest(name="rest", duration_s=step.rest_s, record=step.record)
                        yield from self.rest(rest, ramp_id)
                if failed:
                    break
            if failed:
                failed_at = j_step
                outcome = StepOutcome("completed", f"failure detected at "
                                      f"{j_step / step.area_cm2:.2f} mA/cm2 ({mode})")
                break
            last_passed = j_step
            if step.eis_after_step is not None:
                yield from self.eis(step.eis_after_step, ramp_id)
            j_step = step.start_mA + k * step.increment_mA
        a = step.area_cm2
        ctx.results.update({
            "ccd_mA_cm2": failed_at / a if failed_at is not None else None,
            "ccd_last_passed_mA_cm2": last_passed / a if last_passed is not None else None,
            "ccd_failure_mode": mode,
            "ccd_cumulative_capacity_mAh_cm2": cac_mAh / a,
        })
        self._close(ramp_id, outcome)
        return outcome

    def interleave(self, step: rs.Interleave, parent_id: int | None) -> Wake:
        """Galvanostatic in slices of `every_mAh`, each followed by rest + EIS (in-situ EIS)."""
        ctx = self.ctx
        group_id = self._open(step, parent_id)
        body = step.galvanostatic
        total_cap = body.capacity_mAh
        total_time = body.duration_s
        passed_mAh = 0.0
        passed_s = 0.0
        yield from self.eis(step.eis, group_id)
        outcome = StepOutcome("completed", "done")
        n = 0
        while True:
            n += 1
            slice_cap = step.every_mAh
            if total_cap is not None:
                slice_cap = min(slice_cap, total_cap - passed_mAh)
            slice_time = None if total_time is None else total_time - passed_s
            seg = dataclasses.replace(body, name=f"{body.name} #{n}", capacity_mAh=slice_cap,
                                      duration_s=slice_time)
            t_before = ctx.run_time()
            out = yield from self.galvanostatic(seg, group_id)
            passed_mAh += abs(out.Q_mAh)
            passed_s += ctx.run_time() - t_before
            if out.status != "completed":
                outcome = StepOutcome("failed", out.end_reason)
                break
            rest = rs.Rest(name="rest", duration_s=step.rest_s)
            yield from self.rest(rest, group_id)
            yield from self.eis(step.eis, group_id)
            if out.end_reason != "charge":  # the body's own end (voltage or time) was reached
                outcome = StepOutcome("completed", out.end_reason)
                break
            if total_cap is not None and passed_mAh >= total_cap - EPS:
                outcome = StepOutcome("completed", "capacity")
                break
        ctx.results["interleave_capacity_mAh"] = passed_mAh
        self._close(group_id, outcome)
        return outcome
