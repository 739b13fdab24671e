"""Whether a figure kind applies to a run, and if not, the one line that says why.

Checked for every run before anything is drawn, so `labctl plot` refuses a set with one line
naming the run, and `labctl report` picks the kinds each run supports without drawing to find
out. Only what was loaded for the kind is looked at (see `figures.DRAW`'s Needs).
"""

from __future__ import annotations

from collections.abc import Callable

from labctl.analysis.figures.model import FigureKind, RunData


def _points(run: RunData) -> str | None:
    return None if len(run.points.get("t_s", ())) else "has no time-series points"


def _spectra(run: RunData) -> str | None:
    return None if run.spectra else "has no impedance spectra"


def _ccd(run: RunData) -> str | None:
    if not any(s.kind == "ccd_ramp" for s in run.ctx.steps):
        return "has no CCD ramp"
    return _points(run)


def _ccd_summary(run: RunData) -> str | None:
    found = run.result("ccd_mA_cm2")
    if found is None or found.value is None:
        return f"has no CCD result (labctl analyze {run.run_id} --only ccd)"
    return None


def _stripping(run: RunData) -> str | None:
    if any(s.kind == "ccd_ramp" for s in run.ctx.steps):
        return "is a CCD ramp, not a stripping run"
    if not any(s.kind == "galvanostatic" and s.n_points for s in run.ctx.steps):
        return "has no galvanostatic step with data"
    return _points(run)


def _cv(run: RunData) -> str | None:
    if not any(s.kind == "cv" and s.n_points for s in run.ctx.steps):
        return "has no CV step with data"
    return _points(run)


CHECKS: dict[FigureKind, Callable[[RunData], str | None]] = {
    FigureKind.VOLTAGE: _points,
    FigureKind.CCD: _ccd,
    FigureKind.CCD_SUMMARY: _ccd_summary,
    FigureKind.STRIPPING: _stripping,
    FigureKind.NYQUIST: _spectra,
    FigureKind.BODE: _spectra,
    FigureKind.DRT: _spectra,
    FigureKind.DRT_MAP: _spectra,
    FigureKind.CV: _cv,
}


def why_not(kind: FigureKind, run: RunData) -> str | None:
    """None if `kind` can be drawn for `run`, else the reason as one line."""
    reason = CHECKS[kind](run)
    return None if reason is None else f"run {run.run_id} {reason}, so no {kind} figure"
