"""Checks across fields and steps, located like schema errors, before any run row or instrument.

The schema checks one value at a time (its kind, sign and instrument range); this module checks
what only the whole protocol (and, once resolved, the cell) can say:

* **expansion** — nested repeats multiply; more than `MAX_EXPANDED_STEPS` concrete steps is
  refused at the repeat that crosses the cap, before anything is expanded;
* **the protocol's own limits** — a potentiostatic voltage, a CV start or vertex outside the
  E window (the global `limits:` intersected with the step's), a galvanostatic cut-off beyond
  it (the limit, a failure, would trip before the cut-off could end the step), or a current
  above I_max in the same unit (no cell needed for mA against mA);
* **chemistry** (with the cell) — a NaK composition outside the Na–K liquid window at the cell's
  temperature (labctl_chemistry): a warning, refused when the protocol asks for the critical
  stripping analysis, whose capacity is then meaningless (Wu et al. 2025: the window is what
  makes NaK strippable); a CCD protocol on a cell that is not symmetric: a warning (the CCD
  of a symmetric cell is defined with the same metal on both sides).

Warnings are returned, not raised: they show and are kept with the run, and never block it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl.protocol.cell import CellSpec
from labctl.protocol.errors import LocatedError, PathElem
from labctl.protocol.schema import (
    CCDRampSpec,
    CVSpec,
    EISSpec,
    GalvanostaticSpec,
    InterleaveSpec,
    LimitsSpec,
    PotentiostaticSpec,
    RepeatSpec,
    num,
)
from labctl.protocol.units import Qty
from labctl_chemistry import phase_diagram

if TYPE_CHECKING:  # the loader runs these checks, so it is imported only for types
    from labctl.protocol.loader import ExpandedStep, ProtocolDocument

#: concrete steps one protocol may expand to (each becomes rows and instrument loads)
MAX_EXPANDED_STEPS = 10_000

Path_ = tuple[PathElem, ...]


def expansion_errors(doc: ProtocolDocument) -> list[LocatedError]:
    """Refuse nested repeats whose total expansion exceeds the cap, at the crossing repeat."""
    errors: list[LocatedError] = []
    total = _size(doc, list(doc.spec.steps), ("steps",), errors)
    if total > MAX_EXPANDED_STEPS and not errors:
        errors.append(doc.source.error(("steps",), _too_many(total)))
    return errors


def _too_many(n: int) -> str:
    return (f"the protocol expands to {n:,} steps, more than the {MAX_EXPANDED_STEPS:,} one "
            "run may hold; use fewer or shorter repeats")


def _size(doc: ProtocolDocument, steps: list[object], path: Path_,
          errors: list[LocatedError]) -> int:
    total = 0
    for i, step in enumerate(steps):
        if isinstance(step, RepeatSpec):
            inner = _size(doc, list(step.steps), (*path, i, "steps"), errors)
            n = step.iterations * inner
            if n > MAX_EXPANDED_STEPS and not errors:
                key = "vary" if step.vary else "count"
                errors.append(doc.source.error((*path, i, key), _too_many(n)))
            total += n
        else:
            total += 1
        if total > MAX_EXPANDED_STEPS:
            return total
    return total


@dataclass(frozen=True)
class _Window:
    lo: float | None = None
    hi: float | None = None
    lo_text: str = ""
    hi_text: str = ""
    i_max: Qty | None = None

    def narrowed(self, spec: LimitsSpec | None) -> _Window:
        if spec is None:
            return self
        lo, hi = num(spec.E_min), num(spec.E_max)
        w = self
        if lo is not None and (w.lo is None or lo > w.lo):
            w = _Window(lo, w.hi, f"E_min {spec.E_min}", w.hi_text, w.i_max)
        if hi is not None and (w.hi is None or hi < w.hi):
            w = _Window(w.lo, hi, w.lo_text, f"E_max {spec.E_max}", w.i_max)
        if isinstance(spec.I_max, Qty):
            w = _Window(w.lo, w.hi, w.lo_text, w.hi_text, spec.I_max)
        return w


def limit_errors(doc: ProtocolDocument, expanded: list[ExpandedStep]) -> list[LocatedError]:
    """Set-points, vertices, cut-offs and currents against the protocol's own limits."""
    base = _Window().narrowed(doc.spec.limits)
    errors: list[LocatedError] = []
    for ex in expanded:
        window = base.narrowed(ex.spec.limits)
        for path, message in _step_problems(ex.spec, window):
            e = doc.source.error((*ex.path, *path), message)
            if e not in errors:
                errors.append(e)
    return errors


def _outside(q: object, w: _Window, what: str) -> str | None:
    v = num(q)  # type: ignore[arg-type]
    if v is None:
        return None
    if w.hi is not None and v > w.hi:
        return f"{what} {q} is above the limit {w.hi_text}"
    if w.lo is not None and v < w.lo:
        return f"{what} {q} is below the limit {w.lo_text}"
    return None


