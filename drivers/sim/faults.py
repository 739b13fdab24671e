"""Fault injection for the simulated bench: what goes wrong in a real lab at 3 a.m.

A `FaultPlan` is a list of faults, each armed at a simulated time and aimed at an instrument
(by name) and an operation (load, start, poll, read). The simulated instruments sit *below* the
real drivers, so they enact a due fault the way the hardware shows it (`take()` hands it to
them): the simulated EClib returns the DLL's error code, the simulated gauge garbles its bytes,
goes silent or drops the line; the real driver then has to turn that into an instrument error.
Cell faults (a sudden short, loss of pressure) are applied by the bench to the cell or frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from labctl_drivers.interfaces import InstrumentError

FaultKind = Literal[
    "disconnect", "timeout", "garbled", "dll_error", "pressure_loss", "short"
]


@dataclass
class Fault:
    kind: FaultKind
    at_s: float  # simulated time at which it becomes active
    instrument: str | None = None  # None: any instrument
    operation: str | None = None  # None: any operation
    count: int = 1  # how many operations fail (transient); -1 = for ever (disconnect)
    code: int = -1  # DLL error code for dll_error (e.g. -12 function in progress)
    fired: int = 0

    def due(self, instrument: str, operation: str, t: float) -> bool:
        return (
            t >= self.at_s
            and (self.count < 0 or self.fired < self.count)
            and self.instrument in (None, instrument)
            and self.operation in (None, operation)
        )


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)

    def take(self, instrument: str, operation: str, t: float) -> Fault | None:
        """The instrument fault due for this operation, counted as fired; None if none is due.
        The simulated instrument enacts it in its own terms (error code, bytes, silence)."""
        for f in self.faults:
            if f.kind not in ("pressure_loss", "short") and f.due(instrument, operation, t):
                f.fired += 1
                return f
        return None

    def check(self, instrument: str, operation: str, t: float) -> None:
        for f in self.faults:
            if f.kind in ("pressure_loss", "short") or not f.due(instrument, operation, t):
                continue
            f.fired += 1
            if f.kind == "disconnect":
                raise InstrumentError(f"{instrument}: connection lost during {operation}")
            if f.kind == "timeout":
                raise InstrumentError(f"{instrument}: timed out during {operation}")
            if f.kind == "garbled":
                raise InstrumentError(f"{instrument}: garbled reply during {operation}")
            raise InstrumentError(f"{instrument}: DLL error {f.code} during {operation}")

    def cell_faults_due(self, t: float) -> list[Fault]:
        """Pressure losses and shorts that are due and not yet applied (the bench applies them)."""
        due = [f for f in self.faults
               if f.kind in ("pressure_loss", "short") and f.fired == 0 and t >= f.at_s]
        for f in due:
            f.fired = 1
        return due
