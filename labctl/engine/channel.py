"""Everything a running protocol needs on one channel, and the one loop that runs techniques.

`ChannelContext` binds a run to its instruments (a potentiostat channel, optionally a pressure
frame), the clock, the event bus and the operator's pause flag; it numbers the run's steps and
publishes their start and end. `run_segments` is the heart of the engine: it loads consecutive
techniques as one linked sequence (as many as the channel links, `max_linked`), so the
instrument runs them back to back without an open-circuit gap, and polls until the instrument
ends them or software ends them (a limit, a detector, an abort). Each technique's points go to
its own step, routed by the instrument's `technique_index`; each step is closed when
`reading.ends` says its technique ended, with the instrument's reason. Every exit path stops
the channel first.

Runners are generators that yield the clock time at which they want to be woken; the scheduler
(`labctl.engine.scheduler`) interleaves the channels on one clock.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.engine.detectors import FailureDetector, Trip
from labctl.engine.events import (
    DetectorTripped,
    EndCause,
    EventBus,
    FaultOccurred,
    LimitTripped,
    Points,
    Result,
    ResultsReady,
    SafeStateAction,
    SpectrumPoint,
    SpectrumPoints,
    StepEnd,
    StepEnded,
    StepStarted,
    StepStatus,
)
from labctl.protocol.resolved import Limits
from labctl_drivers.clock import Clock
from labctl_drivers.interfaces import (
    ChannelReading,
    ChannelState,
    EndReason,
    ImpedancePoint,
    InstrumentError,
    PotentiostatChannel,
    PressureFrame,
    TechniqueEnd,
)
from labctl_drivers.techniques import (
    ConstantCurrent,
    GalvanoEIS,
    OpenCircuit,
    PotentioEIS,
    Technique,
    eis_sweep_duration_s,
)

log = logging.getLogger(__name__)

Wake = Generator[float, None, Any]  # a runner: yields wake-up times, returns its outcome

SAFE_STOP_ATTEMPTS = 3
#: techniques linked in one load when the driver does not say how many it takes (the interface
#: lets every channel load a sequence); a long protocol is loaded in chunks of this many
DEFAULT_MAX_LINKED = 16
_NO_ENDS: dict[int, TechniqueEnd] = {}
COMPLETED, FAILED, ABORTED = StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.ABORTED


class Aborted(Exception):
    """Thrown into a runner when the operator aborts (CLI, Ctrl-C) or the run must stop."""


@dataclass(frozen=True)
class SegmentOutcome:
    """How one technique's step ended (`step` is its run-local number)."""

    status: StepStatus
    end: StepEnd
    t_end_s: float  # run time
    Q_mAh: float
    last_E_V: float | None
    trip: Trip | None = None
    step: int = 0


@dataclass(frozen=True)
class StepOpen:
    """A step row to open when its technique starts on the instrument."""

    kind: str
    name: str
    params: Mapping[str, Any]
    parent: int | None


@dataclass(frozen=True)
class Segment:
    """One technique of a loaded sequence and how its end is judged.

    `step` is the step to open when the technique starts, or the number of a step already open
    (a rest that runs in chunks records every chunk into one row; the caller closes it).
    `normal_ends` are the instrument end reasons that complete the step; `safety_ends` maps
    the reasons that can only come from the protocol's safety limits (a window the step did
    not ask for) to the message a limit trip is recorded with. Any other reason fails the step
    with the instrument's reason. `segment_checks` runs the detector's end-of-segment
    comparison (the CCD ramp's half-cycles) before the step is closed.
    """

    technique: Technique
    limits: Limits
    step: StepOpen | int
    normal_ends: frozenset[EndReason]
    safety_ends: Mapping[EndReason, str] = field(default_factory=dict)
    detector: FailureDetector | None = None
    segment_checks: bool = False


