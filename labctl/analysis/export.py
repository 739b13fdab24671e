"""Write a run's time series to CSV, Parquet or the Battery Data Format (BDF, as CSV).

Pure writers: they take numpy columns plus a metadata dict and write one file (no database
access; the caller fetches the run). One entry point, `export_run`, so the UI offers one button.

Input columns are the database's own names (`point` table: t_s, E_V, I_mA, Q_mAh, P_MPa), so a
CSV column means what the SQL column means; units are the names' suffixes. Only `t_s`, `E_V`
and a current are required; unknown extra columns are passed through to CSV/Parquet with the
unit taken from the name's last ``_`` suffix:

===================  =====  ==========================================================
labctl column        unit   meaning
===================  =====  ==========================================================
t_s                  s      time since the start of the test
E_V                  V      cell / working-electrode voltage
I_A or I_mA          A, mA  current, positive = charge (anodic at the working electrode)
unix_time_s          s      wall-clock time of each point (UTC Unix seconds)
cycle                1      cycle number
step                 1      sequential step count (monotonic over the run)
step_index           1      step number as `labctl show` prints it (step.index; imports: the
                            file's program step, which may repeat, e.g. EC-Lab Ns)
step_time_s          s      time since the step started
T_degC               degC   cell temperature
ambient_T_degC       degC   ambient temperature
Q_mAh                mAh    charge passed within the step
P_MPa                MPa    stack pressure applied to the cell
step_number          text   the step as people number it (4.12: stage 12 of step 4)
===================  =====  ==========================================================

BDF (Battery Data Alliance, Linux Foundation Energy; battery-data-format): a CSV whose header row
holds the quantities' fixed "preferred labels", units fixed by the label. Mapping used here:

=============================  ==========================================================
BDF column                     from
=============================  ==========================================================
Test Time / s                  t_s                                          (required)
Voltage / V                    E_V                                          (required)
Current / A                    I_A, or I_mA / 1000                          (required)
Unix Time / s                  unix_time_s, else metadata["start_unix_s"] + t_s
Cycle Count / 1                cycle
Step Count / 1                 step, else counted from changes of step_index
Step Index / 1                 step_index
Step Time / s                  step_time_s
Charging Capacity / Ah         ∫ max(I, 0) dt from test start (trapezoid; never resets)
Discharging Capacity / Ah      ∫ max(-I, 0) dt from test start
Charging Energy / Wh           ∫ max(I, 0)·V dt from test start
Discharging Energy / Wh        ∫ max(-I, 0)·V dt from test start
Surface Temperature T1 / degC  T_degC
Ambient Temperature / degC     ambient_T_degC
Applied Pressure / Pa          P_MPa × 1e6
=============================  ==========================================================

The accumulated capacities/energies are recomputed from the exported current and voltage (so
they are consistent whatever the instrument's own counters did: BDF wants them monotonic and
non-negative from the test start, whereas LAND and EC-Lab counters reset per step or cycle).
Early drafts of the BDF used milliseconds (``Test Time / ms``, ``Unix Time / ms``); this follows
the seconds-based labels of the current specification. BDF keeps metadata out of the table, so
for CSV and BDF the metadata and units go to a sidecar ``<file>.meta.json``; Parquet stores them
in the schema metadata (``labctl.metadata``, ``labctl.units``, and per-field ``unit``).

Impedance spectra (`export_spectra`) are written with the `eis_point` table's columns plus the
step number of each spectrum, one row per frequency, to CSV or Parquet (BDF has no impedance
quantities).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

ExportFormat = Literal["csv", "parquet", "bdf"]

KNOWN_UNITS: dict[str, str] = {
    "t_s": "s",
    "E_V": "V",
    "I_A": "A",
    "I_mA": "mA",
    "unix_time_s": "s",
    "cycle": "1",
    "step": "1",
    "step_index": "1",
    "step_number": "",
    "step_time_s": "s",
    "Q_mAh": "mAh",
    "T_degC": "degC",
    "ambient_T_degC": "degC",
    "P_MPa": "MPa",
    "force_N": "N",
}

BDF_TIME = "Test Time / s"
BDF_VOLTAGE = "Voltage / V"
BDF_CURRENT = "Current / A"


def unit_of(name: str) -> str:
    """Unit of a labctl column: the table above, else the suffix after the last underscore."""
    if name in KNOWN_UNITS:
        return KNOWN_UNITS[name]
    return name.rpartition("_")[2] if "_" in name else ""


def _same_length(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    cols = {k: np.asarray(v) for k, v in columns.items()}
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns differ in length: {lengths}")
    return cols


def _as_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    cols = _same_length(columns)
    for req in ("t_s", "E_V"):
        if req not in cols:
            raise ValueError(f"missing required column {req!r}")
    if "I_A" not in cols and "I_mA" not in cols:
        raise ValueError("missing current: give 'I_A' or 'I_mA'")
    return cols


def _current_A(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    if "I_A" in cols:
        return np.asarray(cols["I_A"], dtype=float)
    return np.asarray(cols["I_mA"], dtype=float) * 1e-3


def _accumulate(t_s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoidal running integral ∫ y dt / 3600 (A → Ah, W → Wh); NaN segments add nothing."""
    if len(t_s) == 0:
        return np.empty(0)
    inc = 0.5 * (y[1:] + y[:-1]) * np.diff(t_s) / 3600.0
    return np.concatenate([[0.0], np.cumsum(np.nan_to_num(inc))])


