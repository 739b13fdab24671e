"""The scheduler: interleaves channel runners on one clock.

Each runner is a generator that yields the clock time it wants to be woken at. The scheduler
always resumes the earliest one; on a virtual clock time jumps straight there, on the wall clock
it sleeps in short slices so that points are flushed every second and operator requests (pause,
resume, abort from another process, Ctrl-C here) are seen promptly. Deterministic: ties are
broken by the order runners were added.
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


@dataclass
class Job:
    key: Any
    runner: Wake
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

    def add(self, key: Any, runner: Wake) -> Job:
        job = Job(key, runner)
        self.jobs.append(job)
        return job

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
        last_house = time.monotonic()
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
                    self.clock.sleep_until(wake)
                else:
                    while self.clock.now() < wake:
                        self.clock.sleep_until(min(wake, self.clock.now() + WALL_SLICE_S))
                        if time.monotonic() - last_house >= self.housekeeping_interval_s:
                            self.housekeeping()
                            last_house = time.monotonic()
                if time.monotonic() - last_house >= self.housekeeping_interval_s:
                    self.housekeeping()
                    last_house = time.monotonic()
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