@dataclass
class ChannelContext:
    run_id: int
    bus: EventBus
    channel: PotentiostatChannel
    clock: Clock
    t0: float  # clock time of the run start
    limits: Limits
    area_cm2: float
    frame: PressureFrame | None = None
    poll_interval_s: float = 1.0
    max_linked: int = 1  # techniques the channel runs back to back in one load (1: no linking)
    cell: str = ""  # the cell's name, for what the run tells people
    estimated_s: float | None = None  # the plan's estimate, for displays
    paused: bool = False
    pause_held: bool = False  # its channel is off for the pause, waiting for the resume
    results: dict[str, float | str | None] = field(default_factory=dict)  # for the outcome
    reported: set[str] = field(default_factory=set)  # results already published by `report`
    step_counter: int = 0
    open_steps: list[int] = field(default_factory=list)  # innermost last
    #: the cell's resistance from its latest impedance spectrum, the real part at the lowest
    #: frequency measured (ohmic + interfacial): the failure detectors' reference before the
    #: cell is stressed, so a cell shorted at its first sample is compared with what it was
    pre_stress_R_ohm: float | None = None
    _pre_stress_from: tuple[int, float] | None = None  # (step, frequency) it was read at
    _kinds: dict[int, str] = field(default_factory=dict)

    def run_time(self) -> float:
        return self.clock.now() - self.t0

    def note_spectrum(self, step: int, points: tuple[SpectrumPoint, ...]) -> None:
        """Keep the lowest-frequency real part of the latest spectrum (`pre_stress_R_ohm`).

        A spectrum arrives over several polls, high frequencies first; within one step the
        lowest frequency seen so far wins, and a new step's spectrum replaces an older one.
        """
        low = min(points, key=lambda p: p.frequency_Hz)
        seen = self._pre_stress_from
        if seen is None or seen[0] != step or low.frequency_Hz < seen[1]:
            self._pre_stress_from = (step, low.frequency_Hz)
            self.pre_stress_R_ohm = low.Z_re_ohm

    # ---- steps -------------------------------------------------------------------------------
    def open_step(self, kind: str, name: str, params: Mapping[str, Any], parent: int | None,
                  t_s: float | None = None) -> int:
        """Number a new step and publish its start (at run time `t_s`, default now)."""
        self.step_counter += 1
        step = self.step_counter
        self.open_steps.append(step)
        self._kinds[step] = kind
        self.bus.publish(StepStarted(self.run_id, self.run_time() if t_s is None else t_s, step,
                                     parent, kind, name, params))
        return step

    def close_step(self, step: int, status: StepStatus, end: StepEnd,
                   t_s: float | None = None) -> None:
        self.open_steps.remove(step)
        kind = self._kinds.pop(step)
        self.bus.publish(StepEnded(self.run_id, self.run_time() if t_s is None else t_s, step,
                                   kind, status, end))

    def close_open_steps(self, status: StepStatus, end: StepEnd) -> None:
        """After an abort or fault: close every step still open, innermost first."""
        while self.open_steps:
            self.close_step(self.open_steps[-1], status, end)

    def report(self, analysis: str, version: str,
               rows: Sequence[tuple[str, float | str | None, str]]) -> None:
        """Publish run-level results of `analysis` now (replacing its earlier values) and keep
        them for the run's outcome."""
        self.results.update({name: value for name, value, _ in rows})
        self.reported.update(name for name, _, _ in rows)
        self.bus.publish(ResultsReady(self.run_id, analysis, version,
                                      tuple(Result(n, v, u) for n, v, u in rows)))

    # ---- safety ------------------------------------------------------------------------------
    def safe_state(self, reason: str, step: int | None = None) -> None:
        """Open the circuit (retrying), then say that it was done, or that it failed.

        The stop comes first and never depends on any sink: if publishing fails too (the
        database is what failed), the channel is off all the same.
        """
        stopped = False
        for attempt in range(1, SAFE_STOP_ATTEMPTS + 1):
            try:
                self.channel.stop()
                stopped = True
                break
            except InstrumentError as exc:
                self.bus.publish(FaultOccurred(self.run_id, self.run_time(), step,
                                               f"stop attempt {attempt} failed: {exc}"))
        message = f"channel off: {reason}" if stopped else "could not confirm the channel is off"
        self.bus.publish(SafeStateAction(self.run_id, self.run_time(), step, message, stopped))

    def read_pressure(self) -> float | None:
        if self.frame is None:
            return None
        return self.frame.read_pressure_MPa()


