"""A simulated Mark-10 gauge that answers GCL2 in bytes, so simulation runs the real driver.

The gauge reads a force from `force_N` (the simulated spring stack, `labctl_drivers.sim.
spring_frame`) and answers the Series 5 command set (user's guide §9.8): ``?``, ``?C``, ``?PT``,
``?PC``, ``Z``, ``CLR``, ``CUR``/``PT``/``PC``, the unit commands, ``RM``, ``RS``, ``RV``,
``RN``, ``LIST``; anything else is ``*10`` (illegal command). Replies end in CR LF and print the
value at the resolution of the unit, then the unit, as the gauge does (``392.7 N``).

Faults are enacted as the hardware shows them, in bytes: ``garble`` (line noise instead of the
reply), ``silent`` (no reply: the driver times out), ``split`` (the head of the reply, a stall,
then the rest — the late remainder a naive driver parses as the next reading) and ``disconnect``
(the line is dropped for good). `inject()` queues them by hand; a `FaultPlan` hands them over by
time (``timeout`` → silent, ``garbled`` → garble, ``disconnect``).

Three ways to reach it, all below the real driver:

* ``transport="inprocess"``: registered under `name`; the driver opens ``simgauge://NAME`` and
  pyserial routes its bytes here (`protocol_simgauge`) without threads. Time is the gauge's
  `clock` (the bench's): on a `VirtualClock` nothing ever sleeps — a read that would wait jumps
  the clock to the reply or to its deadline, so a silent gauge costs simulated, not real, time.
* ``transport="pty"``: a real pty pair served by a thread (driver opens the slave's path).
* ``transport="socket"``: a TCP server (``socket://HOST:PORT``) served by a thread, usable from
  another process; ``python -m labctl_drivers.mark10.sim_gauge --port 5025`` serves one alone.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import serial

from labctl_drivers.clock import Clock, VirtualClock, WallClock
from labctl_drivers.sim.faults import FaultPlan

__all__ = ["FAULTS", "Emission", "SimulatedMark10", "lookup", "registered"]

#: unit command -> (reply spelling, newtons per unit, decimals printed). Resolution as an
#: M5-200 shows it (0.1 N); the reply spellings are those of the user's guide ("lbF", "N").
_UNITS: dict[str, tuple[str, float, int]] = {
    "N": ("N", 1.0, 1),
    "KN": ("kN", 1000.0, 4),
    "MN": ("mN", 1e-3, 0),
    "LB": ("lbF", 4.4482216152605, 2),
    "OZ": ("ozF", 0.27801385095378, 1),
    "KG": ("kgF", 9.80665, 3),
    "G": ("gF", 9.80665e-3, 0),
}
#: unit command -> the reply's printf template (`bytes % value` prints a float exactly as the
#: ``f"{value:.{decimals}f}"`` format spec does: both are Python's fixed-point float repr)
_REPLY_FORMATS: dict[str, bytes] = {
    unit: f"%.{decimals}f {spelling}\r\n".encode("ascii")
    for unit, (spelling, _, decimals) in _UNITS.items()
}
_MODES = ("CUR", "PT", "PC")
FAULTS = ("garble", "silent", "split", "disconnect")
_NOISE = b"\xfe#@7.\x01 N?\r\n"  # what a burst of line noise looks like on the wire
_REGISTRY: dict[str, SimulatedMark10] = {}
_REGISTRY_LOCK = threading.Lock()


class Emission(NamedTuple):
    """Bytes the gauge puts on the line at `at_s` (its clock); `hang_up` drops the line.

    A named tuple (immutable, like the frozen dataclass it was): two are made for every reply,
    and a frozen dataclass's constructor costs three times as much."""

    at_s: float
    data: bytes = b""
    hang_up: bool = False


@dataclass
class _Injected:
    kind: str
    stall_s: float = 1.0
    split_at: int = 2


def registered() -> list[str]:
    """Names of the in-process simulated gauges (``simgauge://NAME``)."""
    with _REGISTRY_LOCK:
        return sorted(_REGISTRY)


