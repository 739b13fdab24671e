"""LANDT / LANHE (Wuhan LAND) record exports into `ImportedRun`.

LANDT has no public control or streaming protocol; data leaves the tester through the LANDdt
software's exports. What those exports look like (header detection, column names and units,
separators, decimal commas, encodings, LAND's step-state codes) is instrument knowledge and lives
in the drivers layer, `labctl_drivers.landt.formats`, which the live follower uses too. This
module adds what the rows mean in labctl's neutral model (`labctl.importers.model`):

Capacity: LAND's ``Capacity`` counter is charge since the step began, usually as a *magnitude*
for both charge and discharge. ``Q_mAh`` is signed like the current (the labctl convention), so a
non-negative counter takes the sign of the step's current; a counter that already has negative
values is kept as is. Without a capacity column, Q is integrated from the current.

Steps: a new step starts where the step index, the cycle index or the step state changes; with
none of those, where the sign of the current changes. The step kind comes from the state
vocabulary (`labctl_drivers.landt.step_mode`: R / RateC / RateD / CC_Chg / CC_DChg / CV_Chg ...
and LAND's PM_* mode codes), else from the current (zero → rest, constant → galvanostatic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.model import (
    ImportedRun,
    ImportedStep,
    ImportFormatError,
    StepKind,
    cumulative_charge_mAh,
    parse_instrument_time,
)
from labctl_drivers.landt.formats import (
    LandtExport,
    LandtFormatError,
    LandtRecordParser,
    LandtRecords,
    StepMode,
    read_export,
    step_mode,
)

__all__ = ["LandtRecordParser", "build_steps", "read_landt", "run_from_export"]

_MODE_KIND: dict[StepMode, StepKind] = {
    "rest": "rest",
    "constant_current": "galvanostatic",
    "constant_voltage": "potentiostatic",
}


def _state_kind(state: str) -> StepKind | None:
    mode = step_mode(state)
    return None if mode is None else _MODE_KIND[mode]


def _current_kind(i_mA: np.ndarray) -> StepKind:
    finite = i_mA[np.isfinite(i_mA)]
    if finite.size == 0:
        return "unknown"
    peak = float(np.max(np.abs(finite)))
    if peak < 1e-9:
        return "rest"
    if float(np.ptp(finite)) <= 0.02 * peak:
        return "galvanostatic"
    return "unknown"


def build_steps(rec: LandtRecords) -> list[ImportedStep]:
    """Split LAND rows into `ImportedStep`s (see the module docstring for the rules)."""
    n = len(rec)
    if n == 0:
        return []
    keys: list[np.ndarray] = []
    for counter in (rec.step, rec.cycle):
        if np.isfinite(counter).any():
            keys.append(np.nan_to_num(counter, nan=-1.0))
    if any(s for s in rec.state):
        keys.append(rec.state)
    if not keys:
        keys.append(np.sign(np.nan_to_num(rec.I_mA)))
    change = np.zeros(n, dtype=bool)
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = np.concatenate([[0], np.flatnonzero(change)])
    stops = np.concatenate([starts[1:], [n]])
    steps: list[ImportedStep] = []
    for idx, (a, b) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
        sl = slice(a, b)
        t, i_mA = rec.t_s[sl], rec.I_mA[sl]
        state = str(rec.state[a])
        kind = _state_kind(state) or _current_kind(i_mA)
        cap = rec.capacity_mAh[sl]
        if np.isfinite(cap).any():
            if np.nanmin(cap) >= 0:
                fin = i_mA[np.isfinite(i_mA)]
                sign = float(np.sign(np.median(fin))) if fin.size else 1.0
                q = cap * (sign if sign != 0 else 1.0)
            else:
                q = cap.copy()
        else:
            q = cumulative_charge_mAh(t, i_mA)
        pts = {"t_s": t.copy(), "E_V": rec.E_V[sl].copy(), "I_mA": i_mA.copy(), "Q_mAh": q}
        if np.isfinite(rec.cycle[sl]).all():
            pts["cycle"] = rec.cycle[sl].astype(np.int64)
        label = state
        if not label and np.isfinite(rec.step[a]):
            label = f"step {int(rec.step[a])}"
        steps.append(ImportedStep(idx, kind, pts, None, np.arange(a, b), label))
    return steps


#: LANDdt's SysTime/DateTime cells (local time of the tester's PC)
LANDT_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S",
                      "%Y/%m/%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")


def run_from_export(export: LandtExport) -> ImportedRun:
    """An export's rows as an `ImportedRun` (steps split, Q signed like the current)."""
    rec = export.records
    steps = build_steps(rec)
    meta: dict[str, Any] = {
        "format": "land-export-text" if export.delimiter else "land-export-xlsx",
        "header": list(export.header),
        "preamble": dict(export.preamble),
        "unplaced_columns": list(export.unplaced_columns),
    }
    if len(rec.systime) and rec.systime[0]:
        meta["first_systime"] = rec.systime[0]
    techniques = sorted({s.label for s in steps if s.label})
    acquired = parse_instrument_time(meta.get("first_systime"), LANDT_TIME_FORMATS)
    return ImportedRun(export.source_path, "LANDT", techniques, steps, meta, acquired)


def read_landt(path: str | Path) -> ImportedRun:
    """Read one LANDdt record export (.csv/.txt/.tsv; .xlsx if openpyxl is installed)."""
    try:
        export = read_export(path)
    except LandtFormatError as exc:
        raise ImportFormatError(str(exc)) from exc
    return run_from_export(export)
