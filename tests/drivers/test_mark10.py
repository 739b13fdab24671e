"""The Mark-10 GCL2 driver against simulated gauges on every transport it supports.

The simulated gauge (`labctl_drivers.mark10.sim_gauge`) is reached in-process through the
pyserial URL ``simgauge://``, over a real pty and over a real TCP socket; the split-reply test
also uses an independent scripted peer on a raw pty, so the driver's resynchronisation is not
only checked against the simulator written beside it.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from labctl_drivers import errors
from labctl_drivers.clock import VirtualClock
from labctl_drivers.mark10 import (
    LBF_N,
    GarbledReply,
    GaugeError,
    GaugeTransportError,
    Mark10Gauge,
    PySerialTransport,
    ReplyTimeout,
    UnitNotShown,
    capacity_from_model,
    is_visa_resource,
    parse_reading,
    sim_gauge,
)
from labctl_drivers.mark10.gauge import parse_text_reply
from labctl_drivers.mark10.sim_gauge import SimulatedMark10
from labctl_drivers.sim.faults import Fault, FaultPlan

POSIX = sys.platform != "win32"
TRANSPORTS = ["inprocess", "pty", "socket"] if POSIX else ["inprocess", "socket"]
FORCE = 392.7  # 5 MPa on a 10 mm electrode


class Spring:
    """The simulated bench's spring force, changeable during a test."""

    def __init__(self, force_N: float) -> None:
        self.force_N = force_N

    def __call__(self) -> float:
        return self.force_N


@pytest.fixture(params=TRANSPORTS)
def bench(request: pytest.FixtureRequest) -> Iterator[tuple[Spring, SimulatedMark10, Mark10Gauge]]:
    spring = Spring(FORCE)
    sim = SimulatedMark10(spring, transport=request.param,
                          name=f"t-{request.node.name}").start()
    gauge = Mark10Gauge(sim.url, timeout_s=0.3, attempts=3, quiet_s=0.02)
    gauge.open()
    yield spring, sim, gauge
    gauge.close()
    sim.stop()


# -- parsing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "value", "unit", "newtons"),
    [
        (b"392.7 N\r\n", 392.7, "N", 392.7),
        (b"0.3927 kN\r\n", 0.3927, "kN", 392.7),
        (b"-1500 mN\r\n", -1500.0, "mN", -1.5),
        (b"-1.25 lbF\r\n", -1.25, "lbF", -1.25 * LBF_N),
        (b"16.0 ozF\r\n", 16.0, "ozF", LBF_N),
        (b"80.08 kgF\r\n", 80.08, "kgF", 80.08 * 9.80665),
        (b"500 gF\r\n", 500.0, "gF", 4.903325),
        (b"+4.285 N\r\n", 4.285, "N", 4.285),  # Series 4 guide example, with a sign
        (b"-18.78 lbF\r\n", -18.78, "lbF", -18.78 * LBF_N),
        (b".5 N\r\n", 0.5, "N", 0.5),
    ],
)
def test_parse_every_unit(line: bytes, value: float, unit: str, newtons: float) -> None:
    r = parse_reading(line)
    assert (r.value, r.unit) == (value, unit)
    assert r.newtons == pytest.approx(newtons, rel=1e-12)


def test_parse_rejects_what_is_not_a_reading() -> None:
    for bad in (b"\xfe#@7.\x01 N?\r\n", b"N 392\r\n", b"392.7 furlongs\r\n", b"\r\n",
                b"M5-200\r\n", b"39", b"392.7 N 1\r\n"):
        with pytest.raises(GarbledReply):
            parse_reading(bad)
    for code in (b"*10\r\n", b"*11\r\n", b"*12\r\n", b"*22\r\n"):
        with pytest.raises(GaugeError) as ei:
            parse_reading(code)
        assert isinstance(ei.value, errors.InstrumentRefused)
    with pytest.raises(UnitNotShown):
        _ = parse_reading(b"392.7\r\n").newtons  # numeric-only data format


def _outcome(parse: Callable[[bytes], object], line: bytes) -> object:
    try:
        return parse(line)
    except errors.InstrumentError as exc:
        return (type(exc), str(exc))