def _step_count(step_index: np.ndarray) -> np.ndarray:
    """Sequential step count (1-based) from a possibly repeating program step number."""
    if len(step_index) == 0:
        return np.empty(0, dtype=np.int64)
    change = np.concatenate([[False], step_index[1:] != step_index[:-1]])
    return 1 + np.cumsum(change).astype(np.int64)


def bdf_columns(
    columns: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """The BDF table (label → column) for a run, per the mapping in the module docstring."""
    cols = _as_columns(columns)
    meta = metadata or {}
    t = np.asarray(cols["t_s"], dtype=float)
    v = np.asarray(cols["E_V"], dtype=float)
    i = _current_A(cols)
    out: dict[str, np.ndarray] = {BDF_TIME: t, BDF_VOLTAGE: v, BDF_CURRENT: i}
    if "unix_time_s" in cols:
        out["Unix Time / s"] = np.asarray(cols["unix_time_s"], dtype=float)
    elif meta.get("start_unix_s") is not None:
        out["Unix Time / s"] = float(meta["start_unix_s"]) + t
    if "cycle" in cols:
        out["Cycle Count / 1"] = np.asarray(cols["cycle"]).astype(np.int64)
    if "step" in cols:
        out["Step Count / 1"] = np.asarray(cols["step"]).astype(np.int64)
    elif "step_index" in cols:
        out["Step Count / 1"] = _step_count(np.asarray(cols["step_index"]))
    if "step_index" in cols:
        out["Step Index / 1"] = np.asarray(cols["step_index"]).astype(np.int64)
    if "step_time_s" in cols:
        out["Step Time / s"] = np.asarray(cols["step_time_s"], dtype=float)
    i_chg, i_dis = np.clip(i, 0, None), np.clip(-i, 0, None)
    out["Charging Capacity / Ah"] = _accumulate(t, i_chg)
    out["Discharging Capacity / Ah"] = _accumulate(t, i_dis)
    out["Charging Energy / Wh"] = _accumulate(t, i_chg * v)
    out["Discharging Energy / Wh"] = _accumulate(t, i_dis * v)
    if "T_degC" in cols:
        out["Surface Temperature T1 / degC"] = np.asarray(cols["T_degC"], dtype=float)
    if "ambient_T_degC" in cols:
        out["Ambient Temperature / degC"] = np.asarray(cols["ambient_T_degC"], dtype=float)
    if "P_MPa" in cols:
        out["Applied Pressure / Pa"] = np.asarray(cols["P_MPa"], dtype=float) * 1e6
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, (float, np.floating)):
        return "" if math.isnan(x) else repr(float(x))  # full precision; NaN = empty cell
    if isinstance(x, (np.integer, np.bool_)):
        return str(int(x))
    return str(x)


