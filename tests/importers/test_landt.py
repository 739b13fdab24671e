"""LAND export importer: round trip of files written by the simulator, and header variants."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl.importers import ImportFormatError, read_landt
from labctl_drivers.clock import VirtualClock
from labctl_drivers.sim.landt import CCCycleSchedule, SimulatedLandt


class _RCell:
    """Stand-in cell: linear OCV in charge plus a series resistor."""

    area_cm2 = 1.0

    def __init__(self) -> None:
        self.q_As = 0.0

    def step(self, current_A: float, dt_s: float) -> float:
        self.q_As += current_A * dt_s
        return 3.0 + 0.5 * self.q_As / 3.6 + 100.0 * current_A


def _simulate(folder: Path, time_unit: str = "s") -> Path:
    clock = VirtualClock()
    sim = SimulatedLandt(folder, clock, record_interval_s=10.0, time_unit=time_unit)
    path = sim.start_channel("B1-CH3", _RCell(), CCCycleSchedule(1e-3, 3.5, 2.8, 2, rest_s=60))
    clock.sleep_until(1e6)
    sim.update()
    assert not sim.is_running("B1-CH3")
    return path


@pytest.mark.parametrize("time_unit", ["s", "h"])
def test_round_trip_simulator_export(tmp_path: Path, time_unit: str) -> None:
    path = _simulate(tmp_path, time_unit)
    with path.open() as f:
        rows = list(csv.reader(f))[3:]  # 2 preamble lines + header, read independently
    run = read_landt(path)
    assert run.instrument == "LANDT"
    assert run.n_points == len(rows)
    k = 3600.0 if time_unit == "h" else 1.0
    np.testing.assert_allclose(run.column("t_s"), [float(r[1]) * k for r in rows], rtol=1e-12)
    np.testing.assert_array_equal(run.column("E_V"), [float(r[5]) for r in rows])
    np.testing.assert_array_equal(run.column("I_mA"), [float(r[3]) for r in rows])
    # capacity magnitude gets the sign of the current
    sign = np.sign([float(r[3]) for r in rows])
    np.testing.assert_array_equal(np.abs(run.column("Q_mAh")), [float(r[4]) for r in rows])
    assert np.all(run.column("Q_mAh") * sign >= 0)
    # 1 rest + 2 x (charge, rest, discharge, rest)
    assert [s.kind for s in run.steps] == ["rest"] + ["galvanostatic", "rest"] * 4
    assert [s.label for s in run.steps] == ["R"] + ["RateC", "R", "RateD", "R"] * 2
    assert [int(s.points["cycle"][0]) for s in run.steps] == [1, 1, 1, 1, 1, 2, 2, 2, 2]
    assert run.metadata["preamble"]["Test name"] == "B1-CH3"
    assert run.metadata["preamble"]["Start time"] == "2026-01-01 09:00:00.000"
    assert "AuxVolt/V" in run.metadata["unplaced_columns"]
    # 1 mA for 10 s records: each CC step's capacity counter equals I*t (mAh)
    chg = run.steps[1]
    assert chg.points["Q_mAh"][-1] == pytest.approx(1.0 * len(chg) * 10 / 3600, rel=1e-9)


def test_tsv_decimal_comma_units_and_dash(tmp_path: Path) -> None:
    """Header set observed in LANDdt exports (µA/µAh, hours, '-' aux, blank spacer, TSV)."""
    p = tmp_path / "export.txt"
    lines = [
        "Record\tTestTime/h\tStepTime/h\tCurrent/uA\tCapacity/uAh\tVoltage/V\tAuxVolt/V\t\t"
        "Cycle-Index\tStep-Index\tStep-State",
        "1\t0,001\t0,001\t0\t0\t3,1\t-\t\t1\t1\tR",
        "2\t0,002\t0,001\t500\t0,5\t3,2\t-\t\t1\t2\tRateC",
        "3\t0,003\t0,002\t500\t1,0\t3,3\t-\t\t1\t2\tRateC",
        "4\t0,004\t0,001\t-500\t0,5\t3,0\t-\t\t1\t3\tRateD",
    ]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = read_landt(p)
    np.testing.assert_allclose(run.column("t_s"), [3.6, 7.2, 10.8, 14.4])
    np.testing.assert_allclose(run.column("I_mA"), [0, 0.5, 0.5, -0.5])
    np.testing.assert_allclose(run.column("Q_mAh"), [0, 5e-4, 1e-3, -5e-4])
    assert [s.kind for s in run.steps] == ["rest", "galvanostatic", "galvanostatic"]


def test_duration_times_and_no_state(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text(
        "Record,TestTime,Voltage/V,Current/mA\n"
        "1,0 00:00:01.000,3.0,0\n2,0 00:00:02.000,3.0,0\n"
        "3,0 00:00:03.500,3.2,1.0\n4,1 00:00:00.000,3.3,1.0\n"
    )
    run = read_landt(p)
    np.testing.assert_allclose(run.column("t_s"), [1, 2, 3.5, 86400])
    assert [s.kind for s in run.steps] == ["rest", "galvanostatic"]  # split on current sign
    # no capacity column: Q integrated from the current
    assert run.steps[1].points["Q_mAh"][-1] == pytest.approx((86400 - 3.5) / 3600)


def test_xlsx_without_openpyxl_says_export_csv(tmp_path: Path) -> None:
    """openpyxl is a dependency; where an install lacks it, the error says what to do. A real
    interpreter in which importing openpyxl fails shows it."""
    p = tmp_path / "x.xlsx"
    p.write_bytes(b"PK")
    code = ("import sys; sys.modules['openpyxl'] = None\n"
            "from labctl.importers import ImportFormatError, read_landt\n"
            "try:\n    read_landt(sys.argv[1])\n"
            "except ImportFormatError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "openpyxl" in out and "CSV" in out


def test_no_header(tmp_path: Path) -> None:
    p = tmp_path / "junk.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ImportFormatError):
        read_landt(p)