def test_parsing_bytes_agrees_with_the_text_reference() -> None:
    """`parse_reading` matches a well-formed reply on its bytes; the decoded-text parse
    (`parse_text_reply`) is the reference: the same Reading or the same error for every line,
    whitespace, signs, units known and unknown, error codes, noise and non-ASCII bytes."""
    rnd = random.Random(7)
    pieces = ["", " ", "  ", "\t", "\x0b", "\x0c", "\r", "\n", "\x1c", "\x85", "+", "-", ".",
              "0", "7", "39", "392.7", ".5", "5.", "1e3", "nan", "inf", "*10", "*22", "N", "n",
              "kN", "lbF", "LB", "ozf", "g", "furlongs", "M5-200", "\xfe", "#", "\x01", "\u00e9"]
    lines = [b"392.7 N\r\n", b"-0.0 N\r\n", b" 12 \r\n", b"*10\r\n", b"\r\n", b"\xfe N\r\n"]
    for _ in range(4000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 5)))
        lines.append(text.encode("latin-1") + b"\r\n")
    for line in lines:
        assert _outcome(parse_reading, line) == _outcome(parse_text_reply, line), line


def test_replies_print_as_the_format_spec_does() -> None:
    """The simulated gauge prints with printf templates (`bytes % value`); a reply must be the
    bytes of the format spec ``f"{value:.{decimals}f} {unit}"``."""
    rnd = random.Random(3)
    sim = SimulatedMark10(0.0, transport="inprocess", name="fmt")
    values = [0.0, -0.0, 0.05, -0.05, 0.15, 1e-9, 123456.789, -2.5, 1e16, 0.45, 2.675]
    values += [rnd.uniform(-5000.0, 5000.0) for _ in range(2000)]
    for unit, (spelling, per_unit, decimals) in sim_gauge._UNITS.items():
        sim.unit = unit
        for f in values:
            shown = round(f / per_unit, decimals) + 0.0
            assert sim._fmt(f) == f"{shown:.{decimals}f} {spelling}\r\n".encode("ascii")


def test_commands_after_a_dropped_line_stay_unread() -> None:
    """Several commands in one write: each is answered in order; when the line drops on one of
    them, the commands after it were never taken in."""
    sim = SimulatedMark10(FORCE, transport="inprocess", name="several")
    out = sim.receive(b"RM\r?C\rRS\r?", 1.0)
    assert [e.data for e in out] == [b"M5-200\r\n", b"392.7 N\r\n", b"SIM0001\r\n"]
    assert sim.received == ["RM", "?C", "RS"] and sim._rx == b"?"
    sim.inject("disconnect")
    out = sim.receive(b"C\rRV\rRN\r?", 2.0)
    assert [e.hang_up for e in out] == [True] and sim.received[-1] == "?C"
    assert sim._rx == b"RV\rRN\r?"


def test_error_classes_are_the_shared_hierarchy() -> None:
    assert issubclass(GarbledReply, errors.GarbledReply)
    assert issubclass(ReplyTimeout, errors.ReplyTimeout)
    assert issubclass(GaugeError, errors.InstrumentRefused)
    assert issubclass(GaugeTransportError, errors.TransportError)
    assert issubclass(UnitNotShown, errors.InstrumentError)


@pytest.mark.parametrize(
    ("model", "capacity"),
    [("M5-200", 200 * LBF_N), ("M5-1000", 1000 * LBF_N), ("M4-50", 50 * LBF_N),
     ("M5-025", 0.25 * LBF_N), ("M5-05", 0.5 * LBF_N), ("MR01-300", None), ("", None)],
)
def test_capacity_from_model(model: str, capacity: float | None) -> None:
    assert capacity_from_model(model) == (None if capacity is None else pytest.approx(capacity))


def test_visa_resource_strings_are_told_from_pyserial_urls() -> None:
    for visa in ("ASRL1::INSTR", "ASRL/dev/ttyUSB0::INSTR", "asrlCOM3::INSTR"):
        assert is_visa_resource(visa)
    for url in ("/dev/ttyUSB0", "COM3", "socket://[::1]:5025", "simgauge://f", "loop://"):
        assert not is_visa_resource(url)


