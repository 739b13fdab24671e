"""Real-instrument stations: the station file, safe start, and the wall-clock engine path.

The SP-300 itself cannot be reached here (easy-biologic needs Windows and BioLogic's DLL), so
these tests prove (a) a station that names one fails with one clear line and writes no run,
and (b) the whole wall-clock path — a Mark-10 gauge over a real pty giving the stack pressure,
the engine sleeping on the wall clock, the recorder committing every second — by putting a
simulated SP-300 channel, driven by the same wall clock, where the real one would be.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

import labctl.station_file as station_file
from labctl.launch import launch
from labctl.recording import models as m
from labctl_drivers.clock import WallClock
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell
from labctl_drivers.sim.faults import FaultPlan
from labctl_drivers.sim.mark10_device import SimulatedMark10
from labctl_drivers.sim.potentiostat import SimulatedSP300

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


def _station(tmp_path: Path, gauge_url: str) -> Path:
    p = tmp_path / "station.yaml"
    p.write_text(
        "name: bench-test\n"
        "potentiostats:\n  - {name: sp300-a, driver: biologic-sp300, address: USB0}\n"
        f"frames:\n  - name: frame-1\n    gauge: {{driver: mark10, port: '{gauge_url}'}}\n"
        "    electrode_diameter_mm: 6\n"
        "channels:\n  - {potentiostat: sp300-a, channel: 0, frame: frame-1}\n"
    )
    return p


def test_unreachable_sp300_fails_cleanly_before_any_run(tmp_path: Path) -> None:
    with SimulatedMark10(force_N=282.7) as gauge:
        station = _station(tmp_path, gauge.url)
        db = tmp_path / "x.db"
        res = subprocess.run(
            [str(LABCTL), "run", str(ROOT / "protocols" / "quickstart.yaml"), "--cell",
             str(CELL), "--station", str(station), "--db", f"sqlite:///{db}"],
            capture_output=True, text=True, timeout=60,
        )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "easy-biologic" in res.stderr
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Run)) == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("name: s\npotentiostats: []\nchannels: []\n", "channels"),
        ("name: s\npotentiostats: [{name: a, driver: biologic-sp300}]\n"
         "channels: [{potentiostat: b, channel: 0}]\n", "no potentiostat named 'b'"),
        ("name: s\npotentiostats: [{name: a, driver: keithley}]\n"
         "channels: [{potentiostat: a, channel: 0}]\n", "driver"),
        ("name: s\n  bad: [\n", "YAML syntax error"),
    ],
)
def test_bad_station_files_are_refused(tmp_path: Path, body: str, fragment: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(body)
    with pytest.raises(station_file.StationError, match=fragment):
        station_file.load_station_spec(p)


def test_wall_clock_path_with_gauge_over_pty(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    clock = WallClock()
    cell = EquivalentCircuitCell(area_cm2=0.283, r_series_ohm=150.0, noise_V=1e-4)
    stopped: list[bool] = []

    def fake_potentiostat(entry: station_file.PotentiostatEntry) -> SimulatedSP300:
        sp = SimulatedSP300(entry.name, clock, np.random.default_rng(0), FaultPlan(), 1)
        sp.channel(0).connect_cell(cell)
        real_stop = sp.channel(0).stop

        def stop() -> None:
            stopped.append(True)
            real_stop()

        sp.channel(0).stop = stop  # type: ignore[method-assign]
        return sp

    monkeypatch.setattr(station_file, "_potentiostat", fake_potentiostat)
    monkeypatch.setattr(station_file, "WallClock", lambda: clock)
    protocol = tmp_path / "p.yaml"
    protocol.write_text(PROTOCOL)
    db_url = f"sqlite:///{tmp_path / 'hw.db'}"
    force_N = 10.0 * np.pi * 3.0**2  # 10 MPa on a 6 mm electrode
    with SimulatedMark10(force_N=force_N) as gauge:
        result = launch(protocol, [CELL], sim=False, station_path=_station(tmp_path, gauge.url),
                        db_url=db_url)
    (out,) = result.outcomes
    assert out.status == "completed", out
    assert stopped, "the channel was not put into the safe state at connect"
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(m.Point.t_s, m.Point.P_MPa)).all()
    assert len(rows) >= 4
    assert all(abs(p - 10.0) < 0.2 for _, p in rows)  # pressure read from the gauge
    assert rows[-1][0] >= 4.0  # real seconds passed
