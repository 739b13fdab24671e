"""Stripping curves over the Na–K phase windows with the theoretical lines (Fig. 1d/e).

Wu et al. 2025 Fig. 1d overlays the potential of NaK half cells stripped to their cut-off
against specific capacity; Fig. 1e puts each alloy on its phase-window background: the liquid
window (stripping Na leaves a K-richer liquid) up to Q_window, then liquid + K(s) up to Q_all,
where every Na atom is gone. Both boundaries and the open-circuit potential of the remaining
liquid come from labctl_chemistry (the phase diagram the analyses use too), so the theoretical
lines and the critical-stripping results agree by construction.

One panel per alloy composition and temperature (each has its own background); one colour per
run in every panel. Runs without an alloy mass are drawn per cm² on a plain background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from labctl.analysis.figures import style
from labctl.analysis.figures.model import FigureKind, PlotError, RunData
from labctl.analysis.figures.summary import composition

WINDOW_COLOUR, TWO_PHASE_COLOUR = "#56B4E9", "#009E73"


def _strip_steps(run: RunData) -> list[int]:
    gal = [s for s in run.ctx.steps if s.kind == "galvanostatic" and s.n_points]
    strip = [s for s in gal if float(s.params.get("current_mA") or 0.0) > 0]
    return [s.id for s in (strip or gal)]  # imported steps have no set-point: all of them


def _curve(run: RunData) -> tuple[np.ndarray, np.ndarray, bool]:
    """(capacity, E, per gram?) of the run's stripping steps, capacity accumulated over them."""
    p = run.require_points(FigureKind.STRIPPING)
    ids = _strip_steps(run)
    if not ids:
        raise PlotError(f"run {run.run_id} has no galvanostatic step, so no stripping figure")
    per_g = bool(run.ctx.alloy_mass_mg)
    norm = run.ctx.alloy_mass_mg / 1000.0 if per_g else run.ctx.area_cm2
    qs, es, offset = [], [], 0.0
    for sid in ids:
        sel = p["step_id"] == sid
        q = np.abs(p["Q_mAh"][sel]) / norm + offset
        qs.append(q)
        es.append(p["E_V"][sel])
        offset = float(q[-1])
    return np.concatenate(qs), np.concatenate(es), per_g


def stripping(runs: Sequence[RunData]) -> Figure:
    from labctl_chemistry import phase_diagram as pd

    curves = [_curve(r) for r in runs]
    groups: dict[tuple[str, float], list[int]] = {}
    for i, run in enumerate(runs):
        T = run.ctx.temperature_C if run.ctx.temperature_C is not None else 25.0
        groups.setdefault((composition(run), T), []).append(i)
    fig, axes = style.new_figure(len(groups), sharey=True, height_in=2.6 * len(groups) + 0.8)
    for ax, ((name, T), members) in zip(axes, groups.items()):
        ctx = runs[members[0]].ctx
        per_g = all(curves[i][2] for i in members)
        q_max = max(float(curves[i][0].max()) for i in members)
        for i in members:
            q, e, _ = curves[i]
            ax.plot(q, e, lw=1.0, color=style.run_colour(i), gid=runs[i].gid)
        if per_g and ctx.k_wt_pct:
            w0 = ctx.k_wt_pct / 100.0
            q_win, q_all = float(pd.q_window(w0, T)), float(pd.q_all(w0))
            ax.axvspan(0, q_win, color=WINDOW_COLOUR, alpha=0.18, lw=0)
            ax.axvspan(q_win, q_all, color=TWO_PHASE_COLOUR, alpha=0.15, lw=0)
            ax.axvline(q_win, color="0.2", ls=":", lw=1.0)
            ax.axvline(q_all, color="0.2", ls="--", lw=1.0)
            q_th = np.linspace(0.0, q_win, 200)
            ax.plot(q_th, pd.ocv_vs_na(pd.composition_after(w0, q_th), T), color="0.2",
                    lw=1.0, ls="-.")
            ax.set_xlim(0, max(q_all, q_max) * 1.03)
        ax.set_title(f"{name}, {T:g} °C", fontsize=8, loc="left")
        ax.set_ylabel("E$_{WE}$ vs Na (V)")
        ax.set_xlabel("specific capacity (mAh g$^{-1}$)" if per_g
                      else "areal capacity (mAh cm$^{-2}$)")
        style.plain_numbers(ax)
    extra = [Patch(color=WINDOW_COLOUR, alpha=0.4, label="liquid window"),
             Patch(color=TWO_PHASE_COLOUR, alpha=0.4, label="liquid + K(s)"),
             Line2D([], [], color="0.2", ls=":", label="Q$_{window}$ (theory)"),
             Line2D([], [], color="0.2", ls="--", label="Q$_{all}$ (theory)"),
             Line2D([], [], color="0.2", ls="-.", label="OCV of the liquid (theory)")]
    style.run_legend(fig, runs, extra)
    return fig