def expected_duration_s(tech: Technique) -> float | None:
    """How long the instrument will run `tech` if no limit ends it first (None: unknown)."""
    if isinstance(tech, ConstantCurrent):
        d = tech.duration_s
        if tech.charge_limit_C is not None and tech.current_A:
            t_q = tech.charge_limit_C / abs(tech.current_A)
            d = t_q if d is None else min(d, t_q)
        return d
    if isinstance(tech, (PotentioEIS, GalvanoEIS)):
        return eis_sweep_duration_s(tech.f_high_Hz, tech.f_low_Hz, tech.points_per_decade,
                                    tech.averages)
    if isinstance(tech, OpenCircuit):
        return tech.duration_s
    return getattr(tech, "duration_s", None)


def _remaining(tech: Technique, elapsed_s: float, charge_C: float) -> Technique:
    """The rest of a technique after a pause: what is left of its time and charge."""
    if isinstance(tech, (PotentioEIS, GalvanoEIS)):
        return tech  # a sweep restarts from the top
    changes: dict[str, Any] = {}
    duration = getattr(tech, "duration_s", None)
    if duration is not None:
        changes["duration_s"] = max(duration - elapsed_s, 1e-3)
    if isinstance(tech, ConstantCurrent) and tech.charge_limit_C is not None:
        changes["charge_limit_C"] = max(tech.charge_limit_C - charge_C, 1e-9)
    return dataclasses.replace(tech, **changes)  # type: ignore[type-var]


def check_limits(limits: Limits, E: np.ndarray, I_mA: np.ndarray, Q_mAh: float,
                 P_MPa: float | None) -> str | None:
    """Software safety limits (second layer behind the instrument's own)."""
    if len(E):
        if limits.E_max_V is not None and float(E.max()) > limits.E_max_V:
            return f"safety limit: E {float(E.max()):.3f} V > {limits.E_max_V} V"
        if limits.E_min_V is not None and float(E.min()) < limits.E_min_V:
            return f"safety limit: E {float(E.min()):.3f} V < {limits.E_min_V} V"
        if limits.I_max_mA is not None and float(np.abs(I_mA).max()) > limits.I_max_mA * 1.0001:
            return f"safety limit: |I| {float(np.abs(I_mA).max()):.3f} mA > {limits.I_max_mA} mA"
    return _charge_and_pressure(limits, Q_mAh, P_MPa)


def _charge_and_pressure(limits: Limits, Q_mAh: float, P_MPa: float | None) -> str | None:
    """The limits on the step's charge and the stack pressure (no sample arrays in them)."""
    if limits.Q_max_mAh is not None and abs(Q_mAh) > limits.Q_max_mAh * 1.0001:
        return f"safety limit: |Q| {abs(Q_mAh):.4f} mAh > {limits.Q_max_mAh} mAh"
    if P_MPa is not None:
        if limits.P_min_MPa is not None and P_MPa < limits.P_min_MPa:
            return f"safety limit: pressure {P_MPa:.2f} MPa < {limits.P_min_MPa} MPa"
        if limits.P_max_MPa is not None and P_MPa > limits.P_max_MPa:
            return f"safety limit: pressure {P_MPa:.2f} MPa > {limits.P_max_MPa} MPa"
    return None


def check_poll_limits(limits: Limits, E: np.ndarray, I_mA: np.ndarray, Q_mAh: float,
                      P_MPa: float | None) -> str | None:
    """`check_limits` (the reference) for one poll's samples, a poll of one sample on floats.

    A 1 s poll brings one sample, and numpy's reductions on a one-element array cost ~3 µs of
    the engine's per-poll work; the max, min and |max| of one value are that value, compared and
    formatted as the same Python float. tests/engine/test_fast_paths.py holds the two equal.
    """
    if len(E) != 1 or len(I_mA) != 1:
        return check_limits(limits, E, I_mA, Q_mAh, P_MPa)
    e = float(E[0])
    if limits.E_max_V is not None and e > limits.E_max_V:
        return f"safety limit: E {e:.3f} V > {limits.E_max_V} V"
    if limits.E_min_V is not None and e < limits.E_min_V:
        return f"safety limit: E {e:.3f} V < {limits.E_min_V} V"
    if limits.I_max_mA is not None:
        i = abs(float(I_mA[0]))
        if i > limits.I_max_mA * 1.0001:
            return f"safety limit: |I| {i:.3f} mA > {limits.I_max_mA} mA"
    return _charge_and_pressure(limits, Q_mAh, P_MPa)