# -- the driver on every transport -------------------------------------------------------------
def test_reads_units_and_identity(bench) -> None:
    spring, sim, gauge = bench
    assert gauge.read_force_N() == pytest.approx(FORCE)
    assert gauge.units() == "N"
    ident = gauge.identity()
    assert (ident.model, ident.serial_number, ident.firmware) == ("M5-200", "SIM0001", "1.00")
    assert ident.capacity_N == pytest.approx(889.64, abs=0.01)
    assert gauge.simulated
    gauge.set_units("lbF")
    assert gauge.units() == "lbF"
    assert gauge.read().value == pytest.approx(FORCE / LBF_N, abs=0.006)
    assert gauge.read_force_N() == pytest.approx(FORCE, abs=0.03)  # converted back to N
    for unit, tol in (("kN", 1e-4), ("kgF", 0.005), ("ozF", 0.03), ("gF", 0.005), ("N", 0.05)):
        gauge.set_units(unit)
        assert gauge.read_force_N() == pytest.approx(FORCE, abs=tol), unit
    spring.force_N = 157.1
    assert gauge.read_force_N() == pytest.approx(157.1)
    assert gauge.settings()[1] == "N"
    # one command per reading on a healthy line: the only probes are the first exchange's
    assert sim.received[:3] == ["RM", "RM", "?C"]
    assert gauge.resyncs == 1


def test_tare_and_peaks(bench) -> None:
    spring, _sim, gauge = bench
    assert gauge.tare() == pytest.approx(0.0)
    spring.force_N = 400.0
    assert gauge.read_force_N() == pytest.approx(7.3, abs=0.05)
    assert gauge.peaks_N()[1] == pytest.approx(7.3, abs=0.05)
    gauge.clear_peaks()


def test_gauge_error_code_is_not_retried(bench) -> None:
    _, sim, gauge = bench
    with pytest.raises(GaugeError, match=r"\*10"):
        gauge.query_text("XYZ")
    assert sim.received.count("XYZ") == 1
    assert gauge.read_force_N() == pytest.approx(FORCE)  # still in sync after a refusal


def test_garbled_reply_retried_then_error(bench) -> None:
    _, sim, gauge = bench
    sim.inject("garble", 1)
    assert gauge.read_force_N() == pytest.approx(FORCE)  # second try succeeded
    sim.inject("garble", 10)
    with pytest.raises(errors.InstrumentError) as ei:
        gauge.read_force_N()
    assert isinstance(ei.value, errors.GarbledReply | errors.ReplyTimeout)
    assert sim.received.count("?C") <= 1 + 1 + 1 + 3  # bounded: at most `attempts` tries


def test_timeout_then_recovery(bench) -> None:
    _, sim, gauge = bench
    assert gauge.read_force_N() == pytest.approx(FORCE)
    sim.inject("silent", 3)  # the reading, then both resynchronisation probes
    t0 = time.monotonic()
    with pytest.raises(ReplyTimeout):
        gauge.read_force_N()
    assert time.monotonic() - t0 < 3 * 0.3 + 1.0
    assert gauge.read_force_N() == pytest.approx(FORCE)  # recovers once the gauge answers


def test_split_reply_never_yields_a_wrong_force(bench) -> None:
    """``39`` … stall longer than the timeout … ``2.7 N\\r\\n``: the remainder is discarded."""
    _, sim, gauge = bench
    assert gauge.read_force_N() == pytest.approx(FORCE)  # in sync, the probe learned
    for stall_s in (0.45, 1.0):
        sim.inject("split", stall_s=stall_s, split_at=2)
        good = 0
        for _ in range(4):
            try:
                f = gauge.read_force_N()
            except errors.InstrumentError as exc:
                assert isinstance(exc, errors.ReplyTimeout | errors.GarbledReply)
                continue
            assert f == pytest.approx(FORCE), f"wrong force {f} after a split reply"
            good += 1
        assert good >= 2
    assert gauge.dropped_lines >= 2  # the remainders were read and thrown away


def test_split_during_the_first_exchange(bench) -> None:
    """A stall while the driver is still learning the gauge's answer to RM: ``M5`` … ``-200``
    is not taken for the model (nor for a number); the driver recovers."""
    _, sim, gauge = bench
    sim.inject("split", stall_s=0.45, split_at=2)
    outcomes: list[float | str] = []
    for _ in range(3):
        try:
            outcomes.append(gauge.read_force_N())
        except errors.InstrumentError as exc:
            outcomes.append(type(exc).__name__)
    forces = [o for o in outcomes if isinstance(o, float)]
    assert forces and all(f == pytest.approx(FORCE) for f in forces), outcomes
    assert gauge.identity().model == "M5-200"