def lookup(name: str) -> SimulatedMark10:
    """The in-process gauge registered under `name`; `SerialException` if none (what pyserial
    raises for a port that does not exist)."""
    with _REGISTRY_LOCK:
        gauge = _REGISTRY.get(name)
    if gauge is None:
        raise serial.SerialException(
            f"no simulated gauge named {name!r} (registered: {', '.join(registered()) or 'none'})"
            "; start one with SimulatedMark10(..., transport='inprocess', name=...).start()")
    return gauge


class SimulatedMark10:
    """GCL2 gauge simulator. After `start()`, `url` is what the driver opens."""

    simulated = True

    def __init__(
        self,
        force_N: Callable[[], float] | float = 0.0,
        *,
        transport: str = "pty",
        name: str = "mark10",
        instrument: str | None = None,
        model: str = "M5-200",
        serial_number: str = "SIM0001",
        firmware: str = "1.00",
        clock: Clock | None = None,
        noise_N: float = 0.0,
        rng: np.random.Generator | None = None,
        faults: FaultPlan | None = None,
        latency_s: float = 0.0,
        baudrate: int = 115200,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`force_N` is the load on the cell (compression positive). `clock` is whose time the
        gauge keeps (default: a private virtual clock in-process, the wall clock for pty and
        socket, whose serving threads sleep for real). `noise_N` is the load cell's noise (one
        normal draw from `rng` per reading). `baudrate` is the gauge's menu setting: a driver
        opening ``simgauge://`` at another rate reads garbage, as on a real line. `name` is
        the in-process registration (``simgauge://NAME``); `instrument` is the name `faults`
        aim at (default: `name`), so a bench can scope registrations without renaming faults."""
        if transport not in ("inprocess", "pty", "socket"):
            raise ValueError("transport must be 'inprocess', 'pty' or 'socket'")
        if clock is None:
            clock = VirtualClock() if transport == "inprocess" else WallClock()
        elif clock.virtual and transport != "inprocess":
            raise ValueError("a pty or socket gauge is served by a thread in real time; "
                             "only transport='inprocess' runs on a virtual clock")
        self._force = force_N if callable(force_N) else (lambda: float(force_N))
        self.transport = transport
        self.name = name
        self.instrument = instrument or name
        self.model = model
        self.serial_number = serial_number
        self.firmware = firmware
        self.clock = clock
        self.noise_N = float(noise_N)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.faults = faults
        self.latency_s = float(latency_s)
        self.baudrate = baudrate
        self.host = host
        self.port = port
        self.unit = "N"
        self.mode = "CUR"
        self.offset_N = 0.0
        self.peak_tension_N = 0.0
        self.peak_compression_N = 0.0
        self.received: list[str] = []  # every command, as the gauge saw it
        self.unplugged = False
        self.url = ""
        self._injected: deque[_Injected] = deque()
        self._rx = b""
        self._lock = threading.RLock()
        self._link: _Link | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._server: socket.socket | None = None
        self._client: socket.socket | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> SimulatedMark10:
        """Make the gauge reachable at `url`; returns self."""
        if self.transport == "inprocess":
            with _REGISTRY_LOCK:
                other = _REGISTRY.get(self.name)
                if other is not None and other is not self:
                    raise ValueError(f"a simulated gauge named {self.name!r} is registered")
                _REGISTRY[self.name] = self
            self.url = f"simgauge://{self.name}"
            return self
        if self.transport == "pty":
            import tty

            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.url = os.ttyname(self._slave)
        else:
            self._server = socket.create_server((self.host, self.port))
            host, port = self._server.getsockname()[:2]
            self.url = f"socket://{host}:{port}"
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"sim-mark10-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the transport (and the in-process name)."""
        if self.transport == "inprocess":
            with _REGISTRY_LOCK:
                if _REGISTRY.get(self.name) is self:
                    del _REGISTRY[self.name]
            if self._link is not None:
                self._link.dead = "the simulated gauge was stopped"
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._close_transport()

    def __enter__(self) -> SimulatedMark10:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until `stop()` (for a gauge served alone in its own process)."""
        self._stop.wait()

    # -- faults ---------------------------------------------------------------------------
    def inject(self, fault: str, count: int = 1, *, stall_s: float = 1.0,
               split_at: int = 2) -> None:
        """Queue a fault for each of the next `count` replies: "garble", "silent", "split"
        (the first `split_at` bytes, a stall of `stall_s`, then the rest) or "disconnect"."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        with self._lock:
            self._injected.extend(_Injected(fault, stall_s, split_at) for _ in range(count))

    def disconnect(self) -> None:
        """Drop the link as a pulled cable would: the driver's next read/write fails, and the
        gauge cannot be opened again until `plug_in()` (in-process and socket gauges)."""
        self.unplugged = True
        if self.transport == "inprocess":
            if self._link is not None:
                self._link.dead = "the simulated gauge was unplugged"
            return
        if self.transport == "pty":  # the slave stays open: the driver's fd now sees EIO
            self._stop.set()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=2)
            self._close_transport(keep_slave=True)
            return
        self._drop_client()

    def press_data(self) -> None:
        """The operator presses DATA: the gauge transmits its displayed reading unasked
        (Series 5 user's guide §9.6), which the driver must not take for a reply."""
        with self._lock:
            reply = self.respond("?")
            assert reply is not None
            if self.transport == "inprocess":
                if self._link is not None:
                    self._link.push(Emission(self.clock.now(), reply))
            elif self.transport == "pty" and self._master is not None:
                os.write(self._master, reply)
            elif self._client is not None:
                self._client.sendall(reply)

    def plug_in(self) -> None:
        """Reconnect the cable (a pty gauge would need a new pty: not supported)."""
        self.unplugged = False

    # -- the gauge ------------------------------------------------------------------------
    def gauge_force_N(self) -> float:
        """What the load cell reads now, minus the tare offset (compression positive)."""
        raw = float(self._force())
        if self.noise_N:
            raw += float(self.rng.normal(0.0, self.noise_N))
        f = raw - self.offset_N
        if f > self.peak_compression_N:  # what max()/min() keep, without the calls
            self.peak_compression_N = f
        if f < self.peak_tension_N:
            self.peak_tension_N = f
        return f

    def _fmt(self, force_N: float) -> bytes:
        _, per_unit, decimals = _UNITS[self.unit]
        value = round(force_N / per_unit, decimals) + 0.0  # no "-0.0"
        return _REPLY_FORMATS[self.unit] % value

    def respond(self, command: str) -> bytes | None:
        """The reply to one command (None for a setting, which answers nothing)."""
        c = command.strip().upper()
        if c == "?":
            f = self.gauge_force_N()
            shown = {"CUR": f, "PT": self.peak_tension_N, "PC": self.peak_compression_N}
            return self._fmt(shown[self.mode])
        if c == "?C":
            return self._fmt(self.gauge_force_N())
        if c == "?PT":
            self.gauge_force_N()
            return self._fmt(self.peak_tension_N)
        if c == "?PC":
            self.gauge_force_N()
            return self._fmt(self.peak_compression_N)
        if c in ("?ET", "?A"):
            return b"*11\r\n"  # not in external-trigger / average mode
        if c == "Z":  # zero the display (the reading now), and clear the peaks
            self.offset_N = float(self._force()) + (
                float(self.rng.normal(0.0, self.noise_N)) if self.noise_N else 0.0)
            self.peak_tension_N = self.peak_compression_N = 0.0
            return None
        if c == "CLR":
            self.peak_tension_N = self.peak_compression_N = 0.0
            return None
        if c in _UNITS:
            self.unit = c
            return None
        if c in _MODES:
            self.mode = c
            return None
        if c == "RM":
            return f"{self.model}\r\n".encode("ascii")
        if c == "RS":
            return f"{self.serial_number}\r\n".encode("ascii")
        if c == "RV":
            return f"{self.firmware}\r\n".encode("ascii")
        if c == "RN":
            return b"Series 5 Force Gauge\r\n"
        if c == "LIST":
            return f"V{self.firmware};{_UNITS[self.unit][0].upper()};{self.mode};FLTC8;FLTP1;" \
                   f"AOUT00;AOFF5;FULL;MIT;POL;B0\r\n".encode("ascii")
        return b"*10\r\n"

    def _operation(self, command: str) -> str:
        c = command.strip().upper()
        if c.startswith("?"):
            return "read"
        return "identify" if c in ("RM", "RS", "RV", "RN", "LIST") else "set"

    def _fault_for(self, command: str, t: float) -> _Injected | None:
        if self._injected:
            return self._injected.popleft()
        if self.faults is None or not self.faults.faults:
            return None
        fault = self.faults.take(self.instrument, self._operation(command), t)
        if fault is None:
            return None
        kind = {"timeout": "silent", "garbled": "garble", "disconnect": "disconnect"}
        return _Injected(kind[fault.kind]) if fault.kind in kind else None

    def receive(self, data: bytes, t: float) -> list[Emission]:
        """Feed bytes from the driver at time `t`; return what the gauge sends back and when.
        Commands end in CR (an LF after it is ignored; §9.8)."""
        out: list[Emission] = []
        with self._lock:
            lines = (self._rx + data).split(b"\r")  # one split: a command a line, as a rule
            self._rx = lines.pop()  # what follows the last CR: the start of the next command
            for n, line in enumerate(lines):
                line = line.lstrip(b"\n")
                if not line:
                    continue
                command = line.decode("ascii", "replace")
                self.received.append(command)
                reply = self.respond(command)
                if reply is None:
                    continue
                at = t + self.latency_s
                fault = self._fault_for(command, t)
                if fault is None:
                    out.append(Emission(at, reply))
                elif fault.kind == "garble":
                    out.append(Emission(at, _NOISE))
                elif fault.kind == "split":
                    k = max(1, min(fault.split_at, len(reply) - 1))
                    out += [Emission(at, reply[:k]), Emission(at + fault.stall_s, reply[k:])]
                elif fault.kind == "disconnect":
                    self.unplugged = True
                    out.append(Emission(at, hang_up=True))
                    # the commands after it were never taken in: they stay as received
                    self._rx = b"\r".join([*lines[n + 1:], self._rx])
                    break
                # "silent": the reply is lost
        return out

    # -- in-process (pyserial URL handler) -------------------------------------------------
    def attach(self) -> _Link:
        """Open the gauge's port for `protocol_simgauge` (one opener at a time, like a tty
        opened exclusively)."""
        with self._lock:
            if self.unplugged:
                raise serial.SerialException(f"simulated gauge {self.name!r} is unplugged")
            if self._link is not None and self._link.dead is None:
                raise serial.SerialException(f"simulated gauge {self.name!r} is already open")
            self._rx = b""
            self._link = _Link(self)
            return self._link

    # -- threaded transports ----------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            fd = self._io_fd()
            if fd is None:
                continue
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:  # fd is this thread's own reference: disconnect() may drop the client
                data = self._recv(fd)
            except (OSError, ValueError):
                data = b""
            if not data:
                if self.transport == "socket":
                    self._drop_client()
                    continue
                return
            speed = float(getattr(self.clock, "speed", 1.0)) or 1.0  # a sped-up wall clock
            for e in self.receive(data, self.clock.now()):
                delay = (e.at_s - self.clock.now()) / speed
                if delay > 0 and self._stop.wait(delay):
                    return
                if e.hang_up:
                    if self.transport == "pty":
                        self._close_transport(keep_slave=True)
                        return
                    self._drop_client()
                    break
                try:
                    self._send(fd, e.data)
                except (OSError, ValueError):
                    break

    def _io_fd(self) -> int | socket.socket | None:
        if self.transport == "pty":
            return self._master
        if self._client is None:
            server = self._server
            if server is None:
                self._stop.wait(0.05)
                return None
            try:
                ready, _, _ = select.select([server], [], [], 0.05)
                if ready:
                    client, _ = server.accept()
                    if self.unplugged:
                        client.close()
                        return None
                    self._client = client
                    self._rx = b""
            except (OSError, ValueError):
                self._stop.wait(0.05)
            return None
        return self._client

    @staticmethod
    def _recv(fd: int | socket.socket) -> bytes:
        return fd.recv(1024) if isinstance(fd, socket.socket) else os.read(fd, 1024)

    @staticmethod
    def _send(fd: int | socket.socket, data: bytes) -> None:
        if isinstance(fd, socket.socket):
            fd.sendall(data)
        else:
            os.write(fd, data)

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                client.close()

    def _close_transport(self, keep_slave: bool = False) -> None:
        self._drop_client()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
            self._server = None
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        if self._slave is not None and not keep_slave:
            with contextlib.suppress(OSError):
                os.close(self._slave)
            self._slave = None


