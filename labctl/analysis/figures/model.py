"""What a figure is drawn from: typed records of recorded runs, with no database handle.

`labctl.analysis.plots` reads the database into these records; the drawing modules beside this
one take only records, so a figure can be tested or re-drawn without SQL, and a kind can say in
one line why it does not apply to a run before anything is drawn.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from labctl.analysis.figures.kinds import FigureKind
from labctl.recording.queries import StepSummary
from labctl.recording.reads_analysis import ResultRow, RunContext


class PlotError(ValueError):
    """The figure cannot be drawn from these runs (e.g. a Nyquist plot of a run without EIS)."""


class Needs(enum.Flag):
    """Which parts of a run a kind reads (the loader fetches only those)."""

    POINTS = enum.auto()
    SPECTRA = enum.auto()
    RESULTS = enum.auto()


@dataclass(frozen=True)
class Spectrum:
    """One recorded impedance spectrum (Z = Z' + iZ'', Z'' < 0 capacitive) and its step."""

    step: StepSummary
    f_Hz: np.ndarray
    Z_ohm: np.ndarray

    @property
    def t_mid_s(self) -> float:
        """Run time at the middle of the spectrum's step (its place on a time axis)."""
        end = self.step.t_end_s if self.step.t_end_s is not None else self.step.t_start_s
        return (self.step.t_start_s + end) / 2.0


@dataclass
class RunData:
    """A run as a figure sees it: context (cell, steps), and whatever its kind needs."""

    ctx: RunContext
    points: dict[str, np.ndarray] = field(default_factory=dict)
    spectra: list[Spectrum] = field(default_factory=list)
    results: list[ResultRow] = field(default_factory=list)

    @property
    def run_id(self) -> int:
        return self.ctx.run_id

    @property
    def label(self) -> str:
        """Legend text: run number and cell (the cell says the composition and pressure)."""
        return f"run {self.ctx.run_id}: {self.ctx.cell_name}"

    @property
    def gid(self) -> str:
        """Group id set on every artist drawn for this run (tests and SVG readers use it)."""
        return f"run{self.ctx.run_id}"

    def result(self, name: str, step_id: int | None = None) -> ResultRow | None:
        """The last stored result of that name (run-level unless a step is given)."""
        found = [r for r in self.results if r.name == name and r.step_id == step_id]
        return found[-1] if found else None

    def step_results(self, step_id: int) -> dict[str, float]:
        """Numeric results of one step by name."""
        return {r.name: r.value for r in self.results
                if r.step_id == step_id and r.value is not None}

    def require_points(self, kind: FigureKind) -> dict[str, np.ndarray]:
        if len(self.points.get("t_s", ())) == 0:
            raise PlotError(f"run {self.run_id} has no time-series points, so no {kind} figure")
        return self.points

    def require_spectra(self, kind: FigureKind) -> list[Spectrum]:
        if not self.spectra:
            raise PlotError(f"run {self.run_id} has no impedance spectra, so no {kind} figure")
        return self.spectra
