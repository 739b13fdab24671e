"""Time-series figures: voltage overlays (any run), the CCD staircase (Fig. 1b), CV (Fig. 6).

Wu et al. 2025 (J. Mater. Chem. A 13, 22074) Fig. 1b overlays the voltage of Na and NaK
symmetric cells under the same current-density staircase; Fig. 6 shows ten CV cycles of NaK
working electrodes in current density. Current is always normalised by the cell's electrode
area (mA cm⁻²) so cells of different size compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from labctl.analysis import cv as cv_mod
from labctl.analysis.figures import style
from labctl.analysis.figures.model import FigureKind, PlotError, RunData

J_LABEL = "j (mA cm$^{-2}$)"


def _trace_figure(runs: Sequence[RunData], series: list[tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]],
                  j_label: str, step_current: bool,
                  extra: Sequence[Line2D] = ()) -> Figure:
    """Voltage above, current density below, one colour per run, shared time axis."""
    fig, (ax_e, ax_j) = style.new_figure(2, sharex=True, height_in=5.0)
    span = max((float(t[-1] - t[0]) for t, _, _ in series if len(t)), default=1.0)
    div, unit = style.time_scale(span)
    for i, (run, (t, e, j)) in enumerate(zip(runs, series)):
        colour = style.run_colour(i)
        x = (t - t[0]) / div
        ax_e.plot(x, e, lw=0.7, color=colour, gid=run.gid)
        if step_current:
            ax_j.step(x, j, where="post", lw=1.0, color=colour, gid=run.gid)
        else:
            ax_j.plot(x, j, lw=0.7, color=colour, gid=run.gid)
    ax_e.set_ylabel("E (V)")
    ax_j.set_ylabel(j_label)
    ax_j.set_xlabel(f"t ({unit})")
    for ax in (ax_e, ax_j):
        style.plain_numbers(ax)
    style.run_legend(fig, runs, extra)
    return fig


def voltage(runs: Sequence[RunData]) -> Figure:
    """Voltage and measured current density of each run against time since its first point."""
    series = []
    for run in runs:
        p = run.require_points(FigureKind.VOLTAGE)
        series.append((p["t_s"], p["E_V"], p["I_mA"] / run.ctx.area_cm2))
    return _trace_figure(runs, series, J_LABEL, step_current=False)


def ccd(runs: Sequence[RunData]) -> Figure:
    """Fig. 1b: the CCD ramp's voltage and set-point current-density staircase of each run.

    Only the ramp's stages are shown (the rest and EIS before it would flatten the staircase);
    the set-point is used because the measured current is zero at the rests in between. The
    stage that failed is marked with a cross on the voltage trace.
    """
    series, marks = [], []
    for run in runs:
        p = run.require_points(FigureKind.CCD)
        ramps = {s.id for s in run.ctx.steps if s.kind == "ccd_ramp"}
        if not ramps:
            raise PlotError(f"run {run.run_id} has no CCD ramp, so no ccd figure")
        stages = [s for s in run.ctx.steps if s.parent_id in ramps]
        sel = np.isin(p["step_id"], [s.id for s in stages])
        if not sel.any():
            raise PlotError(f"run {run.run_id}: its CCD ramp recorded no points")
        t, e, sid = p["t_s"][sel], p["E_V"][sel], p["step_id"][sel]
        j_set = np.zeros_like(t)
        for s in stages:
            if s.kind == "galvanostatic" and s.params.get("current_mA") is not None:
                j_set[sid == s.id] = abs(float(s.params["current_mA"])) / run.ctx.area_cm2
        series.append((t, e, np.maximum.accumulate(j_set)))
        failed = [s.id for s in stages if s.status == "failed"]
        hit = np.flatnonzero(sid == failed[0]) if failed else np.empty(0, int)
        marks.append((float(t[hit[-1]] - t[0]), float(e[hit[-1]])) if hit.size else None)
    cross = Line2D([], [], ls="", marker="x", color="0.3", label="failed stage")
    fig = _trace_figure(runs, series, "j set-point (mA cm$^{-2}$)", step_current=True,
                        extra=[cross])
    div, _ = style.time_scale(max(float(t[-1] - t[0]) for t, _, _ in series))
    for i, (run, mark) in enumerate(zip(runs, marks)):
        if mark is not None:
            fig.axes[0].plot(mark[0] / div, mark[1], "x", ms=7, mew=1.5,
                             color=style.run_colour(i), gid=run.gid)
    return fig


def cv(runs: Sequence[RunData]) -> Figure:
    """Fig. 6: j against E for every cycle, one panel per run, cycles as shades of its colour."""
    per_run = []
    for run in runs:
        p = run.require_points(FigureKind.CV)
        steps = [s for s in run.ctx.steps if s.kind == "cv" and s.n_points]
        if not steps:
            raise PlotError(f"run {run.run_id} has no CV step with data, so no cv figure")
        per_run.append((p, steps))
    fig, axes = style.new_figure(len(runs), rows=min(len(runs), 2) if len(runs) > 2 else 1,
                                 sharex=True, sharey=True,
                                 height_in=3.4 * min(len(runs), 2) if len(runs) > 2 else 3.6)
    for i, (run, ax, (p, steps)) in enumerate(zip(runs, axes, per_run)):
        cmap = style.run_colormap(style.run_colour(i))
        n_max = 1
        for s in steps:
            sel = p["step_id"] == s.id
            prm = s.params
            cyc = cv_mod.cycle_numbers(p["t_s"][sel], p["E_V"][sel], prm.get("E_start_V"),
                                       prm.get("vertices_V"), prm.get("scan_rate_V_s"))
            n = max(int(cyc.max()), 1)
            n_max = max(n_max, n)
            e, j = p["E_V"][sel], p["I_mA"][sel] / run.ctx.area_cm2
            for c in np.unique(cyc):
                m = cyc == c
                ax.plot(e[m], j[m], lw=0.8, color=cmap((c - 1) / max(n - 1, 1)), gid=run.gid)
        style.panel_title(ax, run, i)
        ax.set_xlabel("E vs Na (V)")
        ax.set_ylabel(J_LABEL)
        style.plain_numbers(ax)
        bar = fig.colorbar(ScalarMappable(Normalize(1, max(n_max, 2)), cmap), ax=ax,
                           pad=0.01, aspect=30)
        bar.set_label("cycle (1)", fontsize=7)
    return fig
