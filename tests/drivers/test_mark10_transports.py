"""The Mark-10 driver through pyvisa (pyvisa-sim and pyvisa-py over a real pty), a gauge served
over TCP by another process, and what the transports cost per reading."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from labctl_drivers import errors
from labctl_drivers.clock import VirtualClock
from labctl_drivers.mark10 import SIM_YAML, Mark10Gauge, VisaTransport, open_transport
from labctl_drivers.mark10.sim_gauge import SimulatedMark10

POSIX = sys.platform != "win32"


def test_pyvisa_sim_yaml_shipped_beside_the_driver() -> None:
    gauge = Mark10Gauge("ASRL1::INSTR", visa_library=SIM_YAML + "@sim", timeout_s=0.2)
    try:
        assert isinstance(gauge._port(), VisaTransport)
        assert gauge.read_force_N() == pytest.approx(392.7)
        ident = gauge.identity()
        assert (ident.model, ident.serial_number) == ("M5-200", "SIMVISA0001")
        assert gauge.simulated
        assert gauge.settings()[1] == "N"
        with pytest.raises(errors.InstrumentRefused):
            gauge.query_text("XYZ")
        assert gauge.read_force_N() == pytest.approx(392.7)
    finally:
        gauge.close()


def test_unknown_visa_resource_is_a_transport_error() -> None:
    with pytest.raises(errors.TransportError):
        open_transport("ASRL/dev/does-not-exist-labctl::INSTR")  # pyvisa-py, by default


@pytest.mark.skipif(not POSIX, reason="needs a pty")
def test_pyvisa_py_over_a_real_pty() -> None:
    """pyvisa-py opens ``ASRL<path>::INSTR`` with pyserial, so a pty path is a VISA resource."""
    sim = SimulatedMark10(392.7, transport="pty").start()
    resource = f"ASRL{sim.url}::INSTR"
    gauge = Mark10Gauge(resource, timeout_s=0.3, quiet_s=0.02)
    try:
        assert isinstance(gauge._port(), VisaTransport)
        assert gauge.read_force_N() == pytest.approx(392.7)
        assert gauge.identity().serial_number == "SIM0001"
        sim.inject("split", stall_s=0.7)
        for _ in range(3):  # never the remainder "2.7 N" as a value
            try:
                assert gauge.read_force_N() == pytest.approx(392.7)
            except errors.InstrumentError as exc:
                assert isinstance(exc, errors.ReplyTimeout | errors.GarbledReply)
        assert gauge.read_force_N() == pytest.approx(392.7)
        sim.disconnect()
        with pytest.raises(errors.TransportError):
            gauge.read_force_N()
    finally:
        gauge.close()
        sim.stop()


def test_tcp_gauge_served_by_another_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl_drivers.mark10.sim_gauge", "--port", "0",
         "--force-N", "282.7", "--serial-number", "SIM-TCP"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:")
        for _ in range(2):  # a client may come and go, as a station check and then a run
            gauge = Mark10Gauge(url, timeout_s=1.0)
            assert gauge.read_force_N() == pytest.approx(282.7)
            assert gauge.identity().serial_number == "SIM-TCP" and gauge.simulated
            gauge.close()
    finally:
        proc.terminate()
        proc.wait(10)


def _per_read_us(gauge: Mark10Gauge, n: int) -> float:
    gauge.read_force_N()
    t0 = time.perf_counter()
    for _ in range(n):
        gauge.read_force_N()
    return (time.perf_counter() - t0) / n * 1e6


def test_cost_per_reading(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, printed, and loosely bounded: a simulated run reads each frame every poll."""
    sim = SimulatedMark10(392.7, transport="inprocess", name="bench-cost",
                          clock=VirtualClock()).start()
    inproc = Mark10Gauge(sim.url)
    us_inproc = _per_read_us(inproc, 2000)
    inproc.close()
    sim.stop()
    lines = [f"in-process simgauge://: {us_inproc:.1f} us/read"]
    if POSIX:
        with SimulatedMark10(392.7, transport="pty") as pty_sim:
            pty_gauge = Mark10Gauge(pty_sim.url, quiet_s=0.02)
            lines.append(f"pty (pyserial): {_per_read_us(pty_gauge, 200):.1f} us/read")
            pty_gauge.close()
    with capsys.disabled():
        print("\n" + "; ".join(lines))
    assert us_inproc < 2000  # generous: shared CI cores