def test_unasked_line_takes_the_driver_out_of_sync(bench) -> None:
    """An operator pressing DATA sends a reading nobody asked for: resync, don't misattribute."""
    spring, sim, gauge = bench
    assert gauge.read_force_N() == pytest.approx(FORCE)
    spring.force_N = 100.0
    sim.press_data()  # "100.0 N" on the line, unasked
    time.sleep(0.05 if sim.transport != "inprocess" else 0.0)
    spring.force_N = 200.0
    assert gauge.read_force_N() == pytest.approx(200.0)
    assert gauge.resyncs == 2  # the unasked bytes were seen, dropped, and the line resynced
    sim.inject("split", stall_s=0.05, split_at=3)  # a stall shorter than the timeout
    assert gauge.read_force_N() == pytest.approx(200.0)


def test_disconnect_is_a_transport_error(bench) -> None:
    _, sim, gauge = bench
    assert gauge.read_force_N() == pytest.approx(FORCE)
    sim.disconnect()
    for _ in range(2):  # the first and every later request
        with pytest.raises(errors.TransportError):
            gauge.read_force_N()
    gauge.close()


def test_open_failure_is_transport_error() -> None:
    with pytest.raises(errors.TransportError):
        Mark10Gauge("/dev/does-not-exist-labctl", timeout_s=0.1).open()
    with pytest.raises(errors.TransportError):
        Mark10Gauge("simgauge://nobody-registered", timeout_s=0.1).open()


def test_loop_url_framing() -> None:
    """`loop://` echoes our own command, which never ends in CR LF: timeouts, bounded."""
    gauge = Mark10Gauge("loop://", timeout_s=0.05, attempts=2, quiet_s=0.01)
    gauge.open()
    with pytest.raises(errors.ReplyTimeout):
        gauge.read_force_N()
    gauge.close()


