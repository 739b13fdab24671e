"""The neutral in-memory shape every instrument importer produces.

Each instrument writes its own columns, units and step bookkeeping (EC-Lab `Ns`, LAND
`Step-Index`, ...). Analysis, export and the database should not need to know which one a run came
from, so importers translate into `ImportedRun` / `ImportedStep` once, at the edge.

Conventions (fixed, so downstream code never has to guess):

* ``points`` columns, all float64 numpy arrays of equal length:
  ``t_s`` (seconds since the start of the *run*, not the step), ``E_V`` (working-electrode
  voltage, or cell voltage for two-electrode testers), ``I_mA`` (positive = charge/anodic, as the
  instrument reports it), ``Q_mAh`` (charge passed *within the step*, signed like ``I_mA``, i.e.
  the integral of I dt since the step began: EC-Lab steps start at 0 on their first point; LAND
  keeps the tester's own step counter, which is already > 0 at the first record).
  Optional ``cycle`` (int64). A value the source does not provide is NaN, never 0, so a
  missing current is not mistaken for a rest.
* ``eis`` (only for impedance steps), float64 arrays of equal length:
  ``frequency_Hz``, ``Z_re_ohm`` (Z'), ``Z_im_ohm`` = **Im(Z)**, the imaginary part itself, which
  is *negative* for a capacitive response (EC-Lab stores ``-Im(Z)``, so its sign is flipped on
  import), ``Zmod_ohm`` = |Z|, ``phase_deg`` = arg(Z) in degrees (negative for capacitive), and
  ``E_V`` / ``I_mA`` (DC values during the measurement) when the source has them.
* ``source_rows``: for each point, the row index in the source table it came from, so tests and
  provenance can go back to the raw file row for row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

StepKind = Literal["rest", "galvanostatic", "potentiostatic", "cv", "eis", "unknown"]

STEP_KINDS: tuple[str, ...] = ("rest", "galvanostatic", "potentiostatic", "cv", "eis", "unknown")
POINT_COLUMNS: tuple[str, ...] = ("t_s", "E_V", "I_mA", "Q_mAh")
EIS_COLUMNS: tuple[str, ...] = (
    "frequency_Hz",
    "Z_re_ohm",
    "Z_im_ohm",
    "Zmod_ohm",
    "phase_deg",
    "E_V",
    "I_mA",
)


class ImportFormatError(ValueError):
    """A file could not be understood; the message says what was expected and what was found."""


@dataclass
class ImportedStep:
    """One contiguous segment of a run under one control mode (one EC-Lab Ns, one LAND step)."""

    index: int
    kind: StepKind
    points: dict[str, np.ndarray]
    eis: dict[str, np.ndarray] | None = None
    source_rows: np.ndarray | None = None
    label: str = ""  # instrument's own name for the step (e.g. "Ns 2", "CC_Chg"), for humans

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {self.kind!r}; expected one of {STEP_KINDS}")
        missing = [c for c in POINT_COLUMNS if c not in self.points]
        if missing:
            raise ValueError(f"step {self.index}: points lack columns {missing}")
        lengths = {k: len(v) for k, v in self.points.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"step {self.index}: point columns differ in length {lengths}")
        if self.eis is not None:
            elen = {k: len(v) for k, v in self.eis.items()}
            if len(set(elen.values())) > 1:
                raise ValueError(f"step {self.index}: eis columns differ in length {elen}")

    def __len__(self) -> int:
        return len(self.points["t_s"])

    @property
    def cycle(self) -> np.ndarray | None:
        """Per-point cycle number, if the source has one."""
        return self.points.get("cycle")


@dataclass
class ImportedRun:
    """Everything one instrument file holds, in neutral units; `steps` are in time order."""

    source_path: Path
    instrument: str
    technique_names: list[str]
    steps: list[ImportedStep]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: when the instrument started acquiring (the file's own start time), None if it has none;
    #: naive: the instrument PC's local time, as the file gives it
    acquired_at: dt.datetime | None = None

    @property
    def n_points(self) -> int:
        return sum(len(s) for s in self.steps)

    def column(self, name: str) -> np.ndarray:
        """One point column concatenated over all steps (NaN-filled where a step lacks it)."""
        parts = []
        for s in self.steps:
            if name in s.points:
                parts.append(np.asarray(s.points[name], dtype=float))
            else:
                parts.append(np.full(len(s), np.nan))
        return np.concatenate(parts) if parts else np.empty(0)

    def step_numbers(self) -> np.ndarray:
        """Per-point step index (0-based position in `steps`), concatenated over the run."""
        if not self.steps:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([np.full(len(s), s.index, dtype=np.int64) for s in self.steps])


def parse_instrument_time(text: object, formats: Iterable[str]) -> dt.datetime | None:
    """The first of `formats` that reads `text` (a header or cell of the file), else None."""
    value = str(text or "").strip()
    for fmt in formats:
        try:
            return dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def cumulative_charge_mAh(t_s: np.ndarray, I_mA: np.ndarray) -> np.ndarray:
    """Trapezoidal integral of I dt in mAh, 0 at the first point.

    Used when a source records current but no charge counter; NaN currents propagate so an
    unknown stays unknown.
    """
    t = np.asarray(t_s, dtype=float)
    i = np.asarray(I_mA, dtype=float)
    if t.size == 0:
        return np.empty(0)
    inc = 0.5 * (i[1:] + i[:-1]) * np.diff(t) / 3600.0
    return np.concatenate([[0.0], np.cumsum(inc)])
