"""Runs on an instrument labctl follows but cannot control: a LANDT channel.

A LAND tester runs the program an operator typed in; labctl only reads the rows LAND exports
(`labctl_drivers.landt.follower`). This runner turns those rows into the same engine events as
a run labctl drives -- steps (and the CCD ramp's parent step) opened and closed, points, limit
and detector trips, results -- so the recorder writes them, the notifier alerts on them and the
end-of-run analyses read them exactly as they read an SP-300 run. It differs where the truth
differs:

* **Time** is LAND's own test time: a row's run time is its ``TestTime``.
* **Steps** begin and end where the export's step index does (placed in the program by
  `labctl_drivers.landt.check.ProgramCheck`); a step's end reason is the end condition its last
  row met ("charge", "E_max", "E_min", "time"), as the instrument would name it.
* **Charge** is LAND's own step capacity counter, signed like the current.
* **The program is checked as rows arrive**: every departure from it (wrong current, missing
  cut-off, missing loop, ...) is a fault event at once, so the notifier sends it.
* **A trip cannot switch the channel off.** A limit or detector trip is recorded as usual and
  followed by a safe-state event that says the channel was *not* confirmed off and tells the
  operator exactly what to stop; rows that keep arriving are recorded in a step of their own,
  until LAND's export stops growing.

The run ends when the program's last step met its end condition, when the export stopped
growing for the follower's `stale_after_s` (LAND stopped; after a trip that is the expected
end), on an operator abort (labctl stops following; LAND goes on, and the operator is told to
stop it), or when no row arrives within `start_timeout_s` of the start.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from labctl.engine import ccd
from labctl.engine.channel import Aborted, ChannelContext, Wake, check_limits
from labctl.engine.detectors import FailureDetector, Trip
from labctl.engine.events import (
    DetectorTripped,
    EndCause,
    EngineFailure,
    FaultOccurred,
    LimitTripped,
    OperatorActed,
    OperatorAction,
    Points,
    RunEnded,
    RunStarted,
    RunStatus,
    SafeStateAction,
    Severity,
    StepEnd,
    StepStatus,
)
from labctl.engine.runner import (
    Controls,
    RunFailure,
    RunOutcome,
    _housekeeping,
    _publish_engine_results,
)
from labctl.engine.scheduler import Scheduler
from labctl.protocol.resolved import DetectorSettings, Limits
from labctl_drivers.interfaces import ChannelState, EndReason
from labctl_drivers.landt.check import UNPLACED, Mismatch, ProgramCheck
from labctl_drivers.landt.follower import FollowedRows
from labctl_drivers.landt.formats import LandtRecords
from labctl_drivers.landt.program import LandProgram

COMPLETED, FAILED, ABORTED = StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.ABORTED
_END_REASON = {"capacity": EndReason.CHARGE, "V_high": EndReason.E_MAX,
               "V_low": EndReason.E_MIN, "time": EndReason.TIME}


@dataclass(frozen=True)
class FollowedStep:
    """What labctl records for one executed LAND step (in execution order)."""

    kind: str
    name: str
    params: Mapping[str, Any]
    group: int | None  # index of its composite step (FollowedPlan.groups)
    limits: Limits
    detectors: DetectorSettings | None
    current_mA: float


@dataclass(frozen=True)
class FollowedGroup:
    """A composite protocol step (the CCD ramp) whose executed steps are its children."""

    kind: str
    name: str
    params: Mapping[str, Any]
    area_cm2: float
    detectors: DetectorSettings | None


@dataclass(frozen=True)
class FollowedPlan:
    """The LAND program and, for each step LAND executes (loops unrolled), what it records."""

    program: LandProgram
    steps: tuple[FollowedStep, ...]
    groups: tuple[FollowedGroup, ...]
    tester: str = ""
    channel: str = ""


class RowSource(Protocol):
    """Where the followed rows come from (`labctl_drivers.landt.follower.ExportFollower`)."""

    def poll(self) -> FollowedRows: ...


@dataclass
class FollowedChannel:
    """One run to follow: its context, plan, row source and what to tell the operator."""

    ctx: ChannelContext
    plan: FollowedPlan
    source: RowSource
    stop_instruction: str  # e.g. "stop LAND tester land-1, channel 3 in LAND's software"
    protocol_name: str
    start_timeout_s: float = 3600.0


@dataclass
class _Step:
    number: int
    position: int  # UNPLACED for a LAND step the program does not have
    q_mAh: float = 0.0
    last_t: float = 0.0
    detector: FailureDetector | None = None


@dataclass
class _Group:
    index: int
    number: int
    detector: FailureDetector | None
    halves: list[ccd.HalfCycle] = field(default_factory=list)
    failure: str | None = None


class _Follow:
    def __init__(self, job: FollowedChannel) -> None:
        self.job = job
        self.ctx = job.ctx
        self.plan = job.plan
        self.check = ProgramCheck(job.plan.program)
        self.step: _Step | None = None
        self.group: _Group | None = None
        self.ordinal = -1
        self.tripped: str | None = None  # what tripped; rows after it go to one step
        self.failed: str | None = None  # a limit trip or fault fails the run
        self.after: int | None = None
        self.seen_rows = False

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> Wake:
        ctx = self.ctx
        start = ctx.clock.now()
        status, reason = RunStatus.COMPLETED, "the LAND program ran to its end"
        try:
            while True:
                yield ctx.clock.now() + ctx.poll_interval_s
                if ctx.paused:
                    self._cannot_pause()
                got = self.job.source.poll()
                if got.reset:
                    self.failed = "LAND's export was replaced by a different test"
                    ctx.bus.publish(FaultOccurred(ctx.run_id, ctx.run_time(), self._open_no(),
                                                  f"{self.failed}; {self.job.stop_instruction} "
                                                  "if that is not what you meant"))
                    break
                if len(got.records):
                    self.seen_rows = True
                    self._rows(got.records)
                if self.tripped is None and self.check.at_end() and not len(got.records):
                    break  # the last step met its end and nothing followed it in a poll
                if self.seen_rows and got.state is ChannelState.IDLE:
                    if self.tripped is None and self.failed is None:
                        self.failed = ("LAND's export stopped growing before the program's "
                                       "end (LAND stopped, or the export is broken)")
                    break
                if not self.seen_rows and ctx.clock.now() - start > self.job.start_timeout_s:
                    self.failed = (f"no row in LAND's export within "
                                   f"{self.job.start_timeout_s:g} s: LAND was not started, or "
                                   "it exports somewhere else than the station file says")
                    break
            if self.tripped is None and self.seen_rows:  # after a trip LAND is stopped early
                for m in self.check.finish():
                    self._mismatch(m)
            self._close_all(COMPLETED, None)
            if self.failed is not None:
                status, reason = RunStatus.FAILED, self.failed
            elif self.tripped is not None:
                reason = f"{self.tripped}; LAND ran until it was stopped"
        except Aborted as exc:
            status, reason = RunStatus.ABORTED, str(exc) or "aborted"
            ctx.bus.publish(OperatorActed(
                ctx.run_id, ctx.run_time(), self._open_no(),
                f"labctl stopped following; LAND keeps running: {self.job.stop_instruction}",
                level=Severity.WARNING))
            ctx.close_open_steps(ABORTED, StepEnd(EndCause.ABORTED, reason))
        except KeyboardInterrupt:
            ctx.close_open_steps(ABORTED, StepEnd(EndCause.ABORTED, "interrupted (Ctrl-C)"))
            raise
        return RunOutcome(ctx.run_id, status, reason, dict(ctx.results))

    def _cannot_pause(self) -> None:
        """`labctl pause` on a followed run: LAND goes on, so recording does too."""
        ctx = self.ctx
        ctx.paused = False
        ctx.bus.publish(OperatorActed(
            ctx.run_id, ctx.run_time(), self._open_no(),
            "labctl cannot pause a LAND channel; recording goes on. To pause the test, pause "
            f"the channel in LAND's software ({self.job.stop_instruction.removeprefix('stop ')})",
            OperatorAction.RESUME, Severity.WARNING))

    def _open_no(self) -> int | None:
        return None if self.step is None else self.step.number

    # ---- rows -------------------------------------------------------------------------------
    def _rows(self, rec: LandtRecords) -> None:
        placed = self.check.feed(rec)
        for m in placed.mismatches:
            self._mismatch(m)
        change = np.flatnonzero(np.diff(placed.ordinals)) + 1
        bounds = [0, *change.tolist(), len(rec)]
        for a, b in itertools.pairwise(bounds):
            if placed.ordinals[a] != self.ordinal:
                self.ordinal = int(placed.ordinals[a])
                self._next_step(int(placed.places[a]), rec, a)
            self._points(rec, slice(a, b))

    def _mismatch(self, m: Mismatch) -> None:
        ctx = self.ctx
        ctx.bus.publish(FaultOccurred(
            ctx.run_id, m.t_s, self._open_no(),
            f"LAND program mismatch ({m.kind.value}): {m.message}. "
            f"{_sentence(self.job.stop_instruction)} and correct the program."))

    def _next_step(self, position: int, rec: LandtRecords, i: int) -> None:
        t = float(rec.t_s[i])
        if self.after is not None:
            return  # every row after a trip goes to the one step opened for them
        if self.step is not None:
            self._end_step(COMPLETED, None, t)
        if self.after is not None:
            return  # the step's end tripped a detector
        fs = self.plan.steps[position] if position != UNPLACED else None
        group = None if fs is None else fs.group
        if self.group is not None and group != self.group.index:
            self._end_group(t)
        if group is not None and self.group is None:
            g = self.plan.groups[group]
            det = FailureDetector(g.detectors) if g.detectors and g.detectors.enabled else None
            self.group = _Group(group, self.ctx.open_step(g.kind, g.name, g.params, None, t), det)
        parent = None if self.group is None else self.group.number
        if fs is None:
            number = self.ctx.open_step("followed", f"LAND step {rec.step[i]:g} (not in the "
                                        "program)", {}, parent, t)
            self.step = _Step(number, UNPLACED, last_t=t)
            return
        number = self.ctx.open_step(fs.kind, fs.name, fs.params, parent, t)
        det = None
        if fs.kind == "galvanostatic":
            det = self.group.detector if self.group is not None else (
                FailureDetector(fs.detectors) if fs.detectors and fs.detectors.enabled else None)
            if det is not None:
                det.start_segment(fs.current_mA / 1000.0)
        self.step = _Step(number, position, last_t=t, detector=det)

    def _points(self, rec: LandtRecords, sl: slice) -> None:
        st = self.step
        if st is None:
            return
        t, E, I_mA = rec.t_s[sl], rec.E_V[sl], rec.I_mA[sl]
        cap = rec.capacity_mAh[sl]
        if np.isfinite(cap).all():
            Q = np.where(I_mA < 0, -np.abs(cap), np.abs(cap))
        else:
            dt = np.diff(t, prepend=st.last_t)
            Q = st.q_mAh + np.cumsum(np.nan_to_num(I_mA) * dt) / 3600.0
        ctx = self.ctx
        ctx.bus.publish(Points(ctx.run_id, st.number, t.copy(), E.copy(), I_mA.copy(), Q, None))
        st.q_mAh, st.last_t = float(Q[-1]), float(t[-1])
        if st.position == UNPLACED or self.tripped is not None:
            return
        fs = self.plan.steps[st.position]
        limit = check_limits(fs.limits, E, I_mA, st.q_mAh, None)
        if limit is not None and not self._at_own_cutoff(fs, E):
            self._limit(limit, float(t[-1]))
            return
        if st.detector is not None:
            trip = st.detector.feed(E)
            if trip is not None:
                self._trip(trip, float(t[-1]))

    @staticmethod
    def _at_own_cutoff(fs: FollowedStep, E: np.ndarray) -> bool:
        """The last row crossed the step's own voltage cut-off on a safety bound of the same
        value: LAND ended the step there, as planned (as the SP-300 path judges it)."""
        hi, lo = fs.params.get("E_max_V"), fs.params.get("E_min_V")
        top, bottom = fs.limits.E_max_V, fs.limits.E_min_V
        last = float(E[-1])
        return bool((hi is not None and top is not None and hi >= top and last >= top)
                    or (lo is not None and bottom is not None and lo <= bottom
                        and last <= bottom))

    # ---- ends ---------------------------------------------------------------------------------
    def _end_step(self, status: StepStatus, end: StepEnd | None, t: float,
                  trip: Trip | None = None) -> None:
        st = self.step
        assert st is not None
        self.step = None
        if st.number == self.after:
            self.ctx.close_step(st.number, ABORTED, StepEnd(
                EndCause.NOT_RUN, "recorded after a trip; labctl cannot stop LAND"), st.last_t)
            return
        if end is None and st.detector is not None and self.group is not None:
            seg_trip = st.detector.end_segment()
            if seg_trip is not None:
                self._publish_trip(seg_trip, st.number)
                status, end, trip = FAILED, StepEnd.detector(seg_trip.mode), seg_trip
        if end is None:
            met = self.check.reached() if st.position != UNPLACED else None
            reason = _END_REASON.get(met or "")
            end = (StepEnd.on_instrument(reason) if reason is not None
                   else StepEnd(EndCause.INSTRUMENT, "LAND went on to its next step"))
        self.ctx.close_step(st.number, status, end, st.last_t)
        if self.group is not None and st.position != UNPLACED:
            fs = self.plan.steps[st.position]
            if fs.kind == "galvanostatic":
                self.group.halves.append(ccd.HalfCycle(
                    st.number, fs.current_mA, status, str(end), abs(st.q_mAh),
                    trip.mode if trip else None))
        if status is FAILED and trip is not None:
            self._tripped(f"detector: {trip.mode}", st.last_t)

    def _end_group(self, t: float) -> None:
        g = self.group
        assert g is not None
        self.group = None
        spec = self.plan.groups[g.index]
        if spec.kind == "ccd_ramp":
            res = ccd.critical_current_density(g.halves, spec.area_cm2)
            self.ctx.report("ccd", ccd.VERSION, ccd.result_rows(res))
            text = (f"failure detected at {res.ccd_mA_cm2:.2f} mA/cm2 ({res.failure_mode})"
                    if res.ccd_mA_cm2 is not None else "reached maximum current")
        else:
            text = "done"
        self.ctx.close_step(g.number, COMPLETED, StepEnd(EndCause.OUTCOME, text), t)

    def _close_all(self, status: StepStatus, t: float | None) -> None:
        if self.step is not None:
            self._end_step(status, None, self.step.last_t if t is None else t)
        if self.group is not None:
            self._end_group(self.ctx.run_time() if t is None else t)

    # ---- trips: recorded, and the operator told what to stop --------------------------------
    def _limit(self, message: str, t: float) -> None:
        ctx = self.ctx
        assert self.step is not None
        ctx.bus.publish(LimitTripped(ctx.run_id, t, self.step.number, message))
        self._safe_state(message, self.step.number, t)
        self.failed = message
        self._end_step(FAILED, StepEnd(EndCause.SAFETY_LIMIT, message), t)
        self._tripped(message, t)

    def _trip(self, trip: Trip, t: float) -> None:
        assert self.step is not None
        self._publish_trip(trip, self.step.number)
        self._end_step(FAILED, StepEnd.detector(trip.mode), t, trip)

    def _publish_trip(self, trip: Trip, step: int) -> None:
        ctx = self.ctx
        t = self.step.last_t if self.step is not None else ctx.run_time()
        ctx.bus.publish(DetectorTripped(ctx.run_id, t, step, f"{trip.mode}: {trip.message}",
                                        trip.mode))
        self._safe_state(f"detector: {trip.mode}", step, t)

    def _safe_state(self, why: str, step: int, t: float) -> None:
        ctx = self.ctx
        ctx.bus.publish(SafeStateAction(
            ctx.run_id, t, step, f"{why}: labctl cannot switch a LAND channel off -- "
            f"{self.job.stop_instruction} now", confirmed=False))

    def _tripped(self, what: str, t: float) -> None:
        if self.tripped is not None:
            return
        self.tripped = what
        if self.group is not None:
            self._end_group(t)
        self.after = self.ctx.open_step(
            "followed", "LAND ran on after labctl asked for it to be stopped", {}, None, t)
        self.step = _Step(self.after, UNPLACED, last_t=t)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def follow(job: FollowedChannel) -> Wake:
    """One followed run from its start to its end (published), as a scheduler job."""
    ctx = job.ctx
    ctx.bus.publish(RunStarted(ctx.run_id, ctx.run_time(), job.protocol_name, ctx.cell,
                               ctx.estimated_s))
    out = yield from _Follow(job).run()
    _publish_engine_results(ctx)
    ctx.bus.publish(RunEnded(ctx.run_id, ctx.run_time(), out.status, out.end_reason))
    return out


def run_followed(jobs: Sequence[FollowedChannel], controls: Controls | None = None,
                 housekeeping_interval_s: float = 1.0) -> list[RunOutcome]:
    """Follow every job concurrently on their shared clock; returns each run's outcome.

    Ctrl-C or a failed critical sink ends every run still followed, its open steps closed and
    its end published (to the sinks that still work), with the operator told that LAND keeps
    running; then KeyboardInterrupt or `RunFailure` is raised as by `run_protocol`.
    """
    contexts = [j.ctx for j in jobs]
    sched = Scheduler(contexts[0].clock, housekeeping_interval_s=housekeeping_interval_s)
    handles = [sched.add(j.ctx.run_id, follow(j)) for j in jobs]
    sched.housekeeping = _housekeeping(contexts, handles, sched, controls)
    interrupted = False
    fatal: Exception | None = None
    try:
        sched.run()
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:
        fatal = exc
    outcomes = []
    for j, h in zip(jobs, handles, strict=True):
        out = h.result
        if not isinstance(out, RunOutcome):
            error = h.error if isinstance(h.error, EngineFailure) else fatal
            status, reason = ((RunStatus.ABORTED, "interrupted (Ctrl-C)") if interrupted else
                              (RunStatus.FAILED, f"engine error: {error or h.error!r}"))
            out = RunOutcome(j.ctx.run_id, status, reason, dict(j.ctx.results))
            fatal = fatal or (h.error if isinstance(h.error, EngineFailure) else None)
            try:
                j.ctx.close_open_steps(ABORTED if interrupted else FAILED,
                                       StepEnd(EndCause.ABORTED if interrupted
                                               else EndCause.ENGINE_ERROR, reason))
                j.ctx.bus.publish(OperatorActed(
                    j.ctx.run_id, j.ctx.run_time(), None,
                    f"labctl stopped following ({reason}); LAND keeps running: "
                    f"{j.stop_instruction}", level=Severity.WARNING))
                j.ctx.bus.publish(RunEnded(j.ctx.run_id, j.ctx.run_time(), status, reason))
            except EngineFailure as exc:
                fatal = fatal or exc
        outcomes.append(out)
    if interrupted:
        raise KeyboardInterrupt
    if fatal is not None:
        raise RunFailure(f"{fatal}; LAND channels keep running: stop them in LAND's "
                         "software") from fatal
    return outcomes
