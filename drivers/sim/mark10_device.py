"""A simulated Mark-10 gauge serving GCL2 on a real pty pair or a TCP socket.

Why a real transport: the driver's timeouts, partial lines and disconnect handling only get
exercised by a byte stream with real timing, which pyvisa-sim or `loop://` cannot give
(landt_pressure.md §3.6-3.7). The simulated bench hands in `force_N`, a callable returning the
spring force now, so the gauge reads what the simulated frame is doing.

Fault injection: `inject("garble")` answers the next request(s) with noise, `inject("silent")`
swallows them (the driver times out), `disconnect()` closes the device side.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from collections import deque
from collections.abc import Callable

_UNITS = {  # command -> (reply spelling, newtons per unit, decimals)
    "N": ("N", 1.0, 1),
    "KN": ("kN", 1000.0, 4),
    "MN": ("mN", 1e-3, 0),
    "LB": ("lbF", 4.4482216152605, 2),
    "OZ": ("ozF", 0.27801385095378, 1),
    "KG": ("kgF", 9.80665, 3),
    "G": ("gF", 9.80665e-3, 0),
}


class SimulatedMark10:
    """GCL2 gauge simulator. `url` is what the driver opens: a pty path or socket://host:port."""

    simulated = True

    def __init__(
        self,
        force_N: Callable[[], float] | float = 0.0,
        *,
        transport: str = "pty",
        model: str = "M5-200",
        serial_number: str = "SIM0001",
    ) -> None:
        if transport not in ("pty", "socket"):
            raise ValueError("transport must be 'pty' or 'socket'")
        self._force = force_N if callable(force_N) else (lambda: float(force_N))
        self.transport = transport
        self.model = model
        self.serial_number = serial_number
        self.unit = "N"
        self.offset_N = 0.0
        self.peak_tension_N = 0.0
        self.peak_compression_N = 0.0
        self.received: list[str] = []
        self._faults: deque[str] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._server: socket.socket | None = None
        self._client: socket.socket | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> SimulatedMark10:
        if self.transport == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.url = os.ttyname(self._slave)
        else:
            self._server = socket.create_server(("127.0.0.1", 0))
            self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="sim-mark10", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close_transport()

    def __enter__(self) -> SimulatedMark10:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, fault: str, count: int = 1) -> None:
        """Queue faults for the next `count` requests: "garble" or "silent"."""
        if fault not in ("garble", "silent"):
            raise ValueError("fault must be 'garble' or 'silent'")
        self._faults.extend([fault] * count)

    def disconnect(self) -> None:
        """Drop the link as a pulled cable would: the driver's next read/write fails."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close_transport(keep_slave=True)

    def _close_transport(self, keep_slave: bool = False) -> None:
        for s in (self._client, self._server):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self._client = self._server = None
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        if self._slave is not None and not keep_slave:
            with contextlib.suppress(OSError):
                os.close(self._slave)
            self._slave = None

    # -- protocol -------------------------------------------------------------------------
    def gauge_force_N(self) -> float:
        """What the load cell sees minus the tare offset (compression positive)."""
        f = float(self._force()) - self.offset_N
        self.peak_compression_N = max(self.peak_compression_N, f)
        self.peak_tension_N = min(self.peak_tension_N, f)
        return f

    def _fmt(self, force_N: float) -> bytes:
        name, per, dec = _UNITS[self.unit]
        return f"{force_N / per:.{dec}f} {name}\r\n".encode()

    def respond(self, cmd: str) -> bytes | None:
        """The reply to one CR-terminated command (None for commands that answer nothing)."""
        c = cmd.strip().upper()
        if c in ("?", "?C"):
            return self._fmt(self.gauge_force_N())
        if c == "?PT":
            self.gauge_force_N()
            return self._fmt(self.peak_tension_N)
        if c == "?PC":
            self.gauge_force_N()
            return self._fmt(self.peak_compression_N)
        if c == "Z":
            self.offset_N += self.gauge_force_N()
            self.peak_tension_N = self.peak_compression_N = 0.0
            return None
        if c == "CLR":
            self.peak_tension_N = self.peak_compression_N = 0.0
            return None
        if c in _UNITS:
            self.unit = c
            return None
        if c == "CUR":
            return None
        if c == "RM":
            return f"{self.model}\r\n".encode()
        if c == "RS":
            return f"{self.serial_number}\r\n".encode()
        if c == "RV":
            return b"V1.00\r\n"
        if c == "LIST":
            return f"V1.00;{_UNITS[self.unit][0].upper()};CUR;FLTC8;FLTP1\r\n".encode()
        return b"*10\r\n"

    def _reply(self, cmd: str) -> bytes:
        reply = self.respond(cmd)
        if reply is None:
            return b""
        if self._faults:
            fault = self._faults.popleft()
            if fault == "silent":
                return b""
            return b"\xfe#@7.\x01 N?\r\n"  # line noise
        return reply

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            fd = self._io_fd()
            if fd is None:
                continue
            r, _, _ = select.select([fd], [], [], 0.05)
            if not r:
                continue
            try:
                data = self._recv()
            except OSError:
                data = b""
            if not data:
                if self.transport == "socket":
                    self._drop_client()
                    buf = b""
                    continue
                return
            buf += data
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                line = line.lstrip(b"\n")  # CR LF terminated commands
                if not line:
                    continue
                cmd = line.decode("ascii", "replace")
                self.received.append(cmd)
                out = self._reply(cmd)
                if out:
                    self._send(out)
        # leave the transport to stop()/disconnect()

    def _io_fd(self) -> int | socket.socket | None:
        if self.transport == "pty":
            return self._master
        if self._client is None:
            assert self._server is not None
            r, _, _ = select.select([self._server], [], [], 0.05)
            if r:
                self._client, _ = self._server.accept()
            return None
        return self._client

    def _recv(self) -> bytes:
        if self.transport == "pty":
            assert self._master is not None
            return os.read(self._master, 1024)
        assert self._client is not None
        return self._client.recv(1024)

    def _send(self, data: bytes) -> None:
        if self.transport == "pty":
            assert self._master is not None
            os.write(self._master, data)
        else:
            assert self._client is not None
            self._client.sendall(data)

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None
