"""What the engine says while it runs: typed, frozen event records and the bus that carries them.

The engine never calls the recorder, a display or a notifier. It publishes one record per fact
(a run started, a step ended, a batch of points arrived, a limit tripped, the channel was made
safe, the operator paused...) on an `EventBus`; sinks subscribe. The recorder is the one
*critical* sink: if it cannot take an event the run must stop exactly as when the database
failed before (the bus raises `SinkFailure`, an engine type, so the engine never imports the
recorder). Every other sink (live display, notifier, step-end analyses, a future dashboard) is
isolated: its failure is logged and never reaches the run.

Steps are identified by the engine's run-local step numbers (1, 2, ... in start order); run ids
come from whoever created the run rows before the engine started (`labctl.launch`). Statuses,
end causes, event kinds and severities are enums compared by identity; their values are the
strings the database has always stored (they are `StrEnum`s so that those strings, JSON output
and older callers comparing with a string keep working unchanged).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from labctl_drivers.interfaces import EndReason

log = logging.getLogger(__name__)

__all__ = [
    "DetectorTripped",
    "EndCause",
    "EngineFailure",
    "Event",
    "EventBus",
    "EventKind",
    "FaultOccurred",
    "LimitTripped",
    "Notice",
    "OperatorActed",
    "OperatorAction",
    "Points",
    "Result",
    "ResultsReady",
    "RunEnded",
    "RunStarted",
    "RunStatus",
    "RunSummary",
    "SafeStateAction",
    "Severity",
    "SinkFailure",
    "SpectrumPoint",
    "SpectrumPoints",
    "StepEnd",
    "StepEnded",
    "StepStarted",
    "StepStatus",
    "Tick",
]


# ---- vocabularies ------------------------------------------------------------------------------
class RunStatus(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"  # found without heartbeat by the next engine (crash)


class StepStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class EventKind(enum.StrEnum):
    """The `event.kind` column: what kind of thing happened."""

    LIMIT = "limit"
    DETECTOR = "detector"
    FAULT = "fault"
    SAFE_STATE = "safe_state"
    OPERATOR = "operator"
    NOTE = "note"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class OperatorAction(enum.StrEnum):
    """What an operator (or the engine on the operator's behalf) did to a run."""

    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    NOTE = "note"
    SETPOINT = "setpoint"  # a pressure set-point asked of the frame


class EndCause(enum.Enum):
    """Who or what ended a step: the instrument (see `StepEnd.instrument`) or the engine."""

    INSTRUMENT = "instrument"  # the technique ended on the instrument, as planned
    SAFETY_LIMIT = "safety limit"  # a protocol safety limit (on the instrument or in software)
    DETECTOR = "detector"  # a failure detector tripped
    SETTLED = "settled"  # a rest ended early: |dE/dt| below its threshold
    OUTCOME = "outcome"  # a composite step (CCD ramp, interleave, pressure) decided its end
    FAULT = "fault"  # the instrument failed
    ABORTED = "aborted"  # operator abort, Ctrl-C, or the engine stopping every channel
    NOT_RUN = "not run"  # a linked technique cut short because an earlier one failed
    ENGINE_ERROR = "engine error"


@dataclass(frozen=True, slots=True)
class StepEnd:
    """Why a step ended. `text` is what the database's `end_reason` column stores."""

    cause: EndCause
    text: str
    instrument: EndReason | None = None  # the instrument's own reason, when it ended the step

    def __str__(self) -> str:
        return self.text

    @classmethod
    def on_instrument(cls, reason: EndReason) -> StepEnd:
        return cls(EndCause.INSTRUMENT, reason.value, reason)

    @classmethod
    def detector(cls, mode: str) -> StepEnd:
        return cls(EndCause.DETECTOR, f"detector: {mode}")


# ---- the records -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: int
    t_s: float
    protocol: str
    cell: str = ""
    estimated_s: float | None = None  # the plan's estimate, for displays


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: int
    t_s: float
    status: RunStatus
    reason: str


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Published by the launcher once a run's end-of-run analyses are done: everything known.

    Not an engine event (analyses run after the engine stopped); the recorder has already
    stored every value in it, so it only informs (the notifier's end-of-run message).
    """

    run_id: int
    cell: str
    status: RunStatus
    reason: str
    results: Mapping[str, float | str | None]


@dataclass(frozen=True, slots=True)
class StepStarted:
    run_id: int
    t_s: float
    step: int  # run-local step number
    parent: int | None
    kind: str
    name: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StepEnded:
    run_id: int
    t_s: float
    step: int
    kind: str
    status: StepStatus
    end: StepEnd


@dataclass(frozen=True, slots=True, eq=False)
class Points:
    """A batch of recorded points of one step (run time, V, mA, mAh, MPa). The arrays belong to
    the event: the engine never writes into them after publishing."""

    run_id: int
    step: int
    t_s: np.ndarray
    E_V: np.ndarray
    I_mA: np.ndarray
    Q_mAh: np.ndarray
    P_MPa: float | None


@dataclass(frozen=True, slots=True)
class SpectrumPoint:
    t_s: float
    frequency_Hz: float
    Z_re_ohm: float
    Z_im_ohm: float
    E_V: float
    I_mA: float


@dataclass(frozen=True, slots=True)
class SpectrumPoints:
    run_id: int
    step: int
    points: tuple[SpectrumPoint, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth an `event` row: kind and severity say how it is filed."""

    KIND: ClassVar[EventKind] = EventKind.NOTE
    SEVERITY: ClassVar[Severity] = Severity.INFO
    run_id: int
    t_s: float | None
    step: int | None
    message: str

    @property
    def kind(self) -> EventKind:
        return self.KIND

    @property
    def severity(self) -> Severity:
        return self.SEVERITY

    @property
    def data(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class LimitTripped(Notice):
    KIND: ClassVar[EventKind] = EventKind.LIMIT
    SEVERITY: ClassVar[Severity] = Severity.ERROR


@dataclass(frozen=True, slots=True)
class DetectorTripped(Notice):
    KIND: ClassVar[EventKind] = EventKind.DETECTOR
    SEVERITY: ClassVar[Severity] = Severity.WARNING
    mode: str = ""

    @property
    def data(self) -> dict[str, Any]:
        return {"mode": self.mode}


@dataclass(frozen=True, slots=True)
class FaultOccurred(Notice):
    KIND: ClassVar[EventKind] = EventKind.FAULT
    SEVERITY: ClassVar[Severity] = Severity.ERROR


@dataclass(frozen=True, slots=True)
class SafeStateAction(Notice):
    """The channel was switched off (`confirmed`), or every stop attempt failed."""

    KIND: ClassVar[EventKind] = EventKind.SAFE_STATE
    confirmed: bool = True

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.confirmed else Severity.CRITICAL


@dataclass(frozen=True, slots=True)
class OperatorActed(Notice):
    KIND: ClassVar[EventKind] = EventKind.OPERATOR
    action: OperatorAction = OperatorAction.NOTE
    level: Severity = Severity.INFO

    @property
    def severity(self) -> Severity:
        return self.level


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    value: float | str | None
    unit: str = ""
    step: int | None = None  # run-local step number; None: a run-level value


@dataclass(frozen=True, slots=True)
class ResultsReady:
    """Named values of one analysis for a run; they replace that analysis's earlier values."""

    run_id: int
    analysis: str
    version: str
    results: tuple[Result, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """About a wall second passed: sinks that buffer (the recorder) may commit now."""

    t_s: float = 0.0


Event = (RunStarted | RunEnded | RunSummary | StepStarted | StepEnded | Points | SpectrumPoints
         | Notice | ResultsReady | Tick)
Sink = Callable[[Event], None]


# ---- the bus -----------------------------------------------------------------------------------
class EngineFailure(RuntimeError):
    """The engine cannot go on (its critical sink or its operator controls failed for good)."""


class SinkFailure(EngineFailure):
    """A critical sink could not take an event. The cause is chained (`__cause__`)."""

    def __init__(self, sink: str, cause: BaseException) -> None:
        super().__init__(f"{sink}: {cause}")
        self.sink = sink


@dataclass
class _Subscription:
    sink: Sink
    name: str
    critical: bool
    broken: bool = False


@dataclass
class EventBus:
    """Synchronous fan-out: `publish` hands the event to every sink in turn, critical ones first.

    Critical first, so that whatever a display or a notifier hears about is already durable,
    and a step-end analysis reading the database finds the step closed. A critical sink that
    raises is marked broken (no further events: the engine is stopping) and `publish` raises
    `SinkFailure` once; the engine answers by switching every channel off. A non-critical sink
    that raises is logged and keeps receiving. `KeyboardInterrupt` passes through any sink.
    """

    _subs: list[_Subscription] = field(default_factory=list)

    def subscribe(self, sink: Sink, *, critical: bool = False, name: str | None = None) -> None:
        sub = _Subscription(sink, name or getattr(sink, "__qualname__", type(sink).__name__),
                            critical)
        # critical sinks before the others, each group in subscription order
        at = sum(1 for s in self._subs if s.critical) if critical else len(self._subs)
        self._subs.insert(at, sub)

    def unsubscribe(self, sink: Sink) -> None:
        self._subs = [s for s in self._subs if s.sink is not sink]

    @property
    def failed(self) -> bool:
        """A critical sink broke: what it missed is lost, the run cannot be trusted to go on."""
        return any(s.broken for s in self._subs)

    def publish(self, event: Event) -> None:
        failed: tuple[_Subscription, Exception] | None = None
        for sub in self._subs:
            if sub.broken:
                continue
            try:
                sub.sink(event)
            except Exception as exc:
                if not sub.critical:
                    log.warning("sink %s failed on %s (ignored)", sub.name,
                                type(event).__name__, exc_info=True)
                    continue
                sub.broken = True
                failed = failed or (sub, exc)
        if failed is not None:
            raise SinkFailure(failed[0].name, failed[1]) from failed[1]
