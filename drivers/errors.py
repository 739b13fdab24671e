"""One exception hierarchy for every instrument fault, under `InstrumentError`.

Callers above the drivers (the engine, station checks, the CLI) catch `InstrumentError` and
nothing else; the subclasses say what kind of fault it was, so a retry policy or a message can
depend on it without parsing text. Modelled on pyvisa's single error root (`pyvisa.errors`).
"""

from __future__ import annotations


class InstrumentError(RuntimeError):
    """An instrument fault: timeout, disconnect, rejected command, garbled reply."""


class NotConnected(InstrumentError):
    """The instrument was used before `connect()` (or after `disconnect()`)."""


class TransportError(InstrumentError):
    """Bytes could not be exchanged: the port is gone, the cable unplugged, the socket closed."""


class ReplyTimeout(InstrumentError):
    """No complete reply arrived within the timeout (a stalled or silent instrument)."""


class GarbledReply(InstrumentError):
    """The instrument answered something that is not a valid reply (noise, wrong baud rate)."""


class InstrumentRefused(InstrumentError):
    """The instrument rejected a command or its parameters (a DLL error code, a gauge ``*NN``)."""


class Unsupported(InstrumentError):
    """The request cannot be expressed on this instrument (a technique it does not have, a
    duration beyond what it can time, an address form it does not accept)."""


class OutOfBand(InstrumentError):
    """A reading is outside the band the station declared for it (e.g. a gauge that reads a
    force no spring frame of this station can apply): the instrument is not what it seems."""
