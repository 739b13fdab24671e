"""Stop signals: SIGINT (Ctrl-C), SIGTERM (a service stop, `kill`) and SIGHUP (the terminal or
ssh session closed) all take the same path, and none of them lands in the middle of anything.

Python's default SIGINT raises `KeyboardInterrupt` wherever the main thread happens to be: in a
database transaction (a rolled-back-never connection that keeps SQLite's write lock, so every
later write waits on "database is locked"), or between a request to an instrument and its reply.
SIGTERM and SIGHUP, by default, kill the process with no safe state at all. So while labctl
drives instruments, `stop_signals()` replaces all three handlers with one that only *records*
the signal; the run is stopped at the next safe point, where `raise_if_stopping()` is called
(the engine's housekeeping, about once a wall second, and between the launcher's phases). That
is the pattern of QCoDeS' deferred interrupt and of bluesky's RunEngine (SIGINT becomes a
deferred stop with cleanup). From there the path is Ctrl-C's: every channel is switched off,
then the runs are recorded as aborted with the signal as their reason.

The stop is raised as `StopRequested`, a `KeyboardInterrupt`, so every layer that already
handles Ctrl-C (the engine's scheduler, the CLI) handles it unchanged. Exit statuses follow the
shell's convention, 128 + the signal's number: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP).
Repeated signals while the stop is under way are ignored: the cleanup must finish.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: the signals that stop a run, and how the run's end reason names each
STOP_SIGNALS: dict[signal.Signals, str] = {
    signal.SIGINT: "interrupted (Ctrl-C)",
    signal.SIGTERM: "interrupted (SIGTERM: service stop or kill)",
    signal.SIGHUP: "interrupted (SIGHUP: terminal or ssh session closed)",
}


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived; raised at a safe point. `str()` is the runs' end reason."""

    def __init__(self, signum: int) -> None:
        super().__init__(STOP_SIGNALS.get(signal.Signals(signum), f"interrupted (signal {signum})"))
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


@dataclass
class _State:
    signum: int | None = None  # the first stop signal received
    during_write: bool = False  # it arrived while a database write was in progress
    writes: int = 0  # database writes in progress (nesting depth)
    installed: int = 0  # nesting depth of stop_signals()
    acted: StopRequested | None = None  # the last stop raised in this process


_state = _State()


def _record(signum: int, _frame: object) -> None:
    if _state.signum is None:
        _state.signum = signum
        _state.during_write = _state.writes > 0


def stop_requested() -> StopRequested | None:
    """The pending stop, if a stop signal arrived (without raising it)."""
    return None if _state.signum is None else StopRequested(_state.signum)


def arrived_during_write() -> bool:
    """Whether the pending stop's signal arrived while a database write was in progress."""
    return _state.signum is not None and _state.during_write


def raise_if_stopping() -> None:
    """A safe point: raise `StopRequested` if a stop signal arrived."""
    if _state.signum is not None and _state.installed:
        _state.acted = StopRequested(_state.signum)
        raise _state.acted


def last_stop() -> StopRequested | None:
    """The last stop this process acted on (for the CLI's exit line and status: the command
    framework reports an interrupt as exit code 130 whatever its signal)."""
    return _state.acted


@contextmanager
def database_write() -> Iterator[None]:
    """Mark a database write in progress (only to report where a signal landed: the signal is
    acted on at the next safe point in any case, never inside the write)."""
    _state.writes += 1
    try:
        yield
    finally:
        _state.writes -= 1


@contextmanager
def stop_signals() -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP only record a stop (see the module docstring).

    Only the main thread can own signal handlers; elsewhere (a test's worker thread) this does
    nothing and the process's handlers stay as they were. The previous handlers come back on
    exit; a stop that was recorded is cleared then (it has been acted on).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _record) for sig in STOP_SIGNALS}
    _state.installed += 1
    try:
        yield
    finally:
        _state.installed -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not _state.installed:
            _state.signum = None
            _state.during_write = False
