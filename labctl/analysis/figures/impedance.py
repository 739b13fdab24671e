"""Impedance figures: Nyquist with the fitted circuit (Fig. 2c–e), Bode, DRT, DRT maps (Fig. 3b–d).

Wu et al. 2025 Fig. 2c–e show each alloy's spectra with the fit of their circuit (Fig. 2b,
R∞ + three R‖CPE arcs); Fig. 3b–d map the DRT of every in-situ spectrum against time. The fit
drawn is the one the `circuit` analysis stored for that spectrum (R, τ, α per arc), so the
figure shows exactly the numbers `labctl show` reports (R∞ + GB + one electrode arc where the
analysis found the SnO2/interface split not identifiable). A panel whose spectra have no
stored fit says so and names the command that computes it.

A run's spectra share its colour, in shades from light (first) to full (last); a panel with
several spectra gets a colour bar of their time instead of a legend entry per spectrum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from labctl.analysis import eis
from labctl.analysis.circuits import zarc
from labctl.analysis.figures import style
from labctl.analysis.figures.model import FigureKind, RunData, Spectrum

OHM = "Ω"


def _grid(n: int) -> dict[str, Any]:
    """Rows, width and height for `n` per-run panels (up to three side by side)."""
    rows = -(-n // 3)
    return {"rows": rows, "height_in": 3.2 * rows + 0.6, "width_in": 3.4 * min(n, 3) + 0.8}


def _time_bar(fig: Figure, ax: Axes, run: RunData, i: int, spectra: Sequence[Spectrum]
              ) -> tuple[float, str]:
    """A colour bar of spectrum time for a panel with several spectra; returns (div, unit)."""
    t = np.array([s.t_mid_s for s in spectra])
    div, unit = style.time_scale(float(t.max() - t.min()) or float(t.max()) or 1.0)
    lo, hi = float(t.min()) / div, float(t.max()) / div
    bar = fig.colorbar(ScalarMappable(Normalize(lo, hi if hi > lo else lo + 1),
                                      style.run_colormap(style.run_colour(i))),
                       ax=ax, pad=0.01, aspect=30)
    bar.set_label(f"t of spectrum ({unit})", fontsize=7)
    return div, unit


#: R∞ and the (R, τ, α) of each ZARC of a fitted model
StoredFit = tuple[float, list[tuple[float, float, float]]]


def _fit_arcs(run: RunData, sp: Spectrum) -> StoredFit | None:
    """R∞ and (R, τ, α) of each arc of the model the spectrum determines.

    The stored `circuit` results when present: the paper's three arcs when their split was
    identifiable, else R∞ + GB + the one electrode arc (R_SnO2_plus_int), as the analysis
    reports them. None when the spectrum has no stored fit: fitting here would take seconds
    per spectrum and could differ from what the analysis stored.
    """
    got = run.step_results(sp.step.id)
    names = (eis.ARC_NAMES if got.get("circuit_identifiable", 1.0) else
             ("GB", "SnO2_plus_int"))
    keys = ["R0_ohm", *(f"{k}_{a}{u}" for a in names
                        for k, u in (("R", "_ohm"), ("tau", "_s"), ("alpha", "")))]
    if not all(k in got for k in keys):
        return None
    return got["R0_ohm"], [(got[f"R_{a}_ohm"], got[f"tau_{a}_s"], got[f"alpha_{a}"])
                           for a in names]


def fitted_impedance(run: RunData, sp: Spectrum, f: np.ndarray) -> np.ndarray | None:
    """The stored circuit fit evaluated at `f` for this spectrum, or None if there is none."""
    fit = _fit_arcs(run, sp)
    if fit is None:
        return None
    r0, arcs = fit
    z = np.full(f.shape, r0, dtype=complex)
    for r, tau, alpha in arcs:
        if not (np.isfinite(tau) and tau > 0):
            return None
        z = z + zarc(f, r, tau, alpha)
    return z


def nyquist(runs: Sequence[RunData]) -> Figure:
    """One panel per run, stacked: measured points and the fitted circuit of each spectrum.

    Panels are not forced to equal aspect: the arcs are 3-5 times wider than high, and at equal
    aspect three panels leave the data a strip a centimetre tall.
    """
    spectra = [r.require_spectra(FigureKind.NYQUIST) for r in runs]
    fig, axes = style.new_figure(len(runs), height_in=2.3 * len(runs) + 0.7)
    for i, (run, ax, sps) in enumerate(zip(runs, axes, spectra)):
        colours = style.shades(style.run_colour(i), len(sps))
        for sp, colour in zip(sps, colours):
            ax.plot(sp.Z_ohm.real, -sp.Z_ohm.imag, "o", ms=2.6, mfc="none", mew=0.6,
                    color=colour, gid=run.gid)
            f_fit = np.logspace(np.log10(sp.f_Hz.min()), np.log10(sp.f_Hz.max()), 300)
            z_fit = fitted_impedance(run, sp, f_fit)
            if z_fit is not None:
                ax.plot(z_fit.real, -z_fit.imag, "-", lw=0.9, color=colour, gid=run.gid)
        if not any(line.get_linestyle() == "-" for line in ax.lines):
            ax.text(0.01, 0.97, f"no stored circuit fit (labctl analyze {run.run_id} --only "
                    "circuit)", transform=ax.transAxes, va="top", fontsize=7, color="0.35")
        if len(sps) > 1:
            _time_bar(fig, ax, run, i, sps)
        style.panel_title(ax, run, i)
        ax.set_xlabel(f"Z' ({OHM})")
        ax.set_ylabel(f"−Z'' ({OHM})")
        ax.set_ylim(bottom=min(0.0, *(float(-sp.Z_ohm.imag.min()) for sp in sps)))
        style.plain_numbers(ax)
    fig.legend(handles=[Line2D([], [], ls="", marker="o", ms=3, mfc="none", color="0.3",
                               label="measured"),
                        Line2D([], [], color="0.3", label="circuit fit (Fig. 2b; one electrode arc "
                               "when SnO$_2$/interface are not separable)")],
               loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    return fig


def bode(runs: Sequence[RunData]) -> Figure:
    """|Z| and phase against frequency, every spectrum, one colour per run."""
    spectra = [r.require_spectra(FigureKind.BODE) for r in runs]
    fig, (ax_m, ax_p) = style.new_figure(2, sharex=True, height_in=5.0)
    for i, (run, sps) in enumerate(zip(runs, spectra)):
        for sp, colour in zip(sps, style.shades(style.run_colour(i), len(sps))):
            ax_m.loglog(sp.f_Hz, np.abs(sp.Z_ohm), "o-", ms=1.8, lw=0.6, color=colour,
                        gid=run.gid)
            ax_p.semilogx(sp.f_Hz, np.degrees(np.angle(sp.Z_ohm)), "o-", ms=1.8, lw=0.6,
                          color=colour, gid=run.gid)
    ax_m.set_ylabel(f"|Z| ({OHM})")
    ax_p.set_ylabel("phase (°)")
    ax_p.set_xlabel("f (Hz)")
    style.plain_numbers(ax_p)
    style.run_legend(fig, runs)
    return fig


def drt(runs: Sequence[RunData]) -> Figure:
    """γ(τ) of every spectrum (λ = 1e-3, as the paper), one colour per run."""
    spectra = [r.require_spectra(FigureKind.DRT) for r in runs]
    fig, (ax,) = style.new_figure(1, height_in=3.8)
    window = None
    for i, (run, sps) in enumerate(zip(runs, spectra)):
        for sp, colour in zip(sps, style.shades(style.run_colour(i), len(sps))):
            d = eis.drt(sp.f_Hz, sp.Z_ohm)
            ax.semilogx(d.tau, d.gamma, lw=1.0, color=colour, gid=run.gid)
            window = d.tau_window
    if window is not None:
        ax.axvspan(*window, color="0.93", zorder=-1, lw=0)
    ax.set_xlabel("τ (s)")
    ax.set_ylabel(f"γ ({OHM})")
    style.plain_numbers(ax)
    style.run_legend(fig, runs, [Line2D([], [], color="0.85", lw=6,
                                        label="τ window of the data")])
    return fig


def drt_map(runs: Sequence[RunData]) -> Figure:
    """Fig. 3b–d: γ over τ (x, log) and spectrum time (y), one panel per run, one colour scale."""
    fits = []
    for run in runs:
        sps = run.require_spectra(FigureKind.DRT_MAP)
        fits.append([(sp, eis.drt(sp.f_Hz, sp.Z_ohm)) for sp in sps])
    g_max = max(float(d.gamma.max()) for f in fits for _, d in f) or 1.0
    norm = Normalize(0.0, g_max)
    fig, axes = style.new_figure(len(runs), **_grid(len(runs)))
    span = max(max(sp.t_mid_s for sp, _ in f) - min(sp.t_mid_s for sp, _ in f) for f in fits)
    div, unit = style.time_scale(span or 1.0)
    for i, (run, ax, f) in enumerate(zip(runs, axes, fits)):
        lo = min(float(d.tau.min()) for _, d in f)
        hi = max(float(d.tau.max()) for _, d in f)
        grid = np.logspace(np.log10(lo), np.log10(hi), 300)
        gamma = np.array([np.interp(np.log(grid), np.log(d.tau), d.gamma, left=0.0, right=0.0)
                          for _, d in f])
        t = np.array([sp.t_mid_s for sp, _ in f]) / div
        if len(f) == 1:  # one spectrum: a band of a tenth of the axis rather than a surface
            half = max(span / div, 1.0) * 0.05
            t, gamma = np.array([t[0] - half, t[0] + half]), np.vstack([gamma, gamma])
        mesh = ax.pcolormesh(grid, t, gamma, shading="gouraud", cmap="viridis", norm=norm)
        mesh.set_gid(run.gid)
        ax.set_xscale("log")
        ax.set_xlabel("τ (s)")
        ax.set_ylabel(f"t of spectrum ({unit})")
        style.panel_title(ax, run, i)
        for x in f[0][1].tau_window:
            ax.axvline(x, color="w", ls=":", lw=0.8)
        style.plain_numbers(ax)
    fig.colorbar(ScalarMappable(norm, "viridis"), ax=axes, label=f"γ ({OHM})", aspect=40)
    return fig