def _step_problems(spec: object, w: _Window) -> Iterator[tuple[Path_, str]]:
    if isinstance(spec, PotentiostaticSpec):
        msg = _outside(spec.voltage, w, "voltage")
        if msg:
            yield ("voltage",), msg + "; the limit would trip at once"
    elif isinstance(spec, CVSpec):
        msg = _outside(spec.E_start, w, "E_start")
        if msg:
            yield ("E_start",), msg
        for k, v in enumerate(spec.vertices):
            msg = _outside(v, w, "vertex")
            if msg:
                yield ("vertices", k), msg + "; the scan would trip the limit"
    elif isinstance(spec, GalvanostaticSpec):
        yield from _galvanostatic(spec, w, ())
    elif isinstance(spec, InterleaveSpec):
        yield from _galvanostatic(spec.galvanostatic, w, ("galvanostatic",))
    elif isinstance(spec, CCDRampSpec):
        msg = _over_current(spec.max, w)
        if msg:
            yield ("max",), msg
    elif isinstance(spec, EISSpec) and spec.mode == "GEIS":
        msg = _over_current(spec.amplitude, w)
        if msg:
            yield ("amplitude",), msg


def _galvanostatic(spec: GalvanostaticSpec, w: _Window,
                   at: Path_) -> Iterator[tuple[Path_, str]]:
    for key in ("E_min", "E_max"):
        msg = _outside(getattr(spec, key), w, f"cut-off {key}")
        if msg:
            yield (*at, key), msg + " (a failure) — the step could never end on it"
    msg = _over_current(spec.current, w)
    if msg:
        yield (*at, "current"), msg


def _over_current(q: object, w: _Window) -> str | None:
    if not isinstance(q, Qty) or w.i_max is None or q.kind is not w.i_max.kind:
        return None  # a current density against mA (or back) needs the cell: resolve checks it
    if abs(q.value) > w.i_max.value * (1 + 1e-12):
        return f"{q} is above the limit I_max {w.i_max}"
    return None


# ---- with the cell ---------------------------------------------------------------------------
def _cell_error(doc: ProtocolDocument, cell: CellSpec, cell_path: Path_, proto_path: Path_,
                message: str) -> LocatedError:
    """Located in the cell file when it was loaded from one, else at the protocol's line."""
    src = cell._source
    return src.error(cell_path, message) if src is not None else \
        doc.source.error(proto_path, message)


def liquid_window_problem(cell: CellSpec) -> str | None:
    """Why the cell's NaK working electrode is not liquid at its temperature, or None."""
    if cell.anode.material != "NaK" or cell.anode.k_wt_pct is None:
        return None
    return _not_liquid(cell.anode.k_wt_pct, cell.temperature_C)


def _not_liquid(k_wt_pct: float, t: float) -> str | None:
    if phase_diagram.is_liquid(k_wt_pct / 100.0, t):
        return None
    if t < phase_diagram.EUTECTIC_T_C:
        return (f"NaK with {k_wt_pct:g} wt% K is solid at {t:g} °C (below the "
                f"eutectic, {phase_diagram.EUTECTIC_T_C:g} °C)")
    lo, hi = phase_diagram.w_min(t) * 100, phase_diagram.w_max(t) * 100
    return (f"NaK with {k_wt_pct:g} wt% K is not liquid at {t:g} °C (the liquid "
            f"window there is {lo:.1f}–{hi:.1f} wt% K)")


def cell_findings(doc: ProtocolDocument, cell: CellSpec
                  ) -> tuple[list[LocatedError], list[LocatedError]]:
    """(errors, warnings) of this protocol on this cell."""
    errors: list[LocatedError] = []
    warnings: list[LocatedError] = []
    problem = liquid_window_problem(cell)
    if problem is not None:
        if "critical_stripping" in doc.spec.analyses:
            errors.append(_cell_error(
                doc, cell, ("anode", "k_wt_pct"), ("analyses",),
                problem + "; the critical stripping analysis needs a liquid alloy (its "
                "capacity would be meaningless): choose a composition inside the window or "
                "drop that analysis"))
        else:
            warnings.append(_cell_error(doc, cell, ("anode", "k_wt_pct"), ("steps",),
                                        "warning: " + problem))
    ccd_steps = [i for i, s in enumerate(doc.spec.steps) if isinstance(s, CCDRampSpec)]
    if (ccd_steps or "ccd" in doc.spec.analyses) and not cell.symmetric:
        where: Path_ = ("steps", ccd_steps[0]) if ccd_steps else ("analyses",)
        counter = cell.counter_electrode + (
            f"{cell.counter_k_wt_pct:g}" if cell.counter_k_wt_pct is not None else "")
        anode = cell.anode.material + (
            f"{cell.anode.k_wt_pct:g}" if cell.anode.k_wt_pct is not None else "")
        warnings.append(doc.source.error(
            where, f"warning: a CCD on cell '{cell.id}', which is not symmetric ({anode} | "
                   f"{counter}): the critical current density is defined on a symmetric cell"))
    return errors, warnings


def cell_warnings(cell: CellSpec) -> list[LocatedError]:
    """What a cell alone earns: a NaK composition (either electrode) outside the window."""
    if cell._source is None:
        return []
    out = []
    problem = liquid_window_problem(cell)
    if problem is not None:
        out.append(cell._source.error(("anode", "k_wt_pct"), "warning: " + problem))
    if cell.counter_electrode == "NaK" and cell.counter_k_wt_pct is not None:
        counter = _not_liquid(cell.counter_k_wt_pct, cell.temperature_C)
        if counter is not None:
            out.append(cell._source.error(("counter_k_wt_pct",),
                                          "warning: counter electrode: " + counter))
    return out
