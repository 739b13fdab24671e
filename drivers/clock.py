"""Clocks: all waiting in labctl goes through one of these.

Hardware runs on `WallClock`; simulation runs on `VirtualClock`, which jumps straight to the next
wake-up time, so a 12-hour protocol runs in seconds through the very same engine code. The clock
lives with the instruments (a simulated bench owns its virtual clock) because simulated
instruments integrate their cells up to `clock.now()`.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    virtual: bool

    def now(self) -> float:
        """Seconds since the clock's epoch (monotonic)."""
        ...

    def sleep_until(self, t: float) -> None: ...


class WallClock:
    """Monotonic wall time, optionally accelerated by `speed` (a simulated bench in its own
    process and the labctl that drives it share the speed, so both see the same seconds)."""

    virtual = False

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.speed = float(speed)
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def sleep_until(self, t: float) -> None:
        delay = (t - self.now()) / self.speed
        if delay > 0:
            time.sleep(delay)


class VirtualClock:
    """Simulated time: `sleep_until` returns at once with the clock moved forward."""

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def sleep_until(self, t: float) -> None:
        if t > self._t:
            self._t = t
