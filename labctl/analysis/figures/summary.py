"""Across-run summary: the critical current density against pressure or composition (Fig. 1c).

Wu et al. 2025 Fig. 1c plots each cell's CCD against the stack pressure it cycled at, one line
per anode composition (Na rises with pressure; the NaK alloys do not). When every run was at
one pressure the x axis is the K content instead, which is Fig. 1b's comparison in one number
per cell. Points are one marker per run; the line and its colour belong to a composition,
because the composition is what the reader follows across pressures here. The marker says how
the cell failed (the CCD analysis's failure mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from labctl.analysis.figures import style
from labctl.analysis.figures.model import PlotError, RunData

MODE_MARKERS = {"hard_short": "o", "soft_short": "s", "divergence": "^"}
OTHER_MARKER = "D"


def composition(run: RunData) -> str:
    """'Na' or 'NaK50' (K wt %), the paper's names for the anodes."""
    k = run.ctx.k_wt_pct
    if run.ctx.anode_material == "NaK" and k is not None:
        return f"NaK{k:g}"
    return run.ctx.anode_material


def ccd_summary(runs: Sequence[RunData]) -> Figure:
    points = []
    for run in runs:
        ccd = run.result("ccd_mA_cm2")
        if ccd is None or ccd.value is None:
            raise PlotError(f"run {run.run_id} has no CCD result, so no ccd-summary figure "
                            f"(labctl analyze {run.run_id} --only ccd)")
        p = run.result("ccd_stack_pressure_MPa")
        mode = run.result("ccd_failure_mode")
        points.append((run, composition(run), ccd.value,
                       p.value if p is not None and p.value is not None else np.nan,
                       mode.text if mode is not None else None))
    pressures = {round(p, 1) for *_, p, _ in points if np.isfinite(p)}
    by_pressure = len(pressures) > 1
    fig, (ax,) = style.new_figure(1, height_in=3.8)
    names = list(dict.fromkeys(c for _, c, *_ in points))
    for n, name in enumerate(names):
        colour = style.run_colour(n)
        mine = [pt for pt in points if pt[1] == name]
        if by_pressure:
            mine.sort(key=lambda pt: pt[3])
            ax.plot([pt[3] for pt in mine], [pt[2] for pt in mine], "-", lw=1.0, color=colour)
        for run, _, ccd, p, mode in mine:
            x = p if by_pressure else (run.ctx.k_wt_pct or 0.0)
            ax.plot(x, ccd, MODE_MARKERS.get(mode or "", OTHER_MARKER), ms=6, color=colour,
                    gid=run.gid)
    if by_pressure:
        ax.set_xlabel("stack pressure (MPa)")
    else:
        ax.set_xlabel("K content of the anode (wt %)")
    ax.set_ylabel("CCD (mA cm$^{-2}$)")
    ax.set_ylim(bottom=0)
    style.plain_numbers(ax)
    handles = [Line2D([], [], color=style.run_colour(n), lw=2, label=name)
               for n, name in enumerate(names)]
    modes = sorted({m for *_, m in points}, key=str)
    handles += [Line2D([], [], ls="", marker=MODE_MARKERS.get(m or "", OTHER_MARKER),
                       color="0.3", label=(m or "no failure").replace("_", " "))
                for m in modes]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    return fig
