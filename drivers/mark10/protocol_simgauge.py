"""pyserial URL handler ``simgauge://NAME``: the in-process simulated Mark-10 behind pyserial.

pyserial's `serial_for_url` imports ``protocol_<scheme>`` from every package listed in
`serial.protocol_handler_packages` and instantiates its `Serial` class (pyserial docs, "URL
Handlers"; `labctl_drivers.mark10.transport` adds this package to that list). So the real
driver opens ``simgauge://frame-1`` exactly as it opens ``/dev/ttyUSB0`` and its bytes go
through pyserial's own API — `write`, `read` with a timeout, `in_waiting`,
`reset_input_buffer` — to the `SimulatedMark10` registered as ``frame-1``. No thread serves it:
a write hands the command to the gauge at once, and a read that has to wait moves the gauge's
clock (on a virtual clock, a jump; nothing sleeps for real).
"""

from __future__ import annotations

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from labctl_drivers.mark10 import sim_gauge

_PREFIX = "simgauge://"


class Serial(SerialBase):
    """A pyserial port whose far end is an in-process `SimulatedMark10`."""

    _link: sim_gauge._Link | None = None

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        gauge = sim_gauge.lookup(self.from_url(str(self._port)))
        self._link = gauge.attach()
        self.is_open = True
        self._reconfigure_port()

    def from_url(self, url: str) -> str:
        """The gauge's name from ``simgauge://NAME`` (case kept: names are case-sensitive)."""
        if not url.lower().startswith(_PREFIX) or len(url) == len(_PREFIX):
            raise SerialException(f"expected a URL of the form simgauge://NAME, not {url!r}")
        return url[len(_PREFIX):].rstrip("/")

    def _reconfigure_port(self) -> None:
        if self._link is not None:
            self._link.baudrate = self._baudrate

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        self.is_open = False

    def _open_link(self) -> sim_gauge._Link:
        if not self.is_open or self._link is None:
            raise PortNotOpenError()
        return self._link

    def now(self) -> float:
        """The gauge's clock: a transport measures its deadlines on it (virtual in sim)."""
        return self._open_link().clock.now()

    @property
    def in_waiting(self) -> int:
        return self._open_link().available()

    def read(self, size: int = 1) -> bytes:
        return self._open_link().read(size, self._timeout)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        link = self._open_link()
        payload = bytes(data)
        link.write(payload)
        return len(payload)

    def flush(self) -> None:
        self._open_link()._check()

    def reset_input_buffer(self) -> None:
        self._open_link().drop()

    def reset_output_buffer(self) -> None:
        self._open_link()

    # modem lines: the simulated cable has them all asserted
    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass
