"""Everything a running protocol needs on one channel, and the one loop that runs a technique.

`ChannelContext` binds a run to its instruments (a potentiostat channel, optionally a pressure
frame), the clock, the recorder and the operator's controls. `run_technique` is the heart of
the engine: load, start, poll until the instrument ends the technique or software ends it (a
limit, a detector, an abort), recording every point on the way. Every exit path stops the
channel first.

Runners are generators that yield the clock time at which they want to be woken; the scheduler
(`labctl.engine.scheduler`) interleaves the channels on one clock.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.engine.detectors import FailureDetector, Trip
from labctl.protocol.resolved import Limits
from labctl.recording.recorder import Recorder, RecordingError
from labctl_drivers.clock import Clock
from labctl_drivers.interfaces import (
    ChannelReading,
    ChannelState,
    InstrumentError,
    PotentiostatChannel,
    PressureFrame,
)
from labctl_drivers.techniques import (
    ConstantCurrent,
    GalvanoEIS,
    OpenCircuit,
    PotentioEIS,
    Technique,
)

log = logging.getLogger(__name__)

Wake = Generator[float, None, Any]  # a runner: yields wake-up times, returns its outcome

SAFE_STOP_ATTEMPTS = 3
# instrument end reasons that complete a step (anything else, e.g. a safety window, fails it)
NORMAL_ENDS = frozenset({"time", "charge", "sweep complete", "complete"})


class Aborted(Exception):
    """Thrown into a runner when the operator aborts (CLI, Ctrl-C) or the run must stop."""


@dataclass
class SegmentOutcome:
    status: str  # completed | failed
    end_reason: str
    t_end_s: float  # run time
    Q_mAh: float
    last_E_V: float | None
    trip: Trip | None = None


@dataclass
class ChannelContext:
    run_id: int
    recorder: Recorder
    channel: PotentiostatChannel
    clock: Clock
    t0: float  # clock time of the run start
    limits: Limits
    area_cm2: float
    frame: PressureFrame | None = None
    poll_interval_s: float = 1.0
    step_counter: int = 0
    paused: bool = False
    step_name: str = ""  # the innermost running step, for progress displays
    results: dict[str, float | str | None] = field(default_factory=dict)
    on_progress: Callable[[dict[str, Any]], None] | None = None
    # called with (step_id, kind) after a step's row is closed, e.g. to analyse a spectrum
    on_step_end: Callable[[int, str], None] | None = None

    def run_time(self) -> float:
        return self.clock.now() - self.t0

    def next_index(self) -> int:
        self.step_counter += 1
        return self.step_counter

    def safe_state(self, reason: str, step_id: int | None = None) -> None:
        """Open the circuit (retrying), then record that it was done, or that it failed.

        The stop comes first and never depends on the database: if recording the event fails
        too (the database is what failed), the channel is off all the same.
        """
        stopped = False
        for attempt in range(1, SAFE_STOP_ATTEMPTS + 1):
            try:
                self.channel.stop()
                stopped = True
                break
            except InstrumentError as exc:
                self._note("fault", f"stop attempt {attempt} failed: {exc}", step_id, "error")
        if stopped:
            self._note("safe_state", f"channel off: {reason}", step_id, "warning")
        else:
            self._note("safe_state", "could not confirm the channel is off", step_id,
                       "critical")

    def _note(self, kind: str, message: str, step_id: int | None, severity: str) -> None:
        try:
            self.recorder.event(self.run_id, kind, message, step_id=step_id,
                                t_s=self.run_time(), severity=severity)
        except RecordingError:
            log.error("run %s: %s (%s; not recorded: database unavailable)", self.run_id,
                      message, kind)

    def read_pressure(self) -> float | None:
        if self.frame is None:
            return None
        return self.frame.read_pressure_MPa()


def _expected_duration(tech: Technique) -> float | None:
    if isinstance(tech, ConstantCurrent):
        d = tech.duration_s
        if tech.charge_limit_C is not None and tech.current_A:
            d = min(d, tech.charge_limit_C / abs(tech.current_A))
        return d
    if isinstance(tech, OpenCircuit):
        return tech.duration_s
    return getattr(tech, "duration_s", None)


def _remaining(tech: Technique, elapsed_s: float, charge_C: float) -> Technique:
    """The rest of a technique after a pause: what is left of its time and charge."""
    if isinstance(tech, (PotentioEIS, GalvanoEIS)):
        return tech  # a sweep restarts from the top
    changes: dict[str, Any] = {}
    if hasattr(tech, "duration_s"):
        changes["duration_s"] = max(tech.duration_s - elapsed_s, 1e-3)  # type: ignore[union-attr]
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
    if limits.Q_max_mAh is not None and abs(Q_mAh) > limits.Q_max_mAh * 1.0001:
        return f"safety limit: |Q| {abs(Q_mAh):.4f} mAh > {limits.Q_max_mAh} mAh"
    if P_MPa is not None:
        if limits.P_min_MPa is not None and P_MPa < limits.P_min_MPa:
            return f"safety limit: pressure {P_MPa:.2f} MPa < {limits.P_min_MPa} MPa"
        if limits.P_max_MPa is not None and P_MPa > limits.P_max_MPa:
            return f"safety limit: pressure {P_MPa:.2f} MPa > {limits.P_max_MPa} MPa"
    return None


def run_technique(
    ctx: ChannelContext,
    step_id: int,
    technique: Technique,
    limits: Limits,
    detector: FailureDetector | None = None,
    normal_ends: frozenset[str] = NORMAL_ENDS,
) -> Wake:
    """Run one technique to its end, recording points/spectra; returns a SegmentOutcome.

    `normal_ends` are the instrument end reasons that complete the step (e.g. "E_max" for a
    stripping step that ends on its cut-off); any other end reason fails it.
    """
    ch = ctx.channel
    q_mAh = 0.0
    last_t = 0.0
    last_E: float | None = None
    t_seg0 = ctx.run_time()
    t_off = t_seg0  # run time at which the loaded technique (re)started: its points' origin
    tech = technique
    q_load0 = 0.0  # charge recorded before the current load (a pause reloads the remainder)
    ch.load(tech)
    ch.start()
    if detector is not None:
        current_A = tech.current_A if isinstance(tech, ConstantCurrent) else 0.0
        detector.start_segment(current_A)
    expected = _expected_duration(tech)
    try:
        while True:
            now = ctx.clock.now()
            wake = now + ctx.poll_interval_s
            if expected is not None:
                end_at = ctx.t0 + t_off + expected
                if now < end_at < wake:
                    wake = end_at + 1e-6
            yield wake
            if ctx.paused:
                ctx.safe_state("paused by operator", step_id)
                reading = ch.poll()  # collect what was buffered before the stop
                q_mAh, last_t, last_E, _ = _record(
                    ctx, step_id, reading, t_off, q_mAh, last_t, last_E, ctx.read_pressure())
                while ctx.paused:
                    yield ctx.clock.now() + ctx.poll_interval_s
                # `tech` is already what was left after any earlier pause: subtract only what
                # this load passed, or a second pause would count the first part twice
                tech = _remaining(tech, reading.elapsed_s, abs(q_mAh - q_load0) * 3.6)
                q_load0 = q_mAh
                expected = _expected_duration(tech)
                last_t = 0.0
                # the remainder starts now: stamping its points from the pre-pause origin would
                # put them in the past, overlapping the points recorded before the pause
                t_off = ctx.run_time()
                ch.load(tech)
                ch.start()
                continue
            reading = ch.poll()
            # one pressure reading per poll serves both the recorded points and the limits: a
            # second read cost a frame query per poll and could disagree with what was stored
            P = ctx.read_pressure()
            q_mAh, last_t, last_E, I_mA = _record(
                ctx, step_id, reading, t_off, q_mAh, last_t, last_E, P)
            pts = reading.points
            tripped = check_limits(limits, pts.E_V, I_mA, q_mAh, P)
            if tripped:
                ctx.safe_state(tripped, step_id)
                ctx.recorder.event(ctx.run_id, "limit", tripped, step_id=step_id,
                                   t_s=ctx.run_time(), severity="error")
                return SegmentOutcome("failed", tripped, ctx.run_time(), q_mAh, last_E)
            if detector is not None and len(pts):
                trip = detector.feed(pts.E_V)
                if trip is not None:
                    ctx.safe_state(f"detector: {trip.mode}", step_id)
                    ctx.recorder.event(ctx.run_id, "detector", f"{trip.mode}: {trip.message}",
                                       step_id=step_id, t_s=ctx.run_time(), severity="warning",
                                       data={"mode": trip.mode})
                    return SegmentOutcome("failed", f"detector: {trip.mode}", ctx.run_time(),
                                          q_mAh, last_E, trip)
            if reading.state is ChannelState.ERROR:
                ctx.safe_state("instrument error", step_id)
                return SegmentOutcome("failed", f"instrument error: {reading.end_reason}",
                                      ctx.run_time(), q_mAh, last_E)
            if reading.state is ChannelState.IDLE:
                reason = reading.end_reason.value if reading.end_reason else "ended"
                status = "completed" if reason in normal_ends else "failed"
                return SegmentOutcome(status, reason, ctx.run_time(), q_mAh, last_E)
    except BaseException:
        ctx.safe_state("step interrupted", step_id)
        raise


def _record(
    ctx: ChannelContext, step_id: int, reading: ChannelReading, t_offset: float,
    q_mAh: float, last_t: float, last_E: float | None, P_MPa: float | None,
) -> tuple[float, float, float | None, np.ndarray]:
    """Record a poll's points (charge integrated) and spectra; return the running totals.

    `P_MPa` is the frame pressure read once for this poll. The poll's currents in mA are
    returned too, so the limit check does not convert them again.
    """
    pts = reading.points
    I_mA = pts.I_A * 1e3
    if len(pts):
        t = pts.t_s
        dt = np.empty_like(t)  # np.diff(t, prepend=last_t) without its per-call overhead
        dt[0] = t[0] - last_t
        np.subtract(t[1:], t[:-1], out=dt[1:])
        Q = q_mAh + np.cumsum(I_mA * dt) / 3600.0
        ctx.recorder.add_points(step_id, t + t_offset, pts.E_V, I_mA, Q, P_MPa)
        q_mAh = float(Q[-1])
        last_t = float(t[-1])
        last_E = float(pts.E_V[-1])
        if ctx.on_progress is not None:
            ctx.on_progress({"step": ctx.step_name, "t_s": float(t[-1] + t_offset),
                             "E_V": last_E,
                             "I_mA": float(I_mA[-1]), "Q_mAh": q_mAh})
    if reading.impedance:
        ctx.recorder.add_eis(step_id, (_eis_row(p, t_offset) for p in reading.impedance))
    return q_mAh, last_t, last_E, I_mA


def _eis_row(p: Any, t_offset: float) -> dict[str, float | None]:
    z = complex(p.Z_re_ohm, p.Z_im_ohm)
    return {
        "t_s": p.t_s + t_offset, "frequency_Hz": p.frequency_Hz, "Z_re_ohm": z.real,
        "Z_im_ohm": z.imag, "Z_mod_ohm": abs(z), "phase_deg": float(np.degrees(np.angle(z))),
        "E_V": p.E_V, "I_mA": p.I_A * 1e3,
    }
