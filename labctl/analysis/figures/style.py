"""Shared look of labctl figures: one colour per run, legends outside the data, readable axes.

Rules every figure kind follows (the tests check them on rendered figures):

* a run keeps its colour in every panel of a figure (the order the runs were given in);
* legends are figure legends outside the axes (``loc="outside right upper"`` under the
  constrained layout), or a colour bar when a panel holds many spectra;
* every axis label ends with its unit in parentheses; linear axes never use offset notation
  (an imported 1.5 s segment shows 0–1.5 s, not "+3.6e3");
* time axes pick s, min or h from the span shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LinearSegmentedColormap, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from labctl.analysis.figures.model import RunData

#: Okabe–Ito colours: distinguishable with the common colour-vision deficiencies, and in print.
RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
               "#F0E442")
WIDTH_IN = 7.0


def run_colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def new_figure(n_panels: int = 1, *, rows: int | None = None, height_in: float | None = None,
               width_in: float = WIDTH_IN, sharex: bool = False, sharey: bool = False
               ) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with `n_panels` axes (stacked, or in a grid of `rows`).

    matplotlib's Figure is used without pyplot: no global figure registry, no GUI backend, so
    figures drawn in a headless CLI or a test are freed with the object.
    """
    rows = rows or n_panels
    cols = -(-n_panels // rows)
    height = height_in or max(3.2, 2.4 * rows)
    fig = Figure(figsize=(width_in, height), layout="constrained")
    grid = fig.subplots(rows, cols, sharex=sharex, sharey=sharey, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n_panels:]:
        ax.remove()
    return fig, axes[:n_panels]


def plain_numbers(ax: Axes) -> None:
    """No offset or scientific multiplier on the linear axes of `ax`."""
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "linear":
            fmt = ScalarFormatter(useOffset=False)
            fmt.set_scientific(False)
            axis.set_major_formatter(fmt)


def time_scale(span_s: float) -> tuple[float, str]:
    """Divisor and unit for a time axis spanning `span_s` seconds."""
    if span_s <= 300:
        return 1.0, "s"
    if span_s <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def run_legend(fig: Figure, runs: Sequence[RunData], extra: Sequence[Line2D] = ()) -> None:
    """One legend entry per run (its colour) plus any `extra` handles, outside the axes."""
    handles = [Line2D([], [], color=run_colour(i), lw=2, label=r.label)
               for i, r in enumerate(runs)]
    fig.legend(handles=[*handles, *extra], loc="outside right upper", fontsize=7, frameon=False)


def shades(colour: str, n: int) -> list[tuple[float, float, float]]:
    """`n` shades of a run's colour, light (first spectrum) to full (last)."""
    base = np.array(to_rgb(colour))
    if n <= 1:
        return [tuple(base)]
    mix = np.linspace(0.35, 1.0, n)
    return [tuple(1.0 - m * (1.0 - base)) for m in mix]


def run_colormap(colour: str) -> Colormap:
    """A sequential colormap from a light tint of the run's colour to the colour itself."""
    return LinearSegmentedColormap.from_list("run", shades(colour, 2))


def panel_title(ax: Axes, run: RunData, i: int) -> None:
    ax.set_title(run.label, fontsize=8, color=run_colour(i), loc="left")
