"""Instrument interfaces: what the engine may ask of a potentiostat, a pressure frame, a tester.

Real drivers (easy-biologic SP-300, Mark-10 gauge on a spring frame, LANDT file integration) and
the simulators in `drivers.sim` implement the same interfaces, so simulation is a connection mode,
not a separate code path (the ophyd-async lesson, anchors.md §5).

The potentiostat model follows the SP-300 (biologic.md §8): a channel is loaded with one
technique, started, then polled for buffered data; the instrument itself ends the technique on
its limits and reports why. Software (the engine) may stop it earlier.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from drivers.techniques import Technique


class ChannelState(enum.Enum):
    IDLE = "idle"  # nothing loaded or technique finished; output off (open circuit)
    RUNNING = "running"
    ERROR = "error"  # instrument reported an error; output is off


@dataclass
class PointBatch:
    """Time-series points buffered by the instrument since the last poll (SI units).

    `t_s` is seconds since the technique started on the instrument.
    """

    t_s: np.ndarray
    E_V: np.ndarray
    I_A: np.ndarray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @classmethod
    def empty(cls) -> PointBatch:
        z = np.empty(0)
        return cls(z, z.copy(), z.copy())


@dataclass(frozen=True)
class ImpedancePoint:
    """One frequency of an EIS sweep; `phase_rad` in radians as the DLL reports it."""

    t_s: float
    frequency_Hz: float
    Z_re_ohm: float
    Z_im_ohm: float
    E_V: float
    I_A: float


@dataclass
class ChannelReading:
    """What one poll returns: new data, the channel state, and why the technique ended."""

    state: ChannelState
    points: PointBatch = field(default_factory=PointBatch.empty)
    impedance: list[ImpedancePoint] = field(default_factory=list)
    end_reason: str | None = None  # "time", "E_max", "E_min", "charge", "I_limit", "stopped", ...
    elapsed_s: float = 0.0  # technique time on the instrument at this poll


class InstrumentError(RuntimeError):
    """An instrument fault: timeout, disconnect, DLL error code, garbled reply."""


@runtime_checkable
class PotentiostatChannel(Protocol):
    index: int

    def load(self, technique: Technique) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None:
        """Open the circuit now. Must be safe to call in any state, repeatedly."""
        ...

    def poll(self) -> ChannelReading: ...


@runtime_checkable
class Potentiostat(Protocol):
    name: str
    simulated: bool

    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def channel(self, index: int) -> PotentiostatChannel: ...
    @property
    def n_channels(self) -> int: ...


@runtime_checkable
class PressureFrame(Protocol):
    """A spring-loaded frame read by a force gauge; set-point by operator (or motor if fitted)."""

    name: str
    simulated: bool

    def read_force_N(self) -> float: ...
    def read_pressure_MPa(self) -> float: ...
    def request_pressure(self, pressure_MPa: float) -> None:
        """Ask for a set-point: a motorised frame moves; a manual frame records the request."""
        ...
