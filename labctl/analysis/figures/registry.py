"""The drawing function and the data needs of each figure kind, and the one entry point `draw`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from matplotlib.figure import Figure

from labctl.analysis.figures import impedance, stripping, summary, timeseries
from labctl.analysis.figures.applies import why_not
from labctl.analysis.figures.kinds import FORMATS, FigureKind
from labctl.analysis.figures.model import Needs, PlotError, RunData, Spectrum

DRAW: dict[FigureKind, tuple[Callable[[Sequence[RunData]], Figure], Needs]] = {
    FigureKind.VOLTAGE: (timeseries.voltage, Needs.POINTS),
    FigureKind.CCD: (timeseries.ccd, Needs.POINTS),
    FigureKind.CCD_SUMMARY: (summary.ccd_summary, Needs.RESULTS),
    FigureKind.STRIPPING: (stripping.stripping, Needs.POINTS),
    FigureKind.NYQUIST: (impedance.nyquist, Needs.SPECTRA | Needs.RESULTS),
    FigureKind.BODE: (impedance.bode, Needs.SPECTRA),
    FigureKind.DRT: (impedance.drt, Needs.SPECTRA),
    FigureKind.DRT_MAP: (impedance.drt_map, Needs.SPECTRA),
    FigureKind.CV: (timeseries.cv, Needs.POINTS),
}
PLOT_KINDS: tuple[str, ...] = tuple(k.value for k in FigureKind)


def parse_kind(kind: str) -> FigureKind:
    try:
        return FigureKind(kind)
    except ValueError:
        raise PlotError(f"unknown plot kind {kind!r}; expected one of "
                        f"{', '.join(PLOT_KINDS)}") from None


def needs(kind: str | FigureKind) -> Needs:
    return DRAW[parse_kind(kind)][1]


def draw(kind: str | FigureKind, runs: Sequence[RunData]) -> Figure:
    """The figure of `kind` for `runs` (in legend and colour order); PlotError if it does not
    apply to one of them."""
    if not runs:
        raise PlotError("no runs to plot")
    kind = parse_kind(kind)
    for run in runs:
        reason = why_not(kind, run)
        if reason is not None:
            raise PlotError(reason)
    fn, _ = DRAW[kind]
    fig = fn(runs)
    if len(runs) == 1:
        fig.suptitle(f"run {runs[0].run_id}: {runs[0].ctx.cell_name}, "
                     f"{runs[0].ctx.protocol_name}", fontsize=9)
    return fig


__all__ = ["DRAW", "FORMATS", "PLOT_KINDS", "FigureKind", "Needs", "PlotError", "RunData",
           "Spectrum", "draw", "needs", "parse_kind", "why_not"]