def _write_csv(table: Mapping[str, np.ndarray], path: Path) -> None:
    names = list(table)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        cols = [table[n].tolist() if table[n].dtype == object else table[n] for n in names]
        n = len(cols[0]) if cols else 0
        for r in range(n):
            w.writerow([_fmt(c[r]) for c in cols])


def _sidecar(path: Path, metadata: Mapping[str, Any], units: Mapping[str, str], fmt: str) -> Path:
    side = path.with_name(path.name + ".meta.json")
    side.write_text(
        json.dumps(
            {"format": fmt, "units": dict(units), "metadata": dict(metadata)}, indent=2, default=str
        ),
        encoding="utf-8",
    )
    return side


def write_csv(columns: Mapping[str, Any], metadata: Mapping[str, Any], path: str | Path) -> Path:
    """labctl CSV: column names as given (units in the names), metadata + units in a sidecar."""
    path = Path(path)
    cols = _as_columns(columns)
    _write_csv(cols, path)
    _sidecar(path, metadata, {k: unit_of(k) for k in cols}, "labctl-csv")
    return path


def write_bdf(columns: Mapping[str, Any], metadata: Mapping[str, Any], path: str | Path) -> Path:
    """Battery Data Format as CSV (see the module docstring for the column mapping)."""
    path = Path(path)
    table = bdf_columns(columns, metadata)
    _write_csv(table, path)
    _sidecar(path, metadata, {k: k.rpartition(" / ")[2] for k in table}, "bdf-csv")
    return path


def write_parquet(
    columns: Mapping[str, Any], metadata: Mapping[str, Any], path: str | Path
) -> Path:
    """Parquet via pyarrow; units per field and run metadata in the schema metadata."""
    return _write_parquet(_as_columns(columns), metadata, Path(path))


def _write_parquet(cols: Mapping[str, np.ndarray], metadata: Mapping[str, Any], path: Path
                   ) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields, arrays = [], []
    for name, arr in cols.items():
        a = pa.array(arr.tolist() if arr.dtype == object else arr)
        fields.append(pa.field(name, a.type, metadata={"unit": unit_of(name)}))
        arrays.append(a)
    schema = pa.schema(
        fields,
        metadata={
            "labctl.metadata": json.dumps(dict(metadata), default=str),
            "labctl.units": json.dumps({k: unit_of(k) for k in cols}),
        },
    )
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
    return path


def export_run(
    columns: Mapping[str, Any],
    metadata: Mapping[str, Any],
    fmt: ExportFormat,
    path: str | Path,
) -> Path:
    """Write a run's time series in `fmt` ('csv' | 'parquet' | 'bdf') to `path`; returns it."""
    writers = {"csv": write_csv, "parquet": write_parquet, "bdf": write_bdf}
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {sorted(writers)}")
    return writers[fmt](columns, metadata, path)


#: Columns of an exported spectrum, in order: the step, then the eis_point table's columns.
SPECTRUM_COLUMNS = ("step_index", "step_number", "t_s", "frequency_Hz", "Z_re_ohm", "Z_im_ohm",
                    "Z_mod_ohm", "phase_deg", "E_V", "I_mA")


def export_spectra(
    spectra: Sequence[tuple[int, str, Mapping[str, Any]]],
    metadata: Mapping[str, Any],
    fmt: str,
    path: str | Path,
) -> Path:
    """Write impedance spectra, (step index, step number, eis_point columns) each, as CSV or
    Parquet, one row per frequency."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"spectra are written as csv or parquet, not {fmt!r}")
    path = Path(path)
    parts = []
    for step_index, step_number, sp in spectra:
        n = len(sp["t_s"])
        parts.append({"step_index": np.full(n, step_index, dtype=np.int64),
                      "step_number": np.full(n, step_number, dtype=object),
                      **{c: np.asarray(sp[c], dtype=float) for c in SPECTRUM_COLUMNS[2:]}})
    cols = _same_length({c: np.concatenate([p[c] for p in parts]) for c in SPECTRUM_COLUMNS})
    if fmt == "parquet":
        return _write_parquet(cols, metadata, path)
    _write_csv(cols, path)
    _sidecar(path, metadata, {k: unit_of(k) for k in cols}, "labctl-eis-csv")
    return path
