"""Running a resolved protocol on one or more channels, from first step to final status.

`run_protocol` is the engine's entry point: it runs a protocol per channel context (each
context's run id was created by the launcher), interleaves the channel runners on the clock,
turns aborts, Ctrl-C, instrument faults and a failed critical sink into a safe state (current
off) and a published run end, and returns what happened. Between wake-ups it reads the
operators' requests (`Controls`: pause, resume, abort, wherever they come from) and tells the
sinks that about a wall second passed (`Tick`). It knows nothing about YAML, the database or
how the instruments were built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import labctl
from labctl.engine.channel import Aborted, ChannelContext, Wake
from labctl.engine.events import (
    EndCause,
    EngineFailure,
    FaultOccurred,
    OperatorActed,
    OperatorAction,
    Result,
    ResultsReady,
    RunEnded,
    RunStarted,
    RunStatus,
    Severity,
    StepEnd,
    StepStatus,
    Tick,
)
from labctl.engine.scheduler import Job, Scheduler
from labctl.engine.steps import StepRunner
from labctl.protocol.resolved import ResolvedProtocol
from labctl_drivers.interfaces import InstrumentError


class RunFailure(RuntimeError):
    """The engine could not go on (a critical sink failed for good); all channels are off."""


class Controls(Protocol):
    """Where operators' requests come from (the launcher reads them from the database)."""

    def request(self, run_id: int) -> OperatorAction | None:
        """The pending request for a live run, if any. Called about once a wall second per
        run, so it may double as the run's heartbeat."""
        ...


@dataclass
class RunOutcome:
    run_id: int
    status: RunStatus
    end_reason: str
    results: dict[str, float | str | None] = field(default_factory=dict)


#: name suffix -> unit of the engine's run-level results
_UNITS = (("_mA_cm2", "mA/cm^2"), ("_mAh_cm2", "mAh/cm^2"), ("_mAh_g", "mAh/g"),
          ("_mAh", "mAh"), ("_ohm", "ohm"), ("_s", "s"), ("_V", "V"))


def unit_of(name: str) -> str:
    return next((unit for suffix, unit in _UNITS if name.endswith(suffix)), "")


def channel_runner(ctx: ChannelContext, protocol: ResolvedProtocol) -> Wake:
    """Run every step in order on one channel; returns a RunOutcome (the run end is published
    by `run_protocol`)."""
    steps = StepRunner(ctx)
    status, reason, cause = RunStatus.COMPLETED, "all steps done", EndCause.ENGINE_ERROR
    try:
        failed = yield from steps.run_steps(protocol.steps)
        if failed is not None:
            step, out = failed
            status, reason = RunStatus.FAILED, f"step '{step.name}': {out.end}"
    except Aborted as exc:
        status, reason, cause = RunStatus.ABORTED, str(exc) or "aborted", EndCause.ABORTED
        ctx.safe_state(reason)
        ctx.bus.publish(OperatorActed(ctx.run_id, ctx.run_time(), None,
                                      f"run aborted: {reason}", OperatorAction.ABORT,
                                      Severity.WARNING))
    except InstrumentError as exc:
        status, reason, cause = RunStatus.FAILED, f"instrument fault: {exc}", EndCause.FAULT
        ctx.safe_state(reason)
        ctx.bus.publish(FaultOccurred(ctx.run_id, ctx.run_time(), None, reason))
    except KeyboardInterrupt as exc:
        # Ctrl-C landed while this runner was executing (polling, publishing), not while the
        # scheduler slept: the load has made the channel safe; the open steps must be closed
        # as aborted, not as failed with the "all steps done" default reason
        status, reason = RunStatus.ABORTED, str(exc) or "interrupted (Ctrl-C)"
        cause = EndCause.ABORTED
        raise
    except Exception as exc:
        status, reason = RunStatus.FAILED, f"engine error: {exc!r}"
        raise
    finally:
        aborted = status is RunStatus.ABORTED
        ctx.close_open_steps(StepStatus.ABORTED if aborted else StepStatus.FAILED,
                             StepEnd(cause, reason))
    return RunOutcome(ctx.run_id, status, reason, dict(ctx.results))


def _publish_engine_results(ctx: ChannelContext) -> None:
    """The run's own values not already published under an analysis of their own."""
    rows = tuple(Result(k, v, unit_of(k)) for k, v in ctx.results.items()
                 if k not in ctx.reported)
    if rows:
        ctx.bus.publish(ResultsReady(ctx.run_id, "engine", labctl.__version__, rows))


