"""The scheduler: interleaves channel runners on one clock.

Each runner is a generator that yields the clock time it wants to be woken at. The scheduler
always resumes the earliest one; on a virtual clock time jumps straight there, on the wall clock
it sleeps in short slices so that points are flushed every second and operator requests (pause,
resume, abort from another process, Ctrl-C here) are seen promptly. Deterministic: ties are
broken by the order runners were added.

A pause on a virtual clock: while every live runner is paused (its channel off, waiting for
the resume: `Job.paused`), nothing is left that time could jump for, and jumping anyway would
rest the cells for simulated days in a second of the operator's pause (the run's time axis then
read 493,139 h after a pause). So the virtual clock then runs at wall speed, in slices with
housekeeping between them, until a runner is resumed: the pause takes as long in the run's time
as it took the operator. When some runners on the clock are still running, the clock is theirs
and keeps jumping (a bench has one clock); the paused run's channel rests for that time, as a
paused channel of a busy bench does.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labctl.engine.channel import Aborted, Wake
from labctl.engine.events import EngineFailure
from labctl_drivers.clock import Clock

WALL_SLICE_S = 0.25


def _never() -> bool:
    return False


@dataclass
class Job:
    key: Any
    runner: Wake
    paused: Callable[[], bool] = _never  # whether the run is paused by its operator now
    result: Any = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class Scheduler:
    clock: Clock
    housekeeping: Callable[[], None] = lambda: None  # operator controls, then Tick the sinks
    housekeeping_interval_s: float = 1.0
    jobs: list[Job] = field(default_factory=list)
    fatal: EngineFailure | None = None  # a runner met a failure that stops every runner
    _last_house: float = field(default=0.0, init=False)  # monotonic time of the last one

    def add(self, key: Any, runner: Wake, paused: Callable[[], bool] = _never) -> Job:
        job = Job(key, runner, paused)
        self.jobs.append(job)
        return job

    def _housekeep_if_due(self) -> None:
        if time.monotonic() - self._last_house >= self.housekeeping_interval_s:
            self.housekeeping()
            self._last_house = time.monotonic()

    def _all_paused(self) -> bool:
        live = [job for job in self.jobs if not job.done]
        return bool(live) and all(job.paused() for job in live)

    def _paused_at_wall_speed(self, wake: float) -> None:
        """Every live runner is paused on a virtual clock: move it with the wall clock, not
        past `wake`, housekeeping between slices, until a runner is resumed (then the clock
        jumps again)."""
        clock = self.clock
        while clock.now() < wake and self._all_paused():
            before = time.monotonic()
            time.sleep(min(WALL_SLICE_S, wake - clock.now()))
            clock.sleep_until(min(wake, clock.now() + (time.monotonic() - before)))
            self._housekeep_if_due()

    def _advance(self, job: Job, exc: BaseException | None = None) -> float | None:
        if job.done:
            # e.g. housekeeping aborted this job between its pop from the heap and its resume:
            # resuming a finished generator would overwrite its RunOutcome with None
            return None
        try:
            return job.runner.throw(exc) if exc is not None else next(job.runner)
        except StopIteration as stop:
            job.result, job.done = stop.value, True
        except Exception as err:  # the runner has already made its channel safe
            job.error, job.done = err, True
            if isinstance(err, EngineFailure) and self.fatal is None:
                self.fatal = err
        return None

    def abort(self, key: Any, reason: str) -> None:
        """Abort one runner (an operator's request for one run)."""
        for job in self.jobs:
            if job.key == key and not job.done:
                self._advance(job, Aborted(reason))
                if not job.done:
                    job.runner.close()
                    job.done = True

    def abort_all(self, reason: str) -> None:
        """Throw `Aborted` into every live runner (each makes its channel safe on the way out)."""
        for job in self.jobs:
            self.abort(job.key, reason)

    def run(self) -> None:
        heap: list[tuple[float, int, Job]] = []
        self._last_house = time.monotonic()
        try:
            for seq, job in enumerate(self.jobs):
                wake = self._advance(job)
                if self.fatal is not None:
                    raise self.fatal
                if wake is not None:
                    heapq.heappush(heap, (wake, seq, job))
            while heap:
                wake, seq, job = heapq.heappop(heap)
                if job.done:
                    continue
                if self.clock.virtual:
                    if job.paused() and self._all_paused():
                        self._paused_at_wall_speed(wake)
                    self.clock.sleep_until(wake)
                else:
                    while self.clock.now() < wake:
                        self.clock.sleep_until(min(wake, self.clock.now() + WALL_SLICE_S))
                        self._housekeep_if_due()
                self._housekeep_if_due()
                nxt = self._advance(job)
                if self.fatal is not None:  # e.g. the recorder failed: no channel may go on
                    raise self.fatal
                if nxt is not None:
                    heapq.heappush(heap, (nxt, seq, job))
        except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal raised at a safe point
            self.abort_all(str(exc) or "interrupted (Ctrl-C)")
            raise
        except Exception as exc:  # housekeeping or a critical sink failed: stop every cell
            self.abort_all(f"engine stopped: {exc}")
            raise
