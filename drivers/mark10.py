"""Mark-10 Series 4/5 force gauge over its ASCII serial protocol (GCL2; landt_pressure.md §2.5).

The command table below is written to be read against the gauge manual (§9.8 of the Series 5
user's guide). Commands end in CR; replies end in CR LF and look like ``b'392.7 N\\r\\n'``
(compression positive, tension negative). Errors come back as ``*10`` (illegal command),
``*11``, ``*12``, ``*22``.

The port is opened by URL with `serial.serial_for_url`, so the same driver runs against a real
COM/tty port, a pty pair, ``socket://host:port`` or ``loop://`` in tests.

Failure policy: a reply that does not parse (garbled) or does not arrive in time is retried a
bounded number of times, dropping stale input between tries, because single corrupted lines
happen on long RS-232 runs; a gauge error code (``*NN``) or a closed port is not retried.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from typing import Any

import serial
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from labctl_drivers.interfaces import InstrumentError

if sys.platform != "win32":
    import termios
else:  # no termios on Windows; keep the except clause below valid
    termios = type("termios", (), {"error": OSError})

log = logging.getLogger(__name__)

# --- GCL2 command table (Series 5 user's guide §9.8) ------------------------------------------
COMMANDS: dict[str, str] = {
    "reading": "?",  # displayed reading (depends on mode)
    "current_reading": "?C",  # real-time reading, whatever the display shows
    "peak_tension": "?PT",
    "peak_compression": "?PC",
    "zero": "Z",  # zero (tare) the display; also clears peaks
    "clear_peaks": "CLR",
    "mode_current": "CUR",
    "model": "RM",
    "serial_number": "RS",
    "firmware": "RV",
    "settings": "LIST",
}
#: Unit-select commands and the unit strings the gauge prints in replies.
UNIT_COMMANDS: dict[str, str] = {
    "N": "N",
    "kN": "KN",
    "mN": "MN",
    "lbF": "LB",
    "ozF": "OZ",
    "kgF": "KG",
    "gF": "G",
}
#: Newtons per displayed unit (reply spellings, upper-cased).
TO_NEWTON: dict[str, float] = {
    "N": 1.0,
    "KN": 1000.0,
    "MN": 1e-3,
    "LBF": 4.4482216152605,
    "LB": 4.4482216152605,
    "OZF": 0.27801385095378,
    "OZ": 0.27801385095378,
    "KGF": 9.80665,
    "KG": 9.80665,
    "GF": 9.80665e-3,
    "G": 9.80665e-3,
}
GAUGE_ERRORS = {
    "*10": "illegal command",
    "*11": "command not applicable",
    "*12": "invalid specifier",
    "*22": "value too large",
}

_READING = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*([A-Za-z]*)\s*$")


class GarbledReply(InstrumentError):
    """The gauge answered something that is not a reading (noise, wrong baud, partial line)."""


class ReplyTimeout(InstrumentError):
    """No complete CR LF-terminated line arrived within the timeout."""


class GaugeError(InstrumentError):
    """The gauge rejected a command with ``*NN``."""


@dataclass(frozen=True)
class Reading:
    value: float
    unit: str  # as the gauge printed it ("N", "lbF", ...), "" in numeric-only mode

    @property
    def newtons(self) -> float:
        if not self.unit:
            raise InstrumentError("gauge is in numeric-only mode; its unit is unknown")
        return self.value * TO_NEWTON[self.unit.upper()]


def parse_reading(line: bytes) -> Reading:
    """Parse one reply line such as ``b'392.7 N\\r\\n'``; raise on anything else."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise GarbledReply(f"non-ASCII reply {line!r}") from exc
    if text in GAUGE_ERRORS:
        raise GaugeError(f"gauge error {text}: {GAUGE_ERRORS[text]}")
    m = _READING.match(text)
    if not m or (m.group(2) and m.group(2).upper() not in TO_NEWTON):
        raise GarbledReply(f"unparseable reply {line!r}")
    return Reading(float(m.group(1)), m.group(2))


