"""Stations: the schema, the driver registry, `labctl station check`, and the wall-clock path.

Every station here runs the real drivers: the SP-300 adapter over a simulated EClib (in-process,
or in a bench served over TCP), the Mark-10 GCL2 driver over a real pty or socket. Nothing is
monkeypatched between labctl and the drivers.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from labctl.launch import launch
from labctl.protocol import load_cell
from labctl.protocol.errors import ProtocolError
from labctl.recording import models as m
from labctl.stations import builtin_sim_station, load_station
from labctl.stations.check import check_station
from labctl.stations.serve import start_served_bench
from labctl_drivers.mark10.sim_gauge import SimulatedMark10
from labctl_drivers.registry import DriverKind, DriverNotFound, DriverRequest, available, find

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
LABCTL = Path(sys.executable).with_name("labctl")

PROTOCOL = """\
schema_version: 1
name: wall-clock check
limits: {E_min: -1 V, E_max: 1 V, P_min: 5 MPa, P_max: 15 MPa}
steps:
  - kind: rest
    duration: 2 s
  - kind: galvanostatic
    current: 0.1 mA/cm^2
    duration: 3 s
"""


def _labctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LABCTL), *args], capture_output=True, text=True,
                          timeout=timeout)


def _station_file(tmp_path: Path, gauge_port: str, backend: str = "vendor",
                  extra: str = "") -> Path:
    p = tmp_path / "station.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: bench-test
        {extra}
        potentiostats:
          - {{name: sp300-a, driver: biologic-sp300, address: USB0, backend: '{backend}'}}
        frames:
          - name: frame-1
            gauge: {{driver: mark10, port: '{gauge_port}', timeout_s: 0.3}}
            electrode_diameter_mm: 6
            force_band_N: [0, 800]
        channels:
          - {{potentiostat: sp300-a, channel: 0, frame: frame-1}}
        """))
    return p