# -- an independent peer: a scripted "gauge" on a raw pty -------------------------------------
@pytest.mark.skipif(not POSIX, reason="needs a pty")
def test_split_reply_from_an_independent_pty_peer() -> None:
    """A peer written here, not the package's simulator: it answers RM with the model and
    ?C with ``392.7 N``, the first ?C split after two bytes by a 0.6 s stall (timeout 0.2 s)."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    stop = threading.Event()

    def peer() -> None:
        buf = b""
        split_done = False
        while not stop.is_set():
            import select

            r, _, _ = select.select([master], [], [], 0.05)
            if not r:
                continue
            try:
                buf += os.read(master, 256)
            except OSError:
                return
            while b"\r" in buf:
                cmd, buf = buf.split(b"\r", 1)
                if cmd == b"RM":
                    os.write(master, b"M5-200\r\n")
                elif cmd == b"?C" and not split_done:
                    split_done = True
                    os.write(master, b"39")
                    stop.wait(0.6)
                    os.write(master, b"2.7 N\r\n")
                elif cmd == b"?C":
                    os.write(master, b"392.7 N\r\n")
                else:
                    os.write(master, b"*10\r\n")

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    gauge = Mark10Gauge(path, timeout_s=0.2, attempts=2, quiet_s=0.02)
    try:
        outcomes: list[float | str] = []
        for _ in range(4):
            try:
                outcomes.append(gauge.read_force_N())
            except errors.InstrumentError as exc:
                outcomes.append(type(exc).__name__)
        forces = [o for o in outcomes if isinstance(o, float)]
        assert forces and all(f == pytest.approx(FORCE) for f in forces), outcomes
    finally:
        gauge.close()
        stop.set()
        thread.join(2)
        os.close(master)
        os.close(slave)


# -- unplugged tty: never a bare termios.error --------------------------------------------------
@pytest.mark.skipif(not POSIX, reason="needs a pty")
def test_unplugged_pty_raises_instrument_errors_only() -> None:
    sim = SimulatedMark10(FORCE, transport="pty").start()
    transport = PySerialTransport(sim.url, timeout_s=0.2)
    gauge = Mark10Gauge(sim.url, transport=transport, timeout_s=0.2, quiet_s=0.02)
    assert gauge.read_force_N() == pytest.approx(FORCE)
    sim.disconnect()  # master closed: the slave side now gets EIO, tcdrain/tcflush fail
    for op in (lambda: transport.write(b"?C\r"), lambda: transport.read_line(0.1),
               transport.drop_input, gauge.read_force_N, gauge.identity):
        try:
            op()
        except errors.InstrumentError as exc:
            assert isinstance(exc, errors.TransportError | errors.ReplyTimeout), exc
        except BaseException as exc:  # termios.error, SerialException, OSError...
            pytest.fail(f"{type(exc).__module__}.{type(exc).__name__} escaped: {exc}")
    transport.close()  # closing a dead port is quiet
    sim.stop()


@pytest.mark.skipif(not POSIX, reason="termios")
def test_termios_error_from_any_port_call_becomes_transport_error() -> None:
    import termios

    class DeadPort:
        """A pyserial port whose tty was unplugged: every call fails as the kernel does."""

        timeout = 0.1

        @property
        def in_waiting(self) -> int:
            raise termios.error(5, "Input/output error")

        def read(self, size: int = 1) -> bytes:
            raise termios.error(5, "Input/output error")

        def write(self, data: bytes) -> int:
            raise termios.error(5, "Input/output error")

        def flush(self) -> None:
            raise termios.error(5, "Input/output error")

        def close(self) -> None:
            raise termios.error(5, "Input/output error")

    t = PySerialTransport("/dev/ttyUSB9", port=DeadPort())
    for op in (lambda: t.write(b"?C\r"), lambda: t.read_line(0.1), t.drop_input):
        with pytest.raises(GaugeTransportError):
            op()
    t.close()


# -- the in-process path never sleeps on a virtual clock ---------------------------------------
def test_inprocess_silent_gauge_costs_virtual_time_only() -> None:
    clock = VirtualClock()
    sim = SimulatedMark10(FORCE, transport="inprocess", name="virtual-silent",
                          clock=clock).start()
    gauge = Mark10Gauge(sim.url, timeout_s=5.0, attempts=3)
    try:
        assert gauge.read_force_N() == pytest.approx(FORCE)
        sim.inject("silent", 100)
        t0, v0 = time.perf_counter(), clock.now()
        with pytest.raises(ReplyTimeout):
            gauge.read_force_N()
        assert time.perf_counter() - t0 < 0.5  # 3 tries of 5 s each, none of them real
        assert clock.now() - v0 == pytest.approx(3 * 5.0)
    finally:
        gauge.close()
        sim.stop()


def test_fault_plan_faults_are_enacted_in_bytes() -> None:
    clock = VirtualClock()
    plan = FaultPlan([
        Fault("garbled", at_s=10.0, instrument="fp", operation="read"),
        Fault("timeout", at_s=20.0, instrument="fp", operation="read"),
        Fault("disconnect", at_s=30.0, instrument="fp", count=-1),
    ])
    sim = SimulatedMark10(FORCE, transport="inprocess", name="bench7.fp", instrument="fp",
                          clock=clock, faults=plan).start()  # registered apart, aimed at "fp"
    gauge = Mark10Gauge(sim.url, timeout_s=0.5)
    try:
        assert gauge.read_force_N() == pytest.approx(FORCE)
        clock.sleep_until(10.0)
        assert gauge.read_force_N() == pytest.approx(FORCE)  # garbled once, retried
        clock.sleep_until(20.0)
        assert gauge.read_force_N() == pytest.approx(FORCE)  # silent once, retried
        assert plan.faults[0].fired == 1 and plan.faults[1].fired == 1
        clock.sleep_until(30.0)
        with pytest.raises(errors.TransportError):
            gauge.read_force_N()
        gauge.close()
        with pytest.raises(errors.TransportError):  # unplugged: cannot be opened again
            gauge.open()
    finally:
        sim.stop()


def test_wrong_baud_rate_reads_garbage_not_values() -> None:
    sim = SimulatedMark10(FORCE, transport="inprocess", name="baud", baudrate=9600).start()
    gauge = Mark10Gauge(sim.url, baudrate=115200, timeout_s=0.2, attempts=2)
    try:
        with pytest.raises(errors.InstrumentError):
            gauge.read_force_N()
    finally:
        gauge.close()
        sim.stop()