class Mark10Gauge:
    """A Mark-10 force gauge on a serial port (or any pyserial URL)."""

    simulated = False

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 1.0,
        attempts: int = 3,
        retry_wait_s: float = 0.05,
        port: Any = None,
    ) -> None:
        """`baudrate` must match the gauge's menu setting (Series 5 default 115200, older 9600).
        `port` lets a caller hand in an already open pyserial object."""
        self.url = url
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.retry_wait_s = retry_wait_s
        self._port = port

    # -- connection -----------------------------------------------------------------------
    def open(self) -> None:
        if self._port is not None and self._port.is_open:
            return
        try:
            self._port = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                bytesize=8,
                parity="N",
                stopbits=1,
                timeout=self.timeout_s,
                write_timeout=self.timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise InstrumentError(f"cannot open Mark-10 at {self.url}: {exc}") from exc

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            finally:
                self._port = None

    def __enter__(self) -> Mark10Gauge:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- low level ------------------------------------------------------------------------
    def _write(self, command: str) -> None:
        if self._port is None:
            self.open()
        try:
            self._port.write(command.encode("ascii") + b"\r")
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise InstrumentError(f"Mark-10 at {self.url} disconnected: {exc}") from exc

    def _readline(self) -> bytes:
        try:
            line = self._port.read_until(b"\r\n")
        except (serial.SerialException, OSError) as exc:
            raise InstrumentError(f"Mark-10 at {self.url} disconnected: {exc}") from exc
        if not line.endswith(b"\r\n"):
            raise ReplyTimeout(
                f"no reply from Mark-10 at {self.url} within {self.timeout_s} s (got {line!r})"
            )
        return line

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_fixed(self.retry_wait_s),
            retry=retry_if_exception_type((GarbledReply, ReplyTimeout)),
            reraise=True,
            before_sleep=lambda rs: log.warning("Mark-10 retry after: %s", rs.outcome.exception()),
        )

    def _drop_stale_input(self) -> None:
        """Forget bytes left over from an earlier garbled or late reply. A port that cannot
        even be flushed is gone (a pty whose far end closed reports EIO via termios)."""
        if self._port is None:
            self.open()
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError, termios.error) as exc:
            raise InstrumentError(f"Mark-10 at {self.url} disconnected: {exc}") from exc

    def query_reading(self, command: str = COMMANDS["reading"]) -> Reading:
        """Send a reading command and parse its reply, with bounded retries."""

        def once() -> Reading:
            self._drop_stale_input()
            self._write(command)
            return parse_reading(self._readline())

        return self._retrying()(once)

    def query_text(self, command: str) -> str:
        """Send a command whose reply is free text (model, serial number, settings list)."""

        def once() -> str:
            self._drop_stale_input()
            self._write(command)
            text = self._readline().decode("ascii", "replace").strip()
            if text in GAUGE_ERRORS:
                raise GaugeError(f"gauge error {text} for {command!r}: {GAUGE_ERRORS[text]}")
            return text

        return self._retrying()(once)

    def command(self, command: str) -> Reading:
        """Send a setting command (no reply of its own) followed by a reading request: a
        ``*NN`` error for the setting comes back in place of the reading, so it cannot go
        unnoticed. Returns the reading taken after the setting."""
        self._drop_stale_input()
        self._write(command)
        self._write(COMMANDS["reading"])
        try:
            return parse_reading(self._readline())
        except (GarbledReply, ReplyTimeout):
            return self.query_reading()

    # -- public API -----------------------------------------------------------------------
    def read(self) -> Reading:
        """The displayed reading, in the gauge's current unit."""
        return self.query_reading(COMMANDS["reading"])

    def read_force_N(self) -> float:
        """Real-time force in newtons (compression positive)."""
        return self.query_reading(COMMANDS["current_reading"]).newtons

    def peaks_N(self) -> tuple[float, float]:
        """(peak tension, peak compression) in newtons since the last clear/zero."""
        return (
            self.query_reading(COMMANDS["peak_tension"]).newtons,
            self.query_reading(COMMANDS["peak_compression"]).newtons,
        )

    def units(self) -> str:
        """The unit the gauge is printing now."""
        return self.read().unit

    def set_units(self, unit: str) -> None:
        """Select the display unit ("N", "kN", "mN", "lbF", "ozF", "kgF", "gF")."""
        if unit not in UNIT_COMMANDS:
            raise ValueError(f"unit must be one of {sorted(UNIT_COMMANDS)}")
        got = self.command(UNIT_COMMANDS[unit]).unit
        if got.upper() != unit.upper():
            raise InstrumentError(f"Mark-10 unit is {got!r} after selecting {unit!r}")

    def zero(self) -> float:
        """Tare: zero the reading (do it with the frame unloaded). Returns the reading after."""
        return self.command(COMMANDS["zero"]).newtons

    tare = zero

    def clear_peaks(self) -> None:
        self.command(COMMANDS["clear_peaks"])

    def identify(self) -> str:
        return self.query_text(COMMANDS["model"])