def step_charge(q0_mAh: float, last_t: float, t: np.ndarray, I_mA: np.ndarray) -> np.ndarray:
    """The step's charge after each of a poll's samples (mAh): q0 plus the rectangle rule,
    each sample's current over the time since the sample before (`last_t` for the first)."""
    dt = np.empty_like(t)  # np.diff(t, prepend=last_t) without its per-call overhead
    dt[0] = t[0] - last_t
    np.subtract(t[1:], t[:-1], out=dt[1:])
    return q0_mAh + np.cumsum(I_mA * dt) / 3600.0


def poll_charge(q0_mAh: float, last_t: float, t: np.ndarray, I_mA: np.ndarray) -> np.ndarray:
    """`step_charge` (the reference), a poll of one float64 sample on Python floats: the same
    float64 operations in the same order (a cumsum of one term is the term), without the five
    numpy calls that cost ~6 µs of a 1 s poll. tests/engine/test_fast_paths.py holds the two
    equal."""
    if len(t) == 1 and t.dtype == np.float64 and I_mA.dtype == np.float64:
        return np.array([q0_mAh + float(I_mA[0]) * (float(t[0]) - last_t) / 3600.0])
    return step_charge(q0_mAh, last_t, t, I_mA)


def run_segments(ctx: ChannelContext, segments: Sequence[Segment]) -> Wake:
    """Run `segments` in order, `ctx.max_linked` per load; returns their SegmentOutcomes.

    Stops at the first segment that does not complete (its outcome is the last one returned),
    so a failing step ends the group as it ends the protocol.
    """
    outcomes: list[SegmentOutcome] = []
    per_load = max(1, ctx.max_linked)
    for first in range(0, len(segments), per_load):
        chunk = segments[first:first + per_load]
        done = yield from _Load(ctx, chunk).run()
        outcomes += done
        if len(done) < len(chunk) or done[-1].status is not COMPLETED:
            break
    return outcomes


def run_technique(ctx: ChannelContext, segment: Segment) -> Wake:
    """Run one technique alone; returns its SegmentOutcome."""
    (out,) = yield from run_segments(ctx, [segment])
    return out


@dataclass
class _Live:
    """The segment whose technique the instrument is running (or will run next)."""

    seg: Segment
    step: int
    owned: bool  # this load opened the step, so it closes it
    last_t: float  # sequence time of its last point (its start before any)
    q_mAh: float = 0.0
    q_load0: float = 0.0  # charge passed before the current load (a pause reloads the rest)
    last_E: float | None = None
    last_I_mA: np.ndarray = field(default_factory=lambda: np.empty(0))  # this poll's currents
    seen: bool = False  # the instrument has shown it running (data, or started by this load)
    expected_s: float | None = None  # how long its (loaded) technique runs if nothing ends it

    def __post_init__(self) -> None:
        self.expected_s = expected_duration_s(self.seg.technique)


