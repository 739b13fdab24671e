"""Instrument interfaces: what the engine may ask of a potentiostat, a pressure frame, a tester.

Only the real drivers implement these (the SP-300 adapter, the Mark-10 spring frame, the LANDT
export follower). Simulation is a way of *connecting* them: the simulated instruments sit below
the drivers (a simulated EClib under the SP-300 adapter, a simulated gauge at the far end of a
byte transport, a simulated LANDT writing export files), as ophyd-async swaps only a device's
lowest backend for its mock connection mode. So every simulated run executes the code a lab
runs on the bench.

The potentiostat model follows the SP-300 (EC-Lab Development Package user's guide, §6): a
channel is loaded with one technique or a linked sequence of techniques, started, then polled
for buffered data; the instrument itself ends each technique on its own limits, and the driver
reports why from what the instrument says (its state, its elapsed time against the planned
duration, the limits it was given). Software (the engine) may stop it earlier.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from labctl_drivers.errors import InstrumentError
from labctl_drivers.techniques import Technique

__all__ = [
    "ChannelReading", "ChannelState", "ChannelStatus", "EndReason", "ImpedancePoint",
    "InstrumentError", "InstrumentIdentity", "PointBatch", "Potentiostat", "PotentiostatChannel",
    "PressureFrame", "TechniqueEnd",
]


class ChannelState(enum.Enum):
    IDLE = "idle"  # nothing loaded or technique finished; output off (open circuit)
    RUNNING = "running"
    ERROR = "error"  # instrument reported an error; output is off


class EndReason(enum.Enum):
    """Why the instrument ended a technique. The value is what the database stores."""

    TIME = "time"  # its duration elapsed
    CHARGE = "charge"  # its charge limit was reached (at constant current: a timed duration)
    E_MAX = "E_max"  # a potential limit test fired (E above its value)
    E_MIN = "E_min"  # a potential limit test fired (E below its value)
    I_LIMIT = "I_limit"  # a current limit test fired (|I| above its value)
    COMPLETE = "complete"  # a sweep (CV, EIS) finished
    STOPPED = "stopped"  # software stopped the channel
    ERROR = "error"  # the instrument reported an error and opened the circuit

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TechniqueEnd:
    """One technique of the loaded sequence ended on the instrument."""

    index: int  # position in the loaded sequence, 0-based
    reason: EndReason
    elapsed_s: float  # how long that technique ran on the instrument


@dataclass
class PointBatch:
    """Time-series points buffered by the instrument since the last poll (SI units).

    `t_s` is seconds since the loaded sequence started on the instrument (for a single
    technique: since it started). `technique_index` says which technique of the sequence took
    each point; None means all came from `ChannelReading.technique_index`.
    """

    t_s: np.ndarray
    E_V: np.ndarray
    I_A: np.ndarray
    technique_index: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @classmethod
    def empty(cls) -> PointBatch:
        z = np.empty(0)
        return cls(z, z.copy(), z.copy())


@dataclass(frozen=True)
class ImpedancePoint:
    """One frequency of an EIS sweep (impedance as real and imaginary parts, in ohm)."""

    t_s: float
    frequency_Hz: float
    Z_re_ohm: float
    Z_im_ohm: float
    E_V: float
    I_A: float
    technique_index: int = 0


@dataclass
class ChannelReading:
    """What one poll returns: new data, the channel state, and which techniques ended and why."""

    state: ChannelState
    points: PointBatch = field(default_factory=PointBatch.empty)
    impedance: list[ImpedancePoint] = field(default_factory=list)
    ends: tuple[TechniqueEnd, ...] = ()  # techniques that ended since the previous poll
    technique_index: int = 0  # the technique running now (or the last one, once idle)
    elapsed_s: float = 0.0  # time of the running (or last) technique on the instrument

    @property
    def end_reason(self) -> EndReason | None:
        """Why the last technique of the sequence ended, once the channel is idle."""
        if self.state is ChannelState.RUNNING or not self.ends:
            return None
        return self.ends[-1].reason


@dataclass(frozen=True)
class InstrumentIdentity:
    """What an instrument says it is, for station checks and the run record."""

    model: str
    serial_number: str | None = None
    firmware: str | None = None
    address: str = ""
    simulated: bool = False
    channels: tuple[int, ...] = ()
    details: tuple[tuple[str, str], ...] = ()  # further (name, value) pairs worth printing


@dataclass(frozen=True)
class ChannelStatus:
    """A channel's state as the instrument reports it now, read without changing anything."""

    index: int
    state: ChannelState
    E_V: float | None = None
    I_A: float | None = None
    elapsed_s: float | None = None
    technique: str | None = None  # what is loaded or running, in the instrument's own terms


@runtime_checkable
class PotentiostatChannel(Protocol):
    index: int
    #: How many techniques one `load` may link (1: a driver that cannot link them).
    max_linked_techniques: int

    def load(self, technique: Technique | Sequence[Technique], *,
             cutoffs: Sequence[Collection[EndReason | str] | None] | None = None) -> None:
        """Load one technique, or a sequence the instrument runs back to back (linked
        techniques: no open-circuit gap between them). `cutoffs[k]` names the end reasons that
        are technique k's normal end (a cut-off), so that the instrument may go on with the
        next technique there; any other limit stops the sequence."""
        ...

    def start(self) -> None: ...
    def stop(self) -> None:
        """Open the circuit now. Must be safe to call in any state, repeatedly."""
        ...

    def poll(self) -> ChannelReading: ...
    def status(self) -> ChannelStatus:
        """The channel's state as the instrument reports it; changes nothing."""
        ...


@runtime_checkable
class Potentiostat(Protocol):
    name: str
    simulated: bool

    def connect(self) -> None:
        """Open the connection. Changes nothing on the instrument (no channel is stopped or
        started), so a station check and a reconnection after a crash see it as it is."""
        ...

    def disconnect(self) -> None: ...
    def channel(self, index: int) -> PotentiostatChannel: ...
    def identity(self) -> InstrumentIdentity: ...
    @property
    def n_channels(self) -> int: ...


@runtime_checkable
class PressureFrame(Protocol):
    """A spring-loaded frame read by a force gauge; set-point by operator (or motor if fitted)."""

    name: str
    simulated: bool

    def connect(self) -> None:
        """Open the gauge, identify it and take a first reading inside its band; raise
        `InstrumentError` otherwise. Called before any current flows."""
        ...

    def close(self) -> None: ...
    def identity(self) -> InstrumentIdentity: ...
    def read_force_N(self) -> float: ...
    def read_pressure_MPa(self) -> float: ...
    def request_pressure(self, pressure_MPa: float) -> None:
        """Ask for a set-point: a motorised frame moves; a manual frame records the request."""
        ...