class _Link:
    """One opening of an in-process gauge: the bytes on the wire from gauge to driver, each
    chunk released at its time on the gauge's clock, in order (a stalled reply holds back the
    replies behind it, as on a serial line)."""

    def __init__(self, gauge: SimulatedMark10) -> None:
        self.gauge = gauge
        self.clock = gauge.clock
        self.baudrate = gauge.baudrate
        self.dead: str | None = None
        self._pending: deque[Emission] = deque()
        self._ready = bytearray()
        self._last_at = -math.inf

    def _check(self) -> None:
        if self.dead is not None:
            raise serial.SerialException(f"simgauge://{self.gauge.name}: {self.dead}")

    def _release(self) -> None:
        now = self.clock.now()
        while self._pending and self._pending[0].at_s <= now:
            e = self._pending.popleft()
            if e.hang_up:
                self.dead = "the line dropped (cable pulled)"
                self._pending.clear()
                break
            data = e.data
            if self.baudrate != self.gauge.baudrate:  # wrong baud rate: every byte misread
                data = bytes(b ^ 0x5A for b in data)
            self._ready += data

    def push(self, e: Emission) -> None:
        """Put bytes on the wire after everything already on it."""
        at = e.at_s
        if at < self._last_at:  # held back behind a stalled reply
            at = self._last_at
            e = Emission(at, e.data, e.hang_up)
        self._last_at = at
        self._pending.append(e)

    def write(self, data: bytes) -> None:
        self._check()
        now = self.clock.now()
        if self.baudrate != self.gauge.baudrate:
            data = bytes(b ^ 0x5A for b in data)  # the gauge sees garbage, no CR
        for e in self.gauge.receive(data, now):
            self.push(e)

    def available(self) -> int:
        self._release()
        if not self._ready:
            self._check()
        return len(self._ready)

    def read(self, size: int, timeout_s: float | None) -> bytes:
        """Up to `size` bytes: at once if some are on the wire, else wait (on the gauge's
        clock) for the next chunk or the timeout, whichever comes first."""
        self._release()
        if not self._ready:
            self._check()
            if timeout_s is None:  # "block": until the next chunk, if one is coming
                if self._pending:
                    self.clock.sleep_until(self._pending[0].at_s)
            elif timeout_s > 0:
                deadline = self.clock.now() + timeout_s
                target = self._pending[0].at_s if self._pending else math.inf
                self.clock.sleep_until(min(target, deadline))
            self._release()
            if not self._ready:
                self._check()
        if size >= len(self._ready):  # the usual read: everything that is there
            data = bytes(self._ready)
            self._ready.clear()
            return data
        data = bytes(self._ready[:size])
        del self._ready[:size]
        return data

    def drop(self) -> None:
        self._release()
        self._ready.clear()

    def close(self) -> None:
        if self.gauge._link is self:
            self.gauge._link = None
        self.dead = self.dead or "closed"


def main(argv: list[str] | None = None) -> None:
    """Serve one simulated gauge over TCP until interrupted (another process's gauge)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--force-N", type=float, default=0.0)
    p.add_argument("--model", default="M5-200")
    p.add_argument("--serial-number", default="SIM0001")
    args = p.parse_args(argv)
    gauge = SimulatedMark10(args.force_N, transport="socket", host=args.host, port=args.port,
                            model=args.model, serial_number=args.serial_number).start()
    print(gauge.url, flush=True)
    try:
        gauge.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        gauge.stop()


if __name__ == "__main__":
    main()