class _Load:
    """One loaded sequence on the channel: load, start, poll, route, judge, reload after a pause.

    Indices: `self.k` is the position (in `chunk`) of the running segment; the instrument's
    technique index i maps to chunk position `self.base + i` (a reload after a pause starts the
    sequence at the interrupted segment). `self.over` is set once nothing more will run.
    """

    def __init__(self, ctx: ChannelContext, chunk: Sequence[Segment]) -> None:
        self.ctx = ctx
        self.chunk = chunk
        self.k = 0
        self.base = 0
        self.t_off = 0.0  # run time at which the loaded sequence started: its points' origin
        self.seq_start = 0.0  # sequence time at which the running technique started
        self.live: _Live | None = None
        self.over = False
        self.done: list[SegmentOutcome] = []

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> Wake:
        ctx = self.ctx
        self._start([s.technique for s in self.chunk])
        self._begin(0, ctx.run_time()).seen = True
        try:
            while not self.over:
                yield self._wake()
                if ctx.paused:
                    yield from self._pause()
                    continue
                reading = ctx.channel.poll()
                # one pressure reading per poll serves both the recorded points and the limits
                self._consume(reading, ctx.read_pressure(), stopping=False)
        except BaseException:
            ctx.safe_state("step interrupted", self.live.step if self.live else None)
            raise
        return self.done

    def _start(self, techniques: list[Technique]) -> None:
        """Load and start the techniques of chunk positions k.. (the first maybe a remainder).

        The driver is told each technique's normal ends (`cutoffs`), so that a cut-off lets
        the instrument go on to the next technique while a safety bound stops the sequence.
        """
        ch = self.ctx.channel
        what = techniques[0] if len(techniques) == 1 else techniques
        ch.load(what, cutoffs=[s.normal_ends for s in self.chunk[self.k:self.k + len(techniques)]])
        ch.start()
        self.base = self.k
        self.t_off = self.ctx.run_time()
        self.seq_start = 0.0

    def _wake(self) -> float:
        ctx = self.ctx
        now = ctx.clock.now()
        wake = now + ctx.poll_interval_s
        if self.live is not None:
            expected = self.live.expected_s
            if expected is not None:
                end_at = ctx.t0 + self.t_off + self.seq_start + expected
                if now < end_at < wake:
                    wake = end_at + 1e-6
        return wake

    def _begin(self, k: int, t_s: float) -> _Live:
        """Segment k's technique started (at run time t_s): open its step unless it is open."""
        seg = self.chunk[k]
        self.k = k
        if isinstance(seg.step, int):
            live = _Live(seg, seg.step, False, self.seq_start)
        else:
            s = seg.step
            live = _Live(seg, self.ctx.open_step(s.kind, s.name, s.params, s.parent, t_s), True,
                         self.seq_start)
        self.live = live
        if seg.detector is not None:
            tech = seg.technique
            seg.detector.start_segment(tech.current_A if isinstance(tech, ConstantCurrent)
                                       else 0.0)
        return live

    # ---- one reading -------------------------------------------------------------------------
    def _consume(self, reading: ChannelReading, P: float | None, stopping: bool) -> None:
        """Route a reading's points and spectra to their segments and judge every end in it.

        `stopping`: the engine has just stopped the channel (a pause): a STOPPED end of the
        running technique is ours, not an end of its step.
        """
        ends = {e.index: e for e in reading.ends} if reading.ends else _NO_ENDS
        idx = reading.points.technique_index
        last = reading.technique_index
        if ends or idx is not None:  # a poll that saw more than one technique
            last = max(last, *ends, int(idx.max()) if idx is not None and len(idx) else 0)
        first = self.k - self.base
        for i in range(first, last + 1):
            live = self.live
            if live is None:
                return
            E = self._record(live, reading, i, P)
            end = ends.get(i)
            if end is not None and stopping and end.reason is EndReason.STOPPED:
                end = None
            if end is not None:
                self._ended(live, end, E)
            else:
                self._check_running(live, E, P)
            if self.over:
                if self.done and self.done[-1].status is not COMPLETED:
                    self._cut_short(reading, i + 1, last, P)
                return
        live = self.live
        if live is None or stopping:
            return
        if reading.state is ChannelState.ERROR:
            self.ctx.safe_state("instrument error", live.step)
            reason = reading.end_reason
            self._finish(FAILED, StepEnd(EndCause.FAULT, f"instrument error: {reason}", reason),
                         self.ctx.run_time())
        elif reading.state is ChannelState.IDLE and not live.seen:
            # the instrument stopped the sequence after the previous technique's normal end
            # (a driver that stops on any limit): the rest is loaded again from here
            self._start([s.technique for s in self.chunk[self.k:]])
            live.seen, live.last_t = True, 0.0
        elif reading.state is ChannelState.IDLE:
            # idle, and the running technique did not say it ended: nothing will end it now
            self.ctx.safe_state("instrument went idle", live.step)
            self._finish(FAILED, StepEnd(EndCause.FAULT, "ended"), self.ctx.run_time())

    def _columns(self, reading: ChannelReading, i: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Technique i's points of this reading: (t, E, I) in sequence time, V, A."""
        pts = reading.points
        idx = pts.technique_index
        if idx is None:
            if i == reading.technique_index:
                return pts.t_s, pts.E_V, pts.I_A
            sel = slice(0, 0)
        else:
            sel = idx == i  # type: ignore[assignment]
        return pts.t_s[sel], pts.E_V[sel], pts.I_A[sel]

    def _record(self, live: _Live, reading: ChannelReading, i: int, P: float | None
                ) -> np.ndarray:
        """Publish technique i's points (charge integrated) and spectrum points of this poll;
        return its voltages for the checks."""
        ctx = self.ctx
        t, E, I_A = self._columns(reading, i)
        live.last_I_mA = I_A * 1e3
        if len(t):
            live.seen = True
            I_mA = live.last_I_mA
            Q = poll_charge(live.q_mAh, live.last_t, t, I_mA)
            ctx.bus.publish(Points(ctx.run_id, live.step, t + self.t_off, E, I_mA, Q, P))
            live.q_mAh = float(Q[-1])
            live.last_t = float(t[-1])
            live.last_E = float(E[-1])
        spectrum = tuple(_spectrum_point(p, self.t_off) for p in reading.impedance
                         if p.technique_index == i) if reading.impedance else ()
        if spectrum:
            live.seen = True
            ctx.bus.publish(SpectrumPoints(ctx.run_id, live.step, spectrum))
            ctx.note_spectrum(live.step, spectrum)
        return E

    def _check_running(self, live: _Live, E: np.ndarray, P: float | None) -> None:
        """Software limits, then the detector, on a technique still running after this poll."""
        tripped = check_poll_limits(live.seg.limits, E, live.last_I_mA, live.q_mAh, P)
        if tripped:
            self._limit(live, tripped, None, self.ctx.run_time())
            return
        self._feed_detector(live, E)

    def _feed_detector(self, live: _Live, E: np.ndarray) -> None:
        det = live.seg.detector
        if det is None or not len(E):
            return
        trip = det.feed(E)
        if trip is not None:
            self._trip(live, trip, self.ctx.run_time())

    def _ended(self, live: _Live, end: TechniqueEnd, E: np.ndarray) -> None:
        """The instrument ended technique `end.index`: judge it, close its step, go on.

        The reason is the instrument's (`reading.ends`), never inferred from the last voltage:
        a limit that fired between two recorded points still names the step's end. Software
        limits are not applied to that technique's last batch: its last sample is the one that
        crossed the step's own cut-off, which may sit on a safety bound of the same value.
        """
        seg = live.seg
        t_end = self.t_off + self.seq_start + end.elapsed_s
        reason = end.reason
        if reason in seg.safety_ends:
            self._limit(live, seg.safety_ends[reason], reason, t_end)
            return
        if reason not in seg.normal_ends:
            self.ctx.safe_state(f"step ended: {reason.value}", live.step)
            self._finish(FAILED, StepEnd.on_instrument(reason), t_end)
            return
        self._feed_detector(live, E)
        if self.over:
            return
        if seg.segment_checks and seg.detector is not None:
            trip = seg.detector.end_segment()
            if trip is not None:
                self._trip(live, trip, t_end)
                return
        self._close(live, COMPLETED, StepEnd.on_instrument(reason), t_end)
        self.seq_start += end.elapsed_s
        if self.k + 1 < len(self.chunk):
            self._begin(self.k + 1, t_end)
        else:
            self.live = None
            self.over = True

    def _cut_short(self, reading: ChannelReading, i_from: int, i_to: int,
                   P: float | None) -> None:
        """A failing technique ended the load, but the instrument had already gone on to the
        next linked ones before it was stopped: keep their points, in their own steps, closed
        as not run to their end."""
        failed = self.chunk[self.base + i_from - 1]
        name = failed.step.name if isinstance(failed.step, StepOpen) else "previous step"
        for i in range(i_from, min(i_to, len(self.chunk) - 1 - self.base) + 1):
            if not len(self._columns(reading, i)[0]) and not any(
                    p.technique_index == i for p in reading.impedance):
                continue
            live = self._begin(self.base + i, self.ctx.run_time())
            self._record(live, reading, i, P)
            self._close(live, ABORTED, StepEnd(EndCause.NOT_RUN,
                                               f"stopped: step '{name}' failed"),
                        self.ctx.run_time())
        self.live = None

    # ---- ending ------------------------------------------------------------------------------
    def _limit(self, live: _Live, message: str, reason: EndReason | None, t_s: float) -> None:
        ctx = self.ctx
        ctx.safe_state(message, live.step)
        ctx.bus.publish(LimitTripped(ctx.run_id, ctx.run_time(), live.step, message))
        self._finish(FAILED, StepEnd(EndCause.SAFETY_LIMIT, message, reason), t_s)

    def _trip(self, live: _Live, trip: Trip, t_s: float) -> None:
        ctx = self.ctx
        ctx.safe_state(f"detector: {trip.mode}", live.step)
        ctx.bus.publish(DetectorTripped(ctx.run_id, ctx.run_time(), live.step,
                                        f"{trip.mode}: {trip.message}", trip.mode))
        self._finish(FAILED, StepEnd.detector(trip.mode), t_s, trip)

    def _finish(self, status: StepStatus, end: StepEnd, t_s: float,
                trip: Trip | None = None) -> None:
        """The running segment ends here and the load with it (the channel is already off)."""
        assert self.live is not None
        self._close(self.live, status, end, t_s, trip)
        self.live = None
        self.over = True

    def _close(self, live: _Live, status: StepStatus, end: StepEnd, t_s: float,
               trip: Trip | None = None) -> None:
        if live.owned:
            self.ctx.close_step(live.step, status, end, t_s)
        self.done.append(SegmentOutcome(status, end, t_s, live.q_mAh, live.last_E, trip,
                                        live.step))

    # ---- pause -------------------------------------------------------------------------------
    def _pause(self) -> Wake:
        """Channel off while paused; on resume, reload the rest of the running technique and
        every technique after it in this load."""
        ctx = self.ctx
        assert self.live is not None
        ctx.safe_state("paused by operator", self.live.step)
        reading = ctx.channel.poll()  # collect what was buffered before the stop
        self._consume(reading, ctx.read_pressure(), stopping=True)
        ctx.pause_held = True  # on a virtual clock, the scheduler now keeps wall time
        try:
            while ctx.paused:
                yield ctx.clock.now() + ctx.poll_interval_s
        finally:
            ctx.pause_held = False
        live = self.live
        if self.over or live is None:
            return
        running = reading.technique_index == self.k - self.base
        elapsed = reading.elapsed_s if running else 0.0
        # the live technique is already what was left after any earlier pause: subtract only
        # what this load passed, or a second pause would count the first part twice
        rest = _remaining(live.seg.technique, elapsed, abs(live.q_mAh - live.q_load0) * 3.6)
        live.q_load0 = live.q_mAh
        live.seg = dataclasses.replace(live.seg, technique=rest)
        live.expected_s = expected_duration_s(rest)
        self._start([rest] + [s.technique for s in self.chunk[self.k + 1:]])
        live.seen = True
        # the remainder starts now: its points are stamped from the new origin, after the pause
        live.last_t = 0.0


def _spectrum_point(p: ImpedancePoint, t_offset: float) -> SpectrumPoint:
    return SpectrumPoint(p.t_s + t_offset, p.frequency_Hz, p.Z_re_ohm, p.Z_im_ohm, p.E_V,
                         p.I_A * 1e3)
