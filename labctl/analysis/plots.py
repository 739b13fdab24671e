"""Figures of a recorded run, drawn from the database with matplotlib's Agg backend.

`figure_for` builds the figure (tests inspect its artists); `plot_run` saves it. Kinds follow
the reference paper (Wu et al. 2025) so lab figures can be compared with it directly:

* ``drt-map``: Fig. 3b–d — τ on a log x axis, time of each spectrum up, colour = γ;
* ``ccd``: Fig. 1b — voltage against time with the current-density staircase;
* ``stripping``: Fig. 1e — potential against specific capacity over the Na–K phase-window
  background (liquid window up to Q_window, Na depleted into the two-phase region up to Q_all);
* ``voltage``, ``nyquist``, ``bode``, ``drt``, ``cv``: the usual per-run views.

Agg is selected explicitly because the CLI and analyses run headless (lab PCs over SSH, CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sqlalchemy import Engine

from labctl.analysis import cv as cv_mod
from labctl.analysis import eis
from labctl.recording.queries import StepSummary, step_spectrum
from labctl.recording.reads_analysis import RunContext, run_context, run_points

PlotKind = Literal["voltage", "nyquist", "bode", "drt", "drt-map", "ccd", "stripping", "cv"]
PLOT_KINDS: tuple[str, ...] = ("voltage", "nyquist", "bode", "drt", "drt-map", "ccd",
                               "stripping", "cv")


class PlotError(ValueError):
    """The run has no data for the requested kind of plot (e.g. a Nyquist plot without EIS)."""


def plot_run(engine: Engine, run_id: int, kind: str, path: str | Path, dpi: int = 120) -> Path:
    """Draw `kind` for the run and save it to `path` (format from the suffix, e.g. .png)."""
    fig = figure_for(engine, run_id, kind)
    try:
        path = Path(path)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def figure_for(engine: Engine, run_id: int, kind: str) -> Figure:
    ctx = run_context(engine, run_id)
    if ctx is None:
        raise PlotError(f"no run {run_id}")
    draw = {
        "voltage": _voltage, "nyquist": _nyquist, "bode": _bode, "drt": _drt,
        "drt-map": _drt_map, "ccd": _ccd, "stripping": _stripping, "cv": _cv,
    }.get(kind)
    if draw is None:
        raise PlotError(f"unknown plot kind {kind!r}; expected one of {', '.join(PLOT_KINDS)}")
    fig = plt.figure(figsize=(7, 4.5))
    try:
        draw(fig, engine, ctx)
    except Exception:
        plt.close(fig)
        raise
    fig.suptitle(f"run {ctx.run_id}: {ctx.cell_name}, {ctx.protocol_name}", fontsize=9)
    return fig


# ---- time series -------------------------------------------------------------------------------
def _points(engine: Engine, ctx: RunContext) -> dict[str, np.ndarray]:
    pts = run_points(engine, ctx.run_id)
    if len(pts["t_s"]) == 0:
        raise PlotError(f"run {ctx.run_id} has no time-series points")
    return pts


def _voltage(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    pts = _points(engine, ctx)
    ax = fig.add_subplot()
    t_h = pts["t_s"] / 3600.0
    ax.plot(t_h, pts["E_V"], lw=0.7, color="C0")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("E (V)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(t_h, pts["I_mA"], lw=0.7, color="C1")
    ax2.set_ylabel("I (mA)", color="C1")


def _ccd(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    ramps = [s for s in ctx.steps if s.kind == "ccd_ramp"]
    pts = _points(engine, ctx)
    if ramps:  # only the ramp's children: the rest/EIS before it would flatten the staircase
        ids = {s.id for s in ctx.steps if s.parent_id in {r.id for r in ramps}}
        sel = np.isin(pts["step_id"], list(ids))
        if sel.any():
            pts = {k: v[sel] for k, v in pts.items()}
    ax = fig.add_subplot()
    t_h = pts["t_s"] / 3600.0
    ax.plot(t_h, pts["E_V"], lw=0.6, color="k")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("V (V)")
    # staircase of the set-point current density (the measured current is noisy at rests)
    j = np.zeros_like(t_h)
    for s in ctx.steps:
        if s.kind == "galvanostatic" and s.params.get("current_mA") is not None:
            j[pts["step_id"] == s.id] = abs(float(s.params["current_mA"])) / ctx.area_cm2
    j = np.maximum.accumulate(j) if len(j) else j
    ax2 = ax.twinx()
    ax2.step(t_h, j, where="post", color="C3", lw=1.2)
    ax2.set_ylabel("current density (mA cm$^{-2}$)", color="C3")
    failed = [s for s in ctx.steps if s.parent_id is not None and s.status == "failed"
              and any(r.id == s.parent_id for r in ramps)]
    if failed:
        ax.axvline(failed[0].t_start_s / 3600.0, color="C3", ls="--", lw=0.8)
        ax.text(failed[0].t_start_s / 3600.0, ax.get_ylim()[1], f" {failed[0].end_reason}",
                va="top", fontsize=7, color="C3")


def _stripping(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    from labctl_chemistry import phase_diagram as pd

    pts = _points(engine, ctx)
    strip = [s for s in ctx.steps if s.kind == "galvanostatic"
             and float(s.params.get("current_mA") or 0.0) > 0]
    if not strip:  # imported runs: use the recorded current
        strip = [s for s in ctx.steps if s.kind == "galvanostatic"]
    ax = fig.add_subplot()
    per_g = ctx.alloy_mass_mg is not None and ctx.alloy_mass_mg > 0
    norm = ctx.alloy_mass_mg / 1000.0 if per_g else ctx.area_cm2
    offset = 0.0
    for s in strip:
        sel = pts["step_id"] == s.id
        if not sel.any():
            continue
        q = np.abs(pts["Q_mAh"][sel]) / norm + offset
        ax.plot(q, pts["E_V"][sel], color="k", lw=1.0)
        offset = float(q[-1])
    ax.set_xlabel("specific capacity (mAh g$^{-1}$)" if per_g else "capacity (mAh cm$^{-2}$)")
    ax.set_ylabel("E$_{WE}$ vs Na (V)")
    if per_g and ctx.k_wt_pct:
        w0 = ctx.k_wt_pct / 100.0
        T = ctx.temperature_C if ctx.temperature_C is not None else 25.0
        q_win, q_all = float(pd.q_window(w0, T)), float(pd.q_all(w0))
        ax.axvspan(0, q_win, color="tab:blue", alpha=0.15, label=f"liquid (≤{q_win:.0f})")
        ax.axvspan(q_win, q_all, color="tab:green", alpha=0.15, label="liquid + K(s)")
        ax.axvline(q_all, color="r", ls="--", lw=1.0, label=f"Q_all {q_all:.0f}")
        ax.set_xlim(0, max(q_all * 1.05, offset * 1.05))
        ax.legend(fontsize=7, loc="upper left")


def _cv(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    steps = [s for s in ctx.steps if s.kind == "cv" and s.n_points]
    if not steps:
        raise PlotError(f"run {ctx.run_id} has no CV step with data")
    pts = _points(engine, ctx)
    ax = fig.add_subplot()
    for s in steps:
        sel = pts["step_id"] == s.id
        p = s.params
        cyc = cv_mod.cycle_numbers(pts["t_s"][sel], pts["E_V"][sel], p.get("E_start_V"),
                                   p.get("vertices_V"), p.get("scan_rate_V_s"))
        cmap = plt.get_cmap("viridis")
        n = max(int(cyc.max()), 1)
        for c in np.unique(cyc):
            m = cyc == c
            ax.plot(pts["E_V"][sel][m], pts["I_mA"][sel][m], lw=0.8,
                    color=cmap((c - 1) / max(n - 1, 1)), label=f"cycle {c}")
    ax.set_xlabel("E (V)")
    ax.set_ylabel("I (mA)")
    ax.legend(fontsize=6, ncol=2)


# ---- impedance ---------------------------------------------------------------------------------
def _spectra(engine: Engine, ctx: RunContext) -> list[tuple[StepSummary, np.ndarray, np.ndarray]]:
    out = []
    for s in ctx.steps:
        if s.n_eis >= 3:
            sp = step_spectrum(engine, s.id)
            f, z = eis.spectrum(sp["frequency_Hz"], sp["Z_re_ohm"], sp["Z_im_ohm"])
            if f.size >= 3:
                out.append((s, f, z))
    if not out:
        raise PlotError(f"run {ctx.run_id} has no impedance spectra")
    return out


def _label(s: StepSummary) -> str:
    return f"step {s.index} (t={s.t_start_s / 3600:.2f} h)"


def _nyquist(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    ax = fig.add_subplot()
    for s, _, z in _spectra(engine, ctx):
        ax.plot(z.real, -z.imag, "o-", ms=2.5, lw=0.7, label=_label(s))
    ax.set_xlabel("Z' (Ω)")
    ax.set_ylabel("−Z'' (Ω)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=6)


def _bode(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    ax1 = fig.add_subplot(2, 1, 1)
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax1)
    for s, f, z in _spectra(engine, ctx):
        ax1.loglog(f, np.abs(z), "o-", ms=2, lw=0.7, label=_label(s))
        ax2.semilogx(f, np.degrees(np.angle(z)), "o-", ms=2, lw=0.7)
    ax1.set_ylabel("|Z| (Ω)")
    ax2.set_ylabel("phase (°)")
    ax2.set_xlabel("f (Hz)")
    ax1.legend(fontsize=6)


def _drt(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    ax = fig.add_subplot()
    for s, f, z in _spectra(engine, ctx):
        d = eis.drt(f, z)
        (line,) = ax.semilogx(d.tau, d.gamma, lw=1.0, label=_label(s))
        for p in d.peaks:
            ax.plot(p.tau, p.gamma_max, "v", color=line.get_color(), ms=4,
                    alpha=0.4 if p.edge_warning else 1.0)
        ax.axvspan(*d.tau_window, color="0.9", zorder=-1)
    ax.set_xlabel("τ (s)")
    ax.set_ylabel("γ (Ω)")
    ax.legend(fontsize=6)


def _drt_map(fig: Figure, engine: Engine, ctx: RunContext) -> None:
    spectra = _spectra(engine, ctx)
    fits = [(s, eis.drt(f, z)) for s, f, z in spectra]
    lo = min(float(d.tau.min()) for _, d in fits)
    hi = max(float(d.tau.max()) for _, d in fits)
    grid = np.logspace(np.log10(lo), np.log10(hi), 300)
    gamma = np.array([np.interp(np.log(grid), np.log(d.tau), d.gamma, left=0.0, right=0.0)
                      for _, d in fits])
    t_h = np.array([(s.t_start_s + (s.t_end_s or s.t_start_s)) / 2 / 3600.0 for s, _ in fits])
    ax = fig.add_subplot()
    if len(fits) == 1:  # one spectrum: a band instead of a contour
        t_edges = np.array([t_h[0] - 0.5, t_h[0] + 0.5])
        mesh = ax.pcolormesh(grid, t_edges, gamma, shading="auto", cmap="viridis")
    else:
        mesh = ax.pcolormesh(grid, t_h, gamma, shading="gouraud", cmap="viridis")
    ax.set_xscale("log")
    ax.set_xlabel("τ (s)")
    ax.set_ylabel("time of spectrum (h)")
    fig.colorbar(mesh, ax=ax, label="γ (Ω)")
    w = fits[0][1].tau_window
    for x in w:
        ax.axvline(x, color="w", ls=":", lw=0.8)
