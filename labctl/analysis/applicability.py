"""Which analyses fit a run, and in one line why not (figure kinds: labctl.analysis.figures).

An analysis applied to a run it does not fit produces numbers that look like results: a
"critical stripping capacity" of a CCD half-cycle, a CV "peak" that is the vertex of a straight
line. So each analysis states what it needs from the run's recorded steps; asked of a run that
lacks it, it says so in one line and stores nothing (the figure kinds follow the same rule in
labctl.analysis.figures.applies). These rules read only the run's step tree and cell (the
RunContext of labctl.recording); the one that needs data, whether a CV has peaks, is decided by
labctl.analysis.cv on the points.
"""

from __future__ import annotations

from collections.abc import Callable

from labctl.recording.reads_analysis import RunContext

__all__ = ["ANALYSIS_NAMES", "NotApplicable", "analysis_reason"]

#: spectra need this many points for DRT and lin-KK, and the paper's circuit one per parameter
MIN_SPECTRUM_POINTS = 3
MIN_CIRCUIT_POINTS = 11


class NotApplicable(LookupError):
    """An analysis or figure asked of a run it does not fit; the message is the one line."""


Rule = Callable[[RunContext], str | None]


def _has_ramp(ctx: RunContext) -> bool:
    return any(s.kind == "ccd_ramp" for s in ctx.steps)


def _ccd(ctx: RunContext) -> str | None:
    if not _has_ramp(ctx):
        return "it has no ccd_ramp step"
    ramps = {s.id for s in ctx.steps if s.kind == "ccd_ramp"}
    if not any(s.parent_id in ramps and s.kind == "galvanostatic" for s in ctx.steps):
        return "its ccd_ramp ran no half-cycle"
    return None


def _spectra(n: int) -> Rule:
    def rule(ctx: RunContext) -> str | None:
        if not any(s.n_eis >= n for s in ctx.steps):
            return f"it has no impedance spectrum of at least {n} points"
        return None
    return rule


def _strips(ctx: RunContext) -> str | None:
    """A critical-stripping test: strips (positive current) outside a ramp, never a plate."""
    if _has_ramp(ctx):
        return "it is a CCD run (its half-cycles are not a critical-stripping test)"
    currents = [float(s.params.get("current_mA") or 0.0) for s in ctx.steps
                if s.kind == "galvanostatic" and s.n_points]
    if not any(c > 0 for c in currents):
        return "it has no stripping (positive-current galvanostatic) step with data"
    if any(c < 0 for c in currents):
        return "it plates between strips (a cycling run, not a critical-stripping test)"
    return None


def _critical_stripping(ctx: RunContext) -> str | None:
    if (why := _strips(ctx)) is not None:
        return why
    if ctx.anode_material != "NaK" or not ctx.alloy_mass_mg:
        return "its cell is not a NaK anode of known alloy mass (capacity per gram undefined)"
    return None


def _cycling(ctx: RunContext) -> str | None:
    ramps = {s.id for s in ctx.steps if s.kind == "ccd_ramp"}
    if not any(s.kind == "galvanostatic" and s.n_points and s.parent_id not in ramps
               for s in ctx.steps):
        return "it has no galvanostatic step with data outside a CCD ramp"
    if _critical_stripping(ctx) is None:
        return "it is a critical-stripping test (one strip, no plating), not cycling"
    return None


def _cv(ctx: RunContext) -> str | None:
    if not any(s.kind == "cv" and s.n_points for s in ctx.steps):
        return "it has no CV step with data"
    return None


_ANALYSES: dict[str, Rule] = {
    "ccd": _ccd,
    "drt": _spectra(MIN_SPECTRUM_POINTS),
    "circuit": _spectra(MIN_CIRCUIT_POINTS),
    "cv": _cv,
    "critical_stripping": _critical_stripping,
    "cycling": _cycling,
}
ANALYSIS_NAMES: tuple[str, ...] = tuple(_ANALYSES)


def analysis_reason(name: str, ctx: RunContext) -> str | None:
    """None if analysis `name` fits the run, else the one line saying why it does not."""
    rule = _ANALYSES.get(name)
    if rule is None:
        raise ValueError(f"unknown analysis {name!r}; expected one of {', '.join(_ANALYSES)}")
    why = rule(ctx)
    return None if why is None else f"analysis {name} does not apply to run {ctx.run_id}: {why}"
