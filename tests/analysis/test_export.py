"""Exporters: CSV, Parquet (units in schema), BDF (labels, units, accumulated capacities)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from labctl.analysis.export import bdf_columns, export_run


def _run() -> dict[str, np.ndarray]:
    t = np.arange(0.0, 7200.0 + 1, 10.0)
    i = np.where(t < 3600, 1e-3, -2e-3)  # 1 h at +1 mA, then 1 h at -2 mA
    step_index = np.where(t < 3600, 2, 3)
    return {
        "t_s": t,
        "E_V": 3.0 + 1e-5 * t,
        "I_A": i,
        "cycle": np.ones(t.size, dtype=np.int64),
        "step_index": step_index,
        "P_MPa": np.full(t.size, 2.0),
    }


META = {"cell": "NaK|NASICON-07", "instrument": "sim", "start_unix_s": 1_767_258_000.0}


def test_csv_round_trip_and_sidecar(tmp_path: Path) -> None:
    cols = _run()
    p = export_run(cols, META, "csv", tmp_path / "run.csv")
    with p.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(cols)
    got = np.array(rows[1:], dtype=float)
    for j, name in enumerate(cols):
        np.testing.assert_array_equal(got[:, j], cols[name])
    side = json.loads((tmp_path / "run.csv.meta.json").read_text())
    assert side["units"]["t_s"] == "s" and side["units"]["P_MPa"] == "MPa"
    assert side["metadata"]["cell"] == "NaK|NASICON-07"


def test_parquet_units_in_schema(tmp_path: Path) -> None:
    cols = _run()
    p = export_run(cols, META, "parquet", tmp_path / "run.parquet")
    table = pq.read_table(p)
    assert table.num_rows == cols["t_s"].size
    for name in cols:
        np.testing.assert_array_equal(table.column(name).to_numpy(), cols[name])
    assert table.schema.field("I_A").metadata[b"unit"] == b"A"
    assert json.loads(table.schema.metadata[b"labctl.units"])["E_V"] == "V"
    assert json.loads(table.schema.metadata[b"labctl.metadata"])["instrument"] == "sim"


def test_bdf_labels_units_and_capacities(tmp_path: Path) -> None:
    cols = _run()
    p = export_run(cols, META, "bdf", tmp_path / "run.bdf")
    with p.open() as f:
        reader = csv.reader(f)
        header = next(reader)
        body = np.array([[float(x) for x in r] for r in reader])
    assert header[:3] == ["Test Time / s", "Voltage / V", "Current / A"]
    for label in (
        "Unix Time / s",
        "Cycle Count / 1",
        "Step Count / 1",
        "Step Index / 1",
        "Charging Capacity / Ah",
        "Discharging Capacity / Ah",
        "Charging Energy / Wh",
        "Discharging Energy / Wh",
        "Applied Pressure / Pa",
    ):
        assert label in header
    col = {h: body[:, j] for j, h in enumerate(header)}
    np.testing.assert_array_equal(col["Current / A"], cols["I_A"])
    np.testing.assert_allclose(col["Unix Time / s"], META["start_unix_s"] + cols["t_s"])
    np.testing.assert_array_equal(col["Step Count / 1"], np.where(cols["t_s"] < 3600, 1, 2))
    np.testing.assert_allclose(col["Applied Pressure / Pa"], 2e6)
    # +1 mA for 1 h = 1 mAh charged; -2 mA for 1 h = 2 mAh discharged (one 10 s record straddles
    # the switch, trapezoid: +-5 s at the mean of the two currents)
    assert col["Charging Capacity / Ah"][-1] == pytest.approx(
        1e-3 - 1e-3 * 5 / 3600 / 2 * 1, rel=1e-3
    )
    assert col["Discharging Capacity / Ah"][-1] == pytest.approx(2e-3, rel=2e-3)
    assert np.all(np.diff(col["Charging Capacity / Ah"]) >= 0)
    assert np.all(np.diff(col["Discharging Capacity / Ah"]) >= 0)


def test_bdf_from_mA_and_validation() -> None:
    t = np.array([0.0, 3600.0])
    out = bdf_columns({"t_s": t, "E_V": np.array([3.0, 3.0]), "I_mA": np.array([1.0, 1.0])})
    assert out["Current / A"][0] == 1e-3
    assert out["Charging Capacity / Ah"][-1] == pytest.approx(1e-3)
    assert out["Charging Energy / Wh"][-1] == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="current"):
        bdf_columns({"t_s": t, "E_V": t})
    with pytest.raises(ValueError, match="format"):
        export_run({"t_s": t, "E_V": t, "I_A": t}, {}, "xlsx", "x")  # type: ignore[arg-type]
