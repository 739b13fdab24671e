"""Running a resolved protocol on one or more channels, from first step to final status.

`run_protocol` is the engine's entry point: it opens a run per channel, interleaves the channel
runners on the clock, turns aborts, Ctrl-C, instrument faults and database failures into a safe
state (current off) and a recorded end, and returns what happened. It knows nothing about YAML
or how the instruments were built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labctl.engine.channel import Aborted, ChannelContext, Wake
from labctl.engine.scheduler import Scheduler
from labctl.engine.steps import StepRunner
from labctl.protocol.resolved import ResolvedProtocol
from labctl.recording.recorder import RecordingError
from labctl_drivers.interfaces import InstrumentError


class RunFailure(RuntimeError):
    """The engine could not go on (the database failed for good); all channels are off."""


@dataclass
class RunOutcome:
    run_id: int
    status: str  # completed | failed | aborted
    end_reason: str
    results: dict[str, float | str | None] = field(default_factory=dict)


def channel_runner(ctx: ChannelContext, protocol: ResolvedProtocol) -> Wake:
    """Run every step in order on one channel; returns a RunOutcome."""
    steps = StepRunner(ctx)
    status, reason = "completed", "all steps done"
    try:
        for step in protocol.steps:
            out = yield from steps.run(step)
            if out.status != "completed":
                status, reason = "failed", f"step '{step.name}': {out.end_reason}"
                break
    except Aborted as exc:
        status, reason = "aborted", str(exc) or "aborted"
        ctx.safe_state(reason)
        ctx.recorder.event(ctx.run_id, "operator", f"run aborted: {reason}", t_s=ctx.run_time(),
                           severity="warning")
    except InstrumentError as exc:
        status, reason = "failed", f"instrument fault: {exc}"
        ctx.safe_state(reason)
        ctx.recorder.event(ctx.run_id, "fault", reason, t_s=ctx.run_time(), severity="error")
    except KeyboardInterrupt:
        # Ctrl-C landed while this runner was executing (polling, writing), not while the
        # scheduler slept: run_technique has made the channel safe; the open steps must be
        # closed as aborted, not as failed with the "all steps done" default reason
        status, reason = "aborted", "interrupted (Ctrl-C)"
        raise
    except Exception as exc:
        status, reason = "failed", f"engine error: {exc!r}"
        raise
    finally:
        steps.close_open_steps("aborted" if status == "aborted" else "failed", reason)
    return RunOutcome(ctx.run_id, status, reason, dict(ctx.results))


def run_protocol(
    work: list[tuple[ChannelContext, ResolvedProtocol]],
    housekeeping: Callable[[Scheduler], None] | None = None,
) -> list[RunOutcome]:
    """Run each channel's protocol concurrently on their shared clock; record each run's end."""
    contexts = [ctx for ctx, _ in work]
    clock = contexts[0].clock
    sched = Scheduler(clock)
    if housekeeping is not None:
        sched.housekeeping = lambda: housekeeping(sched)
    jobs = [sched.add(ctx.run_id, channel_runner(ctx, protocol)) for ctx, protocol in work]
    interrupted = False
    fatal: Exception | None = None
    try:
        sched.run()
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # every runner was aborted (its channel made safe) on the way
        fatal = exc
    outcomes = []
    for ctx, job in zip(contexts, jobs):
        out: Any = job.result
        if not isinstance(out, RunOutcome):
            if interrupted:
                reason = "interrupted (Ctrl-C)"
            elif isinstance(job.error, RecordingError):
                reason = str(job.error)
                fatal = fatal or job.error
            else:
                reason = f"engine error: {job.error or fatal!r}"
            ctx.safe_state(reason)
            out = RunOutcome(ctx.run_id, "aborted" if interrupted else "failed", reason,
                             dict(ctx.results))
        try:
            ctx.recorder.end_run(ctx.run_id, out.status, out.end_reason)
        except RecordingError as exc:
            fatal = fatal or exc
        outcomes.append(out)
    if interrupted:
        raise KeyboardInterrupt
    if fatal is not None:
        raise RunFailure(f"{fatal}; every channel was switched off") from fatal
    return outcomes
