"""Byte transports under the Mark-10 driver: what GCL2 needs from a port, and nothing more.

The driver only ever writes a command, reads one CR LF-terminated line before a deadline, looks
for (and drops) input it did not ask for, and closes the port. `ByteTransport` is that much, so
the same driver runs over

* pyserial, opened by URL with `serial.serial_for_url` (pyserial docs, "URL Handlers"): a device
  path (``/dev/ttyUSB0``, ``COM3``), a pty path, ``socket://host:port``, ``loop://``, and
  ``simgauge://NAME`` — the simulated gauge of this package reached in-process through
  pyserial's own API (`labctl_drivers.mark10.protocol_simgauge`);
* pyvisa, for VISA resource strings (``ASRL/dev/ttyUSB0::INSTR``, ``ASRL1::INSTR``), with the
  pure-Python pyvisa-py backend (``@py``) by default or any other VISA library, e.g.
  pyvisa-sim (``mark10_sim.yaml@sim``) in tests.

Every transport fault leaves here as `GaugeTransportError` (a `TransportError`) and every
missing or incomplete line as `ReplyTimeout`: pyserial's `SerialException`, `OSError`, pyvisa's
errors and `termios.error` — which pyserial lets through from `flush()` (``tcdrain``) and
`reset_input_buffer()` (``tcflush``) on a tty whose far end is gone — never reach the caller.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import serial

from labctl_drivers.mark10.errors import GaugeTransportError, ReplyTimeout

if sys.platform != "win32":
    import termios

    _TERMIOS_ERROR: type[BaseException] = termios.error
else:  # pragma: no cover - no termios on Windows
    _TERMIOS_ERROR = OSError

__all__ = [
    "CRLF", "SIMULATOR_SCHEME", "ByteTransport", "PySerialTransport", "VisaTransport",
    "is_visa_resource", "open_transport",
]

CRLF = b"\r\n"
#: The pyserial URL scheme of the in-process simulated gauge (``simgauge://NAME``).
SIMULATOR_SCHEME = "simgauge"
#: What a dead port raises inside pyserial (and pyvisa-py, which sits on pyserial).
_GONE: tuple[type[BaseException], ...] = (serial.SerialException, OSError, _TERMIOS_ERROR)

# pyserial looks for a module ``protocol_<scheme>`` in each package of this list (pyserial
# docs, "URL Handlers"); listing this package makes ``simgauge://`` a pyserial URL everywhere.
if __package__ and __package__ not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append(__package__)

_VISA_PREFIX = re.compile(r"^(ASRL|TCPIP|USB|GPIB|VXI|PXI)", re.IGNORECASE)


@runtime_checkable
class ByteTransport(Protocol):
    """A byte stream to one gauge. Lines are CR LF-terminated (Series 5 user's guide §9.8:
    "The gauge responses are always terminated with a Carriage Return/Line Feed")."""

    address: str
    simulated: bool  # the far end is this package's simulated gauge

    def write(self, data: bytes) -> None:
        """Send bytes (a whole command with its CR)."""
        ...

    def read_line(self, timeout_s: float) -> bytes:
        """The next complete line, CR LF included. Raises `ReplyTimeout` (with the bytes that
        did arrive as `partial`, consumed) when none is complete within `timeout_s`."""
        ...

    def drop_input(self) -> int:
        """Discard input that arrived unasked; return how many bytes were dropped (so the
        driver can tell a quiet line from one that had stale bytes on it)."""
        ...

    def close(self) -> None: ...


def is_visa_resource(address: str) -> bool:
    """True for a VISA resource string (``ASRL1::INSTR``), false for paths and pyserial URLs."""
    return "::" in address and "://" not in address.split("::", 1)[0] and bool(
        _VISA_PREFIX.match(address))


def open_transport(address: str, *, baudrate: int = 115200, timeout_s: float = 1.0,
                   visa_library: str | None = None) -> ByteTransport:
    """Open the transport an address names: VISA resource strings (or any address when a
    `visa_library` is given) through pyvisa, everything else through pyserial by URL."""
    if visa_library is not None or is_visa_resource(address):
        return VisaTransport(address, baudrate=baudrate, timeout_s=timeout_s,
                             visa_library=visa_library or "@py")
    return PySerialTransport(address, baudrate=baudrate, timeout_s=timeout_s)


class PySerialTransport:
    """A pyserial port opened by URL (8N1, the gauge's only framing; §9.8 of the guide).

    Lines are framed here rather than with pyserial's `read_until`, whose deadline restarts
    with every byte: this reads whatever is waiting (at least one byte) until the deadline of
    the whole line, keeping bytes after the CR LF for the next line. The deadline is measured
    on the port's own clock when it has one (``now()``: the in-process simulated gauge runs on
    the bench's clock, virtual in simulation), else on `time.monotonic`.
    """

    def __init__(self, url: str, *, baudrate: int = 115200, timeout_s: float = 1.0,
                 port: Any = None) -> None:
        """`port` hands in an already open pyserial object (tests); otherwise `url` is opened."""
        self.address = url
        self.simulated = url.lower().startswith(SIMULATOR_SCHEME + "://")
        if port is None:
            try:
                port = serial.serial_for_url(url, baudrate=baudrate, bytesize=8, parity="N",
                                             stopbits=1, timeout=timeout_s,
                                             write_timeout=timeout_s)
            except (*_GONE, ValueError) as exc:
                raise GaugeTransportError(f"cannot open Mark-10 at {url}: {exc}") from exc
        self._port = port
        self._now: Callable[[], float] = getattr(port, "now", time.monotonic)
        self._rest = bytearray()  # bytes read past the end of the last line

    def _gone(self, what: str, exc: BaseException) -> GaugeTransportError:
        return GaugeTransportError(f"Mark-10 at {self.address}: {what} failed, the port is "
                                   f"gone ({type(exc).__name__}: {exc})")

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except _GONE as exc:
            raise self._gone("write", exc) from exc

    def read_line(self, timeout_s: float) -> bytes:
        buf = self._rest
        deadline = self._now() + timeout_s
        remaining = timeout_s  # the whole timeout, the first time round
        port = self._port
        while True:
            end = buf.find(CRLF)
            if end >= 0:
                if end + 2 == len(buf):  # the usual case: the line and nothing after it
                    line = bytes(buf)
                    buf.clear()
                    return line
                line = bytes(buf[: end + 2])
                del buf[: end + 2]
                return line
            if remaining <= 0:
                break
            try:
                if port.timeout is None or abs(port.timeout - remaining) > 2e-3:
                    port.timeout = remaining  # reconfigures a tty: only when it matters
                chunk = port.read(max(1, port.in_waiting))
            except _GONE as exc:
                raise self._gone("read", exc) from exc
            if not chunk:
                break
            buf += chunk
            remaining = deadline - self._now()
        partial = bytes(buf)
        buf.clear()
        raise ReplyTimeout(f"no complete reply from Mark-10 at {self.address} within "
                           f"{timeout_s:g} s (got {partial!r})", partial)

    def drop_input(self) -> int:
        dropped = len(self._rest)
        self._rest.clear()
        try:  # socket:// reports 1 for "some" (pyserial protocol_socket): loop, bounded
            for _ in range(4096):
                waiting = self._port.in_waiting
                if not waiting:
                    break
                dropped += len(self._port.read(waiting))
        except _GONE as exc:
            raise self._gone("read", exc) from exc
        return dropped

    def close(self) -> None:
        """Close; a port that is already gone is closed too (nothing left to report)."""
        try:
            self._port.close()
        except _GONE:
            pass


class VisaTransport:
    """A VISA resource through pyvisa (pyvisa docs, "Resources"): ``@py`` is pyvisa-py, which
    opens ASRL resources with pyserial (so ``ASRL/dev/pts/3::INSTR`` reaches a pty), ``@sim``
    is pyvisa-sim. Reads stop on the line feed of the gauge's CR LF (VI_ATTR_TERMCHAR)."""

    def __init__(self, resource: str, *, baudrate: int = 115200, timeout_s: float = 1.0,
                 visa_library: str = "@py") -> None:
        import pyvisa

        self._pyvisa = pyvisa
        self.address = resource
        self.simulated = visa_library.endswith("@sim") or SIMULATOR_SCHEME + "://" in resource
        self._errors: tuple[type[BaseException], ...] = (pyvisa.errors.Error, *_GONE)
        try:
            self._rm = pyvisa.ResourceManager(visa_library)
            self._res: Any = self._rm.open_resource(resource)
            self._res.read_termination = "\r\n"  # termchar = LF, enabled
            self._res.write_termination = ""  # the driver sends its own CR
            self._timeout_s = timeout_s
            self._res.timeout = timeout_s * 1000.0
            if resource.upper().startswith("ASRL"):
                try:
                    self._res.baud_rate = baudrate
                except (pyvisa.errors.Error, NotImplementedError, AttributeError):
                    pass  # a simulated resource has no baud rate to set
        except (*self._errors, ValueError, OSError) as exc:
            raise GaugeTransportError(f"cannot open Mark-10 at {resource} "
                                      f"({visa_library}): {exc}") from exc

    def _gone(self, what: str, exc: BaseException) -> GaugeTransportError:
        return GaugeTransportError(f"Mark-10 at {self.address}: {what} failed "
                                   f"({type(exc).__name__}: {exc})")

    def _is_timeout(self, exc: BaseException) -> bool:
        code = getattr(exc, "error_code", None)
        return code == self._pyvisa.constants.StatusCode.error_timeout

    def write(self, data: bytes) -> None:
        try:
            self._res.write_raw(data)
        except self._errors as exc:
            raise self._gone("write", exc) from exc

    def read_line(self, timeout_s: float) -> bytes:
        try:
            if timeout_s != self._timeout_s:
                self._res.timeout = max(timeout_s, 1e-3) * 1000.0
                self._timeout_s = timeout_s
            line: bytes = self._res.read_raw()
        except self._errors as exc:
            if self._is_timeout(exc):
                raise ReplyTimeout(f"no complete reply from Mark-10 at {self.address} within "
                                   f"{timeout_s:g} s", b"") from exc
            raise self._gone("read", exc) from exc
        if not line.endswith(CRLF):
            raise ReplyTimeout(f"incomplete reply from Mark-10 at {self.address}: {line!r}",
                               line)
        return line

    def drop_input(self) -> int:
        try:
            waiting = int(self._res.bytes_in_buffer)
        except (*self._errors, AttributeError, NotImplementedError, TypeError):
            waiting = 0
        if waiting:
            try:
                return len(self._res.read_bytes(waiting))
            except self._errors as exc:
                raise self._gone("read", exc) from exc
        try:
            self._res.flush(self._pyvisa.constants.BufferOperation.discard_read_buffer)
        except (*self._errors, NotImplementedError):
            pass  # nothing to discard, or a resource (pyvisa-sim) that cannot say
        return 0

    def close(self) -> None:
        try:
            self._res.close()
        except (*self._errors, NotImplementedError):
            pass
