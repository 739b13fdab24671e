"""Mark-10 driver against the simulated gauge over a real pty and over socket://; pressure frame."""

from __future__ import annotations

import math
import sys
import time

import pytest

from labctl_drivers.interfaces import InstrumentError, PressureFrame
from labctl_drivers.mark10 import GarbledReply, GaugeError, Mark10Gauge, ReplyTimeout, parse_reading
from labctl_drivers.pressure_frame import SpringPressureFrame
from labctl_drivers.sim.mark10_device import SimulatedMark10

TRANSPORTS = ["pty", "socket"] if sys.platform != "win32" else ["socket"]


class Spring:
    """The simulated bench's spring force, changeable during a test."""

    def __init__(self, force_N: float) -> None:
        self.force_N = force_N

    def __call__(self) -> float:
        return self.force_N

    read_force_N = __call__  # also usable directly as a ForceGauge


@pytest.fixture(params=TRANSPORTS)
def bench(request: pytest.FixtureRequest):
    spring = Spring(392.7)
    sim = SimulatedMark10(spring, transport=request.param).start()
    gauge = Mark10Gauge(sim.url, timeout_s=0.3, attempts=3, retry_wait_s=0.01)
    gauge.open()
    yield spring, sim, gauge
    gauge.close()
    sim.stop()


def test_parse_reading() -> None:
    r = parse_reading(b"392.7 N\r\n")
    assert (r.value, r.unit, r.newtons) == (392.7, "N", 392.7)
    assert parse_reading(b"-1.25 lbF\r\n").newtons == pytest.approx(-5.5603, rel=1e-4)
    assert parse_reading(b"80.08 kgF\r\n").newtons == pytest.approx(785.3, rel=1e-3)
    for bad in (b"\xfe#@7.\x01 N?\r\n", b"N 392\r\n", b"392.7 furlongs\r\n", b"\r\n"):
        with pytest.raises(GarbledReply):
            parse_reading(bad)
    with pytest.raises(GaugeError):
        parse_reading(b"*10\r\n")


def test_reads_units_and_identity(bench) -> None:
    spring, sim, gauge = bench
    assert gauge.read_force_N() == pytest.approx(392.7)
    assert gauge.units() == "N"
    assert gauge.identify() == "M5-200"
    gauge.set_units("lbF")
    assert gauge.units() == "lbF"
    assert gauge.read().value == pytest.approx(392.7 / 4.4482216152605, abs=0.006)
    assert gauge.read_force_N() == pytest.approx(392.7, abs=0.03)  # converted back to N
    gauge.set_units("N")
    spring.force_N = 157.1
    assert gauge.read_force_N() == pytest.approx(157.1)
    assert sim.received[:2] == ["?C", "?"]


def test_tare_and_peaks(bench) -> None:
    spring, _sim, gauge = bench
    assert gauge.tare() == pytest.approx(0.0)
    spring.force_N = 400.0
    assert gauge.read_force_N() == pytest.approx(7.3, abs=0.05)
    assert gauge.peaks_N()[1] == pytest.approx(7.3, abs=0.05)


def test_gauge_error_code_is_not_retried(bench) -> None:
    _, sim, gauge = bench
    with pytest.raises(GaugeError, match=r"\*10"):
        gauge.query_text("XYZ")
    assert sim.received.count("XYZ") == 1


def test_garbled_reply_retried_then_error(bench) -> None:
    _, sim, gauge = bench
    sim.inject("garble", 1)
    assert gauge.read_force_N() == pytest.approx(392.7)  # second try succeeded
    sim.inject("garble", 10)
    with pytest.raises(InstrumentError) as ei:
        gauge.read_force_N()
    assert isinstance(ei.value, GarbledReply)
    assert sim.received.count("?C") == 1 + 1 + 3  # bounded: exactly `attempts` tries


def test_timeout(bench) -> None:
    _, sim, gauge = bench
    sim.inject("silent", 3)
    t0 = time.monotonic()
    with pytest.raises(ReplyTimeout):
        gauge.read_force_N()
    assert time.monotonic() - t0 < 3 * 0.3 + 1.0
    assert gauge.read_force_N() == pytest.approx(392.7)  # recovers once the gauge answers


def test_disconnect(bench) -> None:
    _, sim, gauge = bench
    assert gauge.read_force_N() == pytest.approx(392.7)
    sim.disconnect()
    with pytest.raises(InstrumentError):
        gauge.read_force_N()


def test_open_failure_is_instrument_error() -> None:
    with pytest.raises(InstrumentError):
        Mark10Gauge("/dev/does-not-exist-labctl", timeout_s=0.1).open()


def test_loop_url_framing() -> None:
    """`loop://` echoes our own command, which is not a reading: garbled, then bounded."""
    gauge = Mark10Gauge("loop://", timeout_s=0.05, attempts=2, retry_wait_s=0.0)
    gauge.open()
    with pytest.raises(InstrumentError):
        gauge.read_force_N()
    gauge.close()


@pytest.mark.parametrize(
    ("diameter", "pressure", "force"),
    [(10.0, 1.0, 78.54), (10.0, 5.0, 392.7), (10.0, 10.0, 785.4), (6.0, 2.0, 56.55)],
)
def test_pressure_conversion(diameter: float, pressure: float, force: float) -> None:
    frame = SpringPressureFrame(Spring(force), electrode_diameter_mm=diameter)
    assert frame.read_pressure_MPa() == pytest.approx(pressure, rel=1e-3)
    assert frame.force_for_pressure_N(pressure) == pytest.approx(force, rel=1e-3)


def test_frame_over_simulated_gauge(bench) -> None:
    _spring, _, gauge = bench
    moves: list[float] = []
    frame = SpringPressureFrame(gauge, electrode_diameter_mm=10.0, name="cell-A")
    assert isinstance(frame, PressureFrame)
    assert frame.area_mm2 == pytest.approx(78.54, rel=1e-4)
    assert frame.read_pressure_MPa() == pytest.approx(5.0, rel=1e-3)
    frame.request_pressure(10.0)  # manual frame: only recorded
    assert frame.setpoint_force_N == pytest.approx(785.4, rel=1e-4)
    instruction = frame.operator_instruction()
    assert "785.4 N" in instruction and "cannot move" in instruction
    assert frame.deviation_fraction() == pytest.approx(-0.5, rel=1e-3)
    motorised = SpringPressureFrame(gauge, area_mm2=100.0, motor=moves.append)
    motorised.request_pressure(2.0)
    assert moves == [200.0]
    with pytest.raises(ValueError):
        frame.request_pressure(-1.0)
    with pytest.raises(ValueError):
        frame.request_pressure(math.nan)
    with pytest.raises(ValueError):
        SpringPressureFrame(gauge)