def _tracked(ctx: ChannelContext, protocol: ResolvedProtocol) -> Wake:
    """A channel runner whose start and (normal) end are published, the end as soon as it
    happens, so a finished run's row is closed while the other channels go on."""
    ctx.bus.publish(RunStarted(ctx.run_id, ctx.run_time(), protocol.name, ctx.cell,
                               ctx.estimated_s))
    out = yield from channel_runner(ctx, protocol)
    _publish_engine_results(ctx)
    ctx.bus.publish(RunEnded(ctx.run_id, ctx.run_time(), out.status, out.end_reason))
    return out


def _housekeeping(contexts: Sequence[ChannelContext], jobs: Sequence[Job], sched: Scheduler,
                  controls: Controls | None) -> Callable[[], None]:
    """About every wall second: apply operator requests to live runs, then `Tick` the sinks."""
    buses = list({id(c.bus): c.bus for c in contexts}.values())

    def tick() -> None:
        for ctx, job in zip(contexts, jobs):
            if controls is None or job.done:
                continue
            try:
                action = controls.request(ctx.run_id)
            except Exception as exc:
                raise EngineFailure(f"operator controls unavailable: {exc}") from exc
            _apply(ctx, sched, action)
        for bus in buses:
            bus.publish(Tick(contexts[0].run_time()))

    return tick


def _apply(ctx: ChannelContext, sched: Scheduler, action: OperatorAction | None) -> None:
    def tell(act: OperatorAction, message: str) -> None:
        ctx.bus.publish(OperatorActed(ctx.run_id, ctx.run_time(), None, message, act))

    if action is OperatorAction.ABORT:
        tell(action, "abort requested")
        sched.abort(ctx.run_id, "aborted by operator")
    elif action is OperatorAction.PAUSE and not ctx.paused:
        ctx.paused = True
        tell(action, "paused")
    elif action is OperatorAction.RESUME and ctx.paused:
        ctx.paused = False
        tell(action, "resumed")


def _paused_flag(ctx: ChannelContext) -> Callable[[], bool]:
    """Whether `ctx`'s run is paused now with its channel off (the scheduler keeps a virtual
    clock at wall speed while every run on it is). A pause requested while the runner waits
    for its next poll is not held yet: the clock jumps to that poll, where the channel is
    switched off, as it does without a pause."""
    return lambda: ctx.paused and ctx.pause_held


def run_protocol(
    work: list[tuple[ChannelContext, ResolvedProtocol]],
    controls: Controls | None = None,
    housekeeping_interval_s: float = 1.0,
) -> list[RunOutcome]:
    """Run each channel's protocol concurrently on their shared clock; publish each run's end.

    Raises `RunFailure` (after every channel was switched off and every run's end published to
    the sinks that still work) when a critical sink or the controls failed for good.
    """
    contexts = [ctx for ctx, _ in work]
    sched = Scheduler(contexts[0].clock, housekeeping_interval_s=housekeeping_interval_s)
    jobs = [sched.add(ctx.run_id, _tracked(ctx, protocol), paused=_paused_flag(ctx))
            for ctx, protocol in work]
    sched.housekeeping = _housekeeping(contexts, jobs, sched, controls)
    interrupted: KeyboardInterrupt | None = None  # Ctrl-C, or a stop signal (its reason)
    fatal: Exception | None = None
    try:
        sched.run()
    except KeyboardInterrupt as exc:
        interrupted = exc
    except Exception as exc:  # every runner was aborted (its channel made safe) on the way
        fatal = exc
    outcomes = []
    for ctx, job in zip(contexts, jobs):
        out = job.result
        if not isinstance(out, RunOutcome):
            fatal = fatal or (job.error if isinstance(job.error, EngineFailure) else None)
            if interrupted is not None:
                status, reason = RunStatus.ABORTED, str(interrupted) or "interrupted (Ctrl-C)"
            elif isinstance(job.error, EngineFailure):
                status, reason = RunStatus.FAILED, str(job.error)
            else:
                status, reason = RunStatus.FAILED, f"engine error: {job.error or fatal!r}"
            out = RunOutcome(ctx.run_id, status, reason, dict(ctx.results))
            try:
                ctx.safe_state(reason)
                ctx.bus.publish(RunEnded(ctx.run_id, ctx.run_time(), status, reason))
            except EngineFailure as exc:
                fatal = fatal or exc
        outcomes.append(out)
    if interrupted is not None:
        raise interrupted
    if fatal is not None:
        raise RunFailure(f"{fatal}; every channel was switched off") from fatal
    return outcomes