# -- the schema --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("name: s\npotentiostats: []\nchannels: []\n", 2, "potentiostats"),
        ("name: s\npotentiostats: [{name: a, driver: biologic-sp300}]\n"
         "channels: [{potentiostat: b, channel: 0}]\n", 3, "no potentiostat named 'b'"),
        ("name: s\npotentiostats: [{name: a, driver: biologic-sp300, backend: usb}]\n"
         "channels: [{potentiostat: a, channel: 0}]\n", 2, "backend must be"),
        ("name: s\npotentiostats: [{name: a, driver: biologic-sp300, backend: simulated}]\n"
         "channels: [{potentiostat: a, channel: 0}]\n", 2, "virtual clock"),
        ("name: s\npotentiostats: [{name: a, driver: biologic-sp300}]\n"
         "channels: [{potentiostat: a, channel: 0}, {potentiostat: a, channel: 0}]\n", 3,
         "listed twice"),
        ("name: s\n  bad: [\n", 2, "YAML syntax error"),
    ],
)
def test_bad_station_files_are_refused_with_a_location(tmp_path: Path, body: str, line: int,
                                                       fragment: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(body)
    with pytest.raises(ProtocolError) as ei:
        load_station(p)
    assert any(e.line == line and fragment in e.message for e in ei.value.errors), \
        [str(e) for e in ei.value.errors]
    res = _labctl("validate", str(p))
    assert res.returncode == 2 and f"{p}:{line}:" in res.stderr and "Traceback" not in res.stderr


def test_builtin_sim_station_is_an_ordinary_station_file() -> None:
    spec = builtin_sim_station()
    assert spec.simulated and spec.poll_interval_s == 1.0  # the same as a real station
    assert {p.driver for p in spec.potentiostats} == {"biologic-sp300"}
    assert {f.gauge.driver for f in spec.frames} == {"mark10"}
    res = _labctl("validate", str(ROOT / "labctl" / "stations" / "builtin" / "sim.yaml"),
                  str(ROOT / "protocols" / "ccd.yaml"))
    assert res.returncode == 0, res.stderr
    assert "1 station file(s)" in res.stdout


# -- the registry ------------------------------------------------------------------------------
def test_drivers_are_found_by_name_and_a_lab_can_add_one(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert "biologic-sp300" in available(DriverKind.POTENTIOSTAT)
    assert "mark10" in available(DriverKind.GAUGE)
    with pytest.raises(DriverNotFound, match="did you mean 'biologic-sp300'"):
        find(DriverKind.POTENTIOSTAT, "biologic-sp30")
    # a lab's own package: an installed distribution declaring an entry point
    dist = tmp_path / "mylab_drivers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab-drivers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[labctl_drivers.gauges]\nmylab-gauge = mylab_gauge:make\n")
    (tmp_path / "mylab_gauge.py").write_text("def make(request):\n    return ('made', request)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "mylab-gauge" in available(DriverKind.GAUGE)
    made = find(DriverKind.GAUGE, "mylab-gauge")(DriverRequest("g1", {"port": "x"}))
    assert made[0] == "made" and made[1].name == "g1"


# -- station check -----------------------------------------------------------------------------
def test_station_check_on_the_builtin_simulated_station() -> None:
    res = _labctl("station", "check", "--sim")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "station sim-bench (simulated)" in out
    assert "sim-SP300-1: SP-300" in out and "channel 0: idle" in out
    assert "sim-frame-1: " in out and "M5-200" in out


def test_station_check_with_a_gauge_over_a_pty(tmp_path: Path) -> None:
    """A station file whose potentiostat is a bench served over TCP and whose gauge is a
    Mark-10 on a real pty: identity, channel state and the gauge reading are printed."""
    with start_served_bench([load_cell(CELL)], tmp_path / "served.yaml") as served:
        backend = load_station(served.station_path).potentiostats[0].backend
        with SimulatedMark10(force_N=282.7, transport="pty", serial_number="G123") as gauge:
            station = _station_file(tmp_path, gauge.url, backend=backend,
                                    extra="clock: {kind: wall}")
            res = _labctl("station", "check", str(station))
            assert res.returncode == 0, res.stderr
            assert "sp300-a: SP-300" in res.stdout and "channel 0: idle" in res.stdout
            assert "frame-1: Mark-10 M5-200, serial G123" in res.stdout and "282.7 N" in res.stdout
            assert "10.00 MPa" in res.stdout
            report = check_station(load_station(station))
            assert report.frames[0].pressure_MPa == pytest.approx(10.0, abs=0.01)


def test_unreachable_gauge_is_one_line_and_no_current_flows(tmp_path: Path) -> None:
    """The gauge's pty is gone: `station check` and `run` say so in one line, exit non-zero,
    and the (simulated, served) SP-300 never started a technique."""
    with start_served_bench([load_cell(CELL)], tmp_path / "served.yaml") as served:
        backend = load_station(served.station_path).potentiostats[0].backend
        station = _station_file(tmp_path, str(tmp_path / "no-such-tty"), backend=backend,
                                extra="clock: {kind: wall}")
        res = _labctl("station", "check", str(station))
        assert res.returncode == 1
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
        assert "frame-1" in res.stderr or "no-such-tty" in res.stderr
        protocol = tmp_path / "p.yaml"
        protocol.write_text(PROTOCOL)
        db = tmp_path / "x.db"
        res = _labctl("run", str(protocol), "--cell", str(CELL), "--station", str(station),
                      "--db", f"sqlite:///{db}")
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
        status = served.bench.sp300("sim-SP300-1").channel_status(0)
        assert not status.running and status.technique_index == -1  # never started
        engine = create_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(m.Run)) == 0


def test_unreachable_sp300_fails_cleanly_before_any_run(tmp_path: Path) -> None:
    """The vendor backend (easy-biologic + BioLogic's DLL) cannot load off Windows: one line."""
    with SimulatedMark10(force_N=282.7, transport="pty") as gauge:
        station = _station_file(tmp_path, gauge.url)
        db = tmp_path / "x.db"
        res = _labctl("run", str(ROOT / "protocols" / "quickstart.yaml"), "--cell", str(CELL),
                      "--station", str(station), "--db", f"sqlite:///{db}")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "easy-biologic" in res.stderr
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Run)) == 0


# -- the wall-clock path -----------------------------------------------------------------------
def test_wall_clock_run_on_a_served_bench_with_a_pty_gauge(tmp_path: Path) -> None:
    """The whole wall-clock path through the real drivers: the SP-300 adapter over a bench in
    a server thread, a Mark-10 on a real pty giving the stack pressure, the engine sleeping on
    the wall clock, the recorder committing every second."""
    protocol = tmp_path / "p.yaml"
    protocol.write_text(PROTOCOL)
    db_url = f"sqlite:///{tmp_path / 'hw.db'}"
    with start_served_bench([load_cell(CELL)], tmp_path / "served.yaml") as served:
        backend = load_station(served.station_path).potentiostats[0].backend
        with SimulatedMark10(force_N=10.0 * 3.14159265 * 9.0, transport="pty") as gauge:
            station = _station_file(tmp_path, gauge.url, backend=backend,
                                    extra="clock: {kind: wall}")
            result = launch(protocol, [CELL], sim=False, station_path=station, db_url=db_url)
    (out,) = result.outcomes
    assert out.status.value == "completed", out
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(m.Point.t_s, m.Point.P_MPa)).all()
    assert len(rows) >= 4
    assert all(abs(p - 10.0) < 0.2 for _, p in rows)  # pressure read from the gauge
    assert rows[-1][0] >= 4.0  # real seconds passed
