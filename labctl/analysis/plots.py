"""Figures of recorded runs: read the runs from the database, draw, save (PNG, SVG or PDF).

The reading is here and the drawing in `labctl.analysis.figures`, so the drawing code never
holds a database handle. `load_runs` fetches only what the figure kind needs (time series,
spectra, stored results); `figure_for` returns the matplotlib Figure (tests inspect its
artists); `plot_runs` saves it, the format taken from the file's suffix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from sqlalchemy import Engine

from labctl.analysis import eis
from labctl.analysis.figures.registry import (
    FORMATS,
    PLOT_KINDS,
    Needs,
    PlotError,
    RunData,
    Spectrum,
    draw,
    needs,
)
from labctl.recording.queries import step_spectrum
from labctl.recording.reads_analysis import run_context, run_points, run_results_rows

__all__ = ["FORMATS", "PLOT_KINDS", "PlotError", "figure_for", "load_runs", "plot_run",
           "plot_runs"]


def load_runs(engine: Engine, run_ids: Sequence[int], what: Needs) -> list[RunData]:
    """The runs as figure records, in the order given; PlotError for a run that is missing."""
    runs = []
    for run_id in run_ids:
        ctx = run_context(engine, run_id)
        if ctx is None:
            raise PlotError(f"no run {run_id}")
        data = RunData(ctx)
        if Needs.POINTS in what:
            data.points = run_points(engine, run_id)
        if Needs.SPECTRA in what:
            for s in ctx.steps:
                if s.n_eis >= 3:
                    sp = step_spectrum(engine, s.id)
                    f, z = eis.spectrum(sp["frequency_Hz"], sp["Z_re_ohm"], sp["Z_im_ohm"])
                    if f.size >= 3:
                        data.spectra.append(Spectrum(s, f, z))
        if Needs.RESULTS in what:
            data.results = run_results_rows(engine, run_id)
        runs.append(data)
    return runs


def figure_for(engine: Engine, run_ids: int | Sequence[int], kind: str) -> Figure:
    """The `kind` figure of one run or several (overlaid or side by side, per kind)."""
    ids = [run_ids] if isinstance(run_ids, int) else list(run_ids)
    return draw(kind, load_runs(engine, ids, needs(kind)))


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise PlotError(f"{path}: unknown image format {path.suffix!r}; expected "
                        f"{', '.join('.' + f for f in FORMATS)}")
    fig.savefig(path, dpi=dpi, format=fmt)
    return path


def plot_runs(engine: Engine, run_ids: int | Sequence[int], kind: str, path: str | Path,
              dpi: int = 150) -> Path:
    """Draw `kind` for the runs and save it to `path` (format from the suffix)."""
    return save_figure(figure_for(engine, run_ids, kind), path, dpi)


plot_run = plot_runs  # one run is a set of one
