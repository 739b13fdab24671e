"""The Mark-10 driver's faults, as subclasses of the one hierarchy in `labctl_drivers.errors`.

Callers above the driver catch `InstrumentError` (or one of its kinds: `TransportError`,
`ReplyTimeout`, `GarbledReply`, `InstrumentRefused`); these subclasses only add what a Mark-10
fault carries (the partial bytes of a late reply, the gauge's ``*NN`` code), so a test or a log
line can say exactly what the gauge sent.
"""

from __future__ import annotations

from labctl_drivers import errors

__all__ = ["GarbledReply", "GaugeError", "GaugeTransportError", "ReplyTimeout", "UnitNotShown"]


class GaugeTransportError(errors.TransportError):
    """The bytes to or from the gauge could not be moved: the port is gone (a pulled USB
    adapter, an unplugged pty, a closed socket) or could not be opened."""


class ReplyTimeout(errors.ReplyTimeout):
    """No complete CR LF-terminated line arrived before the deadline. `partial` holds what did
    arrive (the head of a reply split by a stall), which the driver never parses."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class GarbledReply(errors.GarbledReply):
    """The gauge answered something that is not the reply asked for (line noise, a wrong baud
    rate, a stale line of an earlier exchange)."""


class GaugeError(errors.InstrumentRefused):
    """The gauge rejected a command with one of its error codes (``*10`` illegal command, ...;
    Series 5 user's guide §9.8). `code` is the code as sent, e.g. ``"*10"``."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class UnitNotShown(errors.InstrumentError):
    """The gauge prints numbers without a unit (its serial data format omits units), so the
    driver cannot convert them to newtons. Enable units in the gauge's serial settings."""
