"""SpringPressureFrame over the real Mark-10 driver and the simulated gauge and springs.

The point of simulating below the driver: a simulated frame's reading goes through the GCL2
parser, so breaking the parser breaks simulated runs (test_broken_parser_...).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl_drivers import errors
from labctl_drivers.clock import VirtualClock
from labctl_drivers.interfaces import PressureFrame
from labctl_drivers.mark10 import Mark10Gauge
from labctl_drivers.mark10 import gauge as gauge_module
from labctl_drivers.mark10.sim_gauge import SimulatedMark10
from labctl_drivers.pressure_frame import SpringPressureFrame
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell
from labctl_drivers.sim.spring_frame import SimulatedSpringStack, simulated_frame


class Spring:
    def __init__(self, force_N: float) -> None:
        self.force_N = force_N

    def __call__(self) -> float:
        return self.force_N

    read_force_N = __call__  # also usable directly as a ForceGauge


@pytest.fixture
def sim_gauge(request: pytest.FixtureRequest):
    spring = Spring(392.7)
    sim = SimulatedMark10(spring, transport="inprocess", name=f"frame-{request.node.name}",
                          clock=VirtualClock()).start()
    yield spring, sim
    sim.stop()


@pytest.mark.parametrize(
    ("diameter", "pressure", "force"),
    [(10.0, 1.0, 78.54), (10.0, 5.0, 392.7), (10.0, 10.0, 785.4), (6.0, 2.0, 56.55)],
)
def test_pressure_conversion(diameter: float, pressure: float, force: float) -> None:
    frame = SpringPressureFrame(Spring(force), electrode_diameter_mm=diameter)
    assert frame.read_pressure_MPa() == pytest.approx(pressure, rel=1e-3)
    assert frame.force_for_pressure_N(pressure) == pytest.approx(force, rel=1e-3)


def test_connect_identifies_and_reads_in_band(sim_gauge) -> None:
    _spring, sim = sim_gauge
    frame = SpringPressureFrame(Mark10Gauge(sim.url), electrode_diameter_mm=10.0, name="cell-A")
    assert isinstance(frame, PressureFrame)
    with pytest.raises(errors.NotConnected):
        frame.identity()
    frame.connect()
    ident = frame.identity()
    assert ident.model == "Mark-10 M5-200" and ident.serial_number == "SIM0001"
    assert ident.simulated and frame.simulated
    assert ident.address == sim.url
    details = dict(ident.details)
    assert details["force_band_N"] == "0..889.644"  # 0 .. capacity of an M5-200 (200 lbF)
    assert details["unit"] == "N" and details["actuator"] == "operator"
    assert frame.force_band_N == pytest.approx((0.0, 889.644), abs=1e-3)
    assert sim.received[:2] == ["RM", "RM"] and {"RS", "RV", "?C"} <= set(sim.received)
    assert frame.read_pressure_MPa() == pytest.approx(5.0, rel=1e-3)
    frame.close()


def test_connect_refuses_a_reading_out_of_band(sim_gauge) -> None:
    spring, sim = sim_gauge
    frame = SpringPressureFrame(Mark10Gauge(sim.url), area_mm2=28.27, force_band_N=(0, 300))
    with pytest.raises(errors.OutOfBand, match="outside"):
        frame.connect()  # 392.7 N on a frame whose springs make at most 300 N
    spring.force_N = -50.0  # a gauge mounted the wrong way round reads tension
    with pytest.raises(errors.OutOfBand):
        SpringPressureFrame(Mark10Gauge(sim.url), area_mm2=28.27).connect()
    spring.force_N = -0.3  # an unloaded, tared gauge scatters around zero: accepted
    frame.gauge.close()
    SpringPressureFrame(Mark10Gauge(sim.url), area_mm2=28.27).connect()


def test_connect_refuses_a_band_beyond_the_gauge_capacity(sim_gauge) -> None:
    _, sim = sim_gauge
    frame = SpringPressureFrame(Mark10Gauge(sim.url), area_mm2=78.5, force_band_N=(0, 2000))
    with pytest.raises(errors.OutOfBand, match="capacity"):
        frame.connect()


def test_connect_refuses_a_gauge_that_prints_no_unit_or_cannot_be_reached() -> None:
    with pytest.raises(errors.TransportError):
        SpringPressureFrame(Mark10Gauge("simgauge://not-there"), area_mm2=28.27).connect()


def test_manual_and_motorised_set_points(sim_gauge) -> None:
    _, sim = sim_gauge
    gauge = Mark10Gauge(sim.url)
    frame = SpringPressureFrame(gauge, electrode_diameter_mm=10.0, name="cell-A")
    frame.request_pressure(10.0)  # manual frame: only recorded
    assert frame.setpoint_force_N == pytest.approx(785.4, rel=1e-4)
    instruction = frame.operator_instruction()
    assert "785.4 N" in instruction and "cannot move" in instruction
    assert frame.deviation_fraction() == pytest.approx(-0.5, rel=1e-3)
    moves: list[float] = []
    motorised = SpringPressureFrame(gauge, area_mm2=100.0, motor=moves.append)
    motorised.request_pressure(2.0)
    assert moves == [200.0]
    with pytest.raises(ValueError):
        frame.request_pressure(-1.0)
    with pytest.raises(ValueError):
        frame.request_pressure(math.nan)
    with pytest.raises(ValueError):
        SpringPressureFrame(gauge)
    with pytest.raises(ValueError):
        SpringPressureFrame(gauge, area_mm2=1.0, force_band_N=(5, 1))


def test_simulated_operator_turns_the_screw_the_frame_asks_for() -> None:
    cell = EquivalentCircuitCell(area_cm2=0.2827, r_series_ohm=10.0)
    clock = VirtualClock()
    sim = simulated_frame("op-frame", cell, clock, rng=np.random.default_rng(3))
    try:
        frame = sim.frame
        assert frame.simulated and frame.identity().serial_number == "SIM-op-frame"
        assert dict(frame.identity().details)["actuator"] == "motor"
        frame.request_pressure(10.0)
        assert sim.stack.screw_turns == [pytest.approx(282.7)]
        assert cell.pressure_MPa == pytest.approx(10.0)  # what the cell feels
        readings = [frame.read_pressure_MPa() for _ in range(200)]
        assert np.mean(readings) == pytest.approx(10.0, abs=0.005)
        assert np.std(readings) == pytest.approx(0.2 / 28.27, rel=0.25)  # 0.2 N gauge noise
        sim.stack.lose_pressure()
        assert frame.read_pressure_MPa() == pytest.approx(1.0, abs=0.05)
        assert cell.pressure_MPa == pytest.approx(1.0)
        assert clock.now() == 0.0  # a healthy line costs no (virtual) time, even at connect
    finally:
        sim.close()


def test_broken_parser_breaks_the_simulated_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated runs exercise the real parser: corrupt its unit table and a simulated frame
    reads the wrong pressure; drop a unit from it and the read fails."""
    cell = EquivalentCircuitCell(area_cm2=0.2827, r_series_ohm=10.0)
    sim = simulated_frame("broken", cell, VirtualClock(), noise_N=0.0, pressure_MPa=10.0)
    try:
        assert sim.frame.read_pressure_MPa() == pytest.approx(10.0, abs=0.002)
        monkeypatch.setitem(gauge_module.TO_NEWTON, "N", 4.4482216152605)  # N taken for lbF
        assert sim.frame.read_pressure_MPa() == pytest.approx(44.48, abs=0.01)
        monkeypatch.delitem(gauge_module.TO_NEWTON, "N")
        with pytest.raises(errors.GarbledReply):
            sim.frame.read_pressure_MPa()
    finally:
        sim.close()


def test_stack_alone_follows_the_screw_and_the_cell() -> None:
    seen: list[float] = []
    thinning = [0.0]
    stack = SimulatedSpringStack("s", 28.27, seen.append, thinning_um=lambda: thinning[0])
    stack.turn_screw_to(282.7)
    assert stack.true_pressure_MPa() == pytest.approx(10.0)
    thinning[0] = 5.0  # the cell is 5 µm thinner: the springs relax 1 N (200 N/mm)
    assert stack.force_N() == pytest.approx(281.7)
    assert seen[-1] == pytest.approx(281.7 / 28.27)
    with pytest.raises(ValueError):
        stack.turn_screw_to(-1.0)
