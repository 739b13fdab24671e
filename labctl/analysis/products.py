"""Database-facing wrappers of the data-product analyses (ccd, drt, circuit, cv, cycling).

Each wrapper reads through labctl.recording's read helpers, computes with a plain function from
its own module, and writes only through `Recorder.store_results` under its analysis name and
version (so `labctl analyze RUN --only NAME` replaces exactly that analysis's rows). They are
registered in runner.ANALYSES. Per-step values carry the step's id, so a DRT peak or a circuit
resistance is always tied to the spectrum it came from.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Engine

from labctl.analysis import cv, cycling, eis, stripping
from labctl.analysis.applicability import ANALYSIS_NAMES, NotApplicable, analysis_reason
from labctl.analysis.fit_quality import Flagged
from labctl.engine import ccd
from labctl.engine.events import EventKind, Severity, StepStatus
from labctl.recording.queries import (
    StepSummary,
    run_events,
    step_points,
    step_spectrum,
)
from labctl.recording.reads_analysis import RunContext, run_context, run_points
from labctl.recording.recorder import Recorder

Results = dict[str, float | str | Flagged | None]
#: (name, value, unit, step_id[, flag_reason]): a reason that is not None flags the value
Row = (tuple[str, float | str | None, str, int | None]
       | tuple[str, float | str | None, str, int | None, str | None])
_Row5 = tuple[str, float | str | None, str, int | None, str | None]


def _store(recorder: Recorder, run_id: int, analysis: str, version: str, rows: list[Row]
           ) -> Results:
    """Store the rows; record one event per step with flagged values; return the run-level
    values, flagged ones as `Flagged` so no caller can present them as results."""
    full: list[_Row5] = [r if len(r) == 5 else (*r, None) for r in rows]  # type: ignore[misc]
    recorder.store_results(run_id, analysis, version, full)
    _flag_events(recorder, run_id, analysis, full)
    return {name: value if flag is None else Flagged(value, flag)
            for name, value, _, step_id, flag in full if step_id is None}


def _flag_events(recorder: Recorder, run_id: int, analysis: str, rows: list[_Row5]) -> None:
    by_step: dict[int | None, list[str]] = {}
    for name, _, _, step_id, flag in rows:
        if flag is not None:
            by_step.setdefault(step_id, []).append(name)
    for step_id, names in by_step.items():
        reasons = sorted({r[4] for r in rows if r[3] == step_id and r[4] is not None})
        recorder.event(run_id, EventKind.NOTE,
                       f"{analysis}: {len(names)} values flagged, not results "
                       f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}): "
                       f"{reasons[0]}{' (and more)' if len(reasons) > 1 else ''}",
                       step_id=step_id, severity=Severity.WARNING,
                       data={"analysis": analysis, "flagged": names, "reasons": reasons})


def _ctx(engine: Engine, run_id: int, analysis: str | None = None) -> RunContext:
    """The run's context; NotApplicable (nothing stored) if `analysis` does not fit it."""
    ctx = run_context(engine, run_id)
    if ctx is None:
        raise LookupError(f"no run {run_id}")
    if analysis is not None and (why := analysis_reason(analysis, ctx)) is not None:
        raise NotApplicable(why)
    return ctx


def _last_abs_q(engine: Engine, step_id: int) -> float:
    q = step_points(engine, [step_id])["Q_mAh"]
    return float(abs(q[-1])) if len(q) else 0.0


# ---- ccd ---------------------------------------------------------------------------------------
def analyze_ccd(engine: Engine, recorder: Recorder, run_id: int) -> Results:
    """CCD per ccd_ramp step; with several ramps the last one gives the run-level values."""
    ctx = _ctx(engine, run_id, "ccd")
    events = [e for e in run_events(engine, run_id) if e.kind == EventKind.DETECTOR]
    rows: list[Row] = []
    for ramp in (s for s in ctx.steps if s.kind == "ccd_ramp"):
        children = [s for s in ctx.steps if s.parent_id == ramp.id]
        gal = [s for s in children if s.kind == "galvanostatic"]
        mode_by_step = {e.step_id: (e.data or {}).get("mode") for e in events}
        halves = [
            ccd.HalfCycle(s.id, float(s.params.get("current_mA") or 0.0), StepStatus(s.status),
                          s.end_reason, _last_abs_q(engine, s.id), mode_by_step.get(s.id))
            for s in gal
        ]
        area = float(ramp.params.get("area_cm2") or ctx.area_cm2)
        pts = step_points(engine, [s.id for s in children])
        res = ccd.critical_current_density(halves, area, mode_by_step.get(ramp.id),
                                           pts["P_MPa"] if len(pts["P_MPa"]) else None)
        rows += [(name, value, unit, None) for name, value, unit in ccd.result_rows(res)]
        rows += [
            ("ccd_failed_step_id", res.failed_step_id, "", None),
            ("ccd_stack_pressure_MPa", res.stack_pressure_MPa, "MPa", None),
        ]
        if res.failed_step_id is not None:
            rows.append(("ccd_failed_here", res.ccd_mA_cm2, "mA/cm^2", res.failed_step_id))
    return _store(recorder, run_id, "ccd", ccd.VERSION, rows)


# ---- critical stripping -------------------------------------------------------------------------
def analyze_critical_stripping(engine: Engine, recorder: Recorder, run_id: int) -> Results:
    """The stripping step that passed the most charge, per gram and cm², against theory."""
    ctx = _ctx(engine, run_id, "critical_stripping")
    steps = [
        stripping.StrippingStep(s.id, float(s.params.get("current_mA") or 0.0),
                                _last_abs_q(engine, s.id), s.end_reason)
        for s in ctx.steps
        if s.kind == "galvanostatic"
    ]
    res = stripping.critical_stripping(
        steps, ctx.area_cm2, ctx.alloy_mass_mg / 1000.0 if ctx.alloy_mass_mg else None,
        ctx.k_wt_pct, ctx.temperature_C if ctx.temperature_C is not None else 25.0,
    )
    if res is None:
        raise NotApplicable(f"analysis critical_stripping does not apply to run {run_id}: "
                            "no stripping step passed charge")
    return _store(recorder, run_id, "critical_stripping", stripping.VERSION, [
        ("critical_capacity_mAh", res.capacity_mAh, "mAh", None),
        ("critical_capacity_mAh_cm2", res.capacity_mAh_cm2, "mAh/cm^2", None),
        ("critical_capacity_mAh_g", res.capacity_mAh_g, "mAh/g", None),
        ("critical_fraction_of_q_all", res.fraction_of_q_all, "", None),
        ("critical_fraction_of_q_window", res.fraction_of_q_window, "", None),
        ("critical_final_k_fraction", res.w_final, "", None),
    ])


# ---- impedance ---------------------------------------------------------------------------------
def _eis_steps(engine: Engine, ctx: RunContext) -> list[tuple[StepSummary, np.ndarray, np.ndarray]]:
    out = []
    for s in ctx.steps:
        if s.n_eis < 3:
            continue
        sp = step_spectrum(engine, s.id)
        f, z = eis.spectrum(sp["frequency_Hz"], sp["Z_re_ohm"], sp["Z_im_ohm"])
        if f.size >= 3:
            out.append((s, f, z))
    return out


def _drt_rows(step_id: int, f: np.ndarray, z: np.ndarray
              ) -> tuple[list[Row], eis.KKResult, float]:
    """One spectrum's lin-KK and DRT rows; (rows, the KK check, R_electrode).

    On a spectrum that fails lin-KK every DRT value is flagged; a peak outside, or within half
    a decade inside, the measured window is flagged (its position and area are set by the
    regularisation, not by data). R_electrode, everything slower than the grain boundary, is
    determined by the low-frequency intercept even when its split into peaks is not.
    """
    kk = eis.kk_check(f, z)
    d = eis.drt(f, z)
    r_electrode = eis.electrode_resistance(d)
    s_id = step_id
    kk_flag = None if kk.passed else (f"lin-KK residual {kk.max_residual:.3g} > "
                                      f"{kk.threshold:.3g}: the spectrum is not a linear, "
                                      "stable response")
    rows: list[Row] = [
        ("kk_valid", 1.0 if kk.passed else 0.0, "", s_id),
        ("kk_max_residual", kk.max_residual, "", s_id),
        ("drt_R_inf_ohm", d.r_inf, "ohm", s_id, kk_flag),
        ("drt_R_pol_ohm", d.r_pol, "ohm", s_id, kk_flag),
        ("R_electrode_ohm", r_electrode, "ohm", s_id, kk_flag),
        ("drt_n_peaks", len(d.peaks), "", s_id, kk_flag),
    ]
    lo, hi = d.tau_window
    for k, p in enumerate(d.peaks, 1):
        flag = kk_flag
        if p.edge_warning:
            flag = "; ".join(x for x in (kk_flag, (
                f"peak at τ = {p.tau:.2g} s is at or beyond the edge of the window the "
                f"frequencies resolve [{lo:.2g}, {hi:.2g}] s: position and area set by "
                "regularisation, not data")) if x)
        rows += [(f"drt_peak{k}_tau_s", p.tau, "s", s_id, flag),
                 (f"drt_peak{k}_R_ohm", p.resistance, "ohm", s_id, flag)]
    if kk_flag is not None:
        rows.append(("kk_warning", f"{kk_flag}: DRT and circuit fits not meaningful", "", s_id))
    return rows, kk, r_electrode


def analyze_drt_step(engine: Engine, recorder: Recorder, run_id: int, step_id: int) -> None:
    """DRT and lin-KK of one spectrum, stored as soon as its EIS step ended (the whole-run
    `analyze_drt` at run end recomputes and replaces these)."""
    sp = step_spectrum(engine, step_id)
    f, z = eis.spectrum(sp["frequency_Hz"], sp["Z_re_ohm"], sp["Z_im_ohm"])
    if f.size < 3:
        return
    rows, _, _ = _drt_rows(step_id, f, z)
    recorder.store_results(run_id, "drt", eis.VERSION, rows, only_step=step_id)


def analyze_drt(engine: Engine, recorder: Recorder, run_id: int) -> Results:
    """Per EIS step: lin-KK validity, DRT peaks (τ, R, edge warning), R∞ and R_electrode."""
    ctx = _ctx(engine, run_id, "drt")
    rows: list[Row] = []
    electrode: list[float] = []
    n_invalid = 0
    for s, f, z in _eis_steps(engine, ctx):
        step_rows, kk, r_electrode = _drt_rows(s.id, f, z)
        rows += step_rows
        n_invalid += not kk.passed
        electrode.append(r_electrode)
    rows += [("drt_spectra", len(electrode), "", None),
             ("kk_invalid_spectra", n_invalid, "", None)]
    if electrode:
        rows += [("R_electrode_first_ohm", electrode[0], "ohm", None),
                 ("R_electrode_last_ohm", electrode[-1], "ohm", None)]
    return _store(recorder, run_id, "drt", eis.VERSION, rows)


def _arc_rows(arc: eis.Arc, step_id: int) -> list[Row]:
    """An arc's values and standard errors, all carrying the arc's flag."""
    rows: list[Row] = [(f"R_{arc.name}_ohm", arc.R_ohm, "ohm", step_id, arc.flag),
                       (f"R_{arc.name}_std_ohm", arc.R_std_ohm, "ohm", step_id, arc.flag)]
    if np.isfinite(arc.tau_s):
        rows += [(f"tau_{arc.name}_s", arc.tau_s, "s", step_id, arc.flag),
                 (f"tau_{arc.name}_std_s", arc.tau_std_s, "s", step_id, arc.flag),
                 (f"alpha_{arc.name}", arc.alpha, "", step_id, arc.flag),
                 (f"alpha_{arc.name}_std", arc.alpha_std, "", step_id, arc.flag)]
    return rows


def analyze_circuit(engine: Engine, recorder: Recorder, run_id: int) -> Results:
    """Per EIS step: the paper's circuit with standard errors and a quality per value.

    R∞ and R_GB come from the model the spectrum determines (eis.CircuitResult.model); the
    SnO2/interface split is stored flagged when it is not identifiable, and R_SnO2_plus_int, the
    identifiable combination, beside it. Run level: first and last R_int and R_SnO2_plus_int,
    flagged when their spectrum's value is.
    """
    ctx = _ctx(engine, run_id, "circuit")
    rows: list[Row] = []
    r_int: list[eis.Arc] = []
    r_el: list[eis.Arc] = []
    for s, f, z in _eis_steps(engine, ctx):
        if f.size < 11:  # 10 parameters
            continue
        d = eis.drt(f, z)
        c = eis.fit_paper_circuit(f, z, d, eis.kk_check(f, z))
        model = c.model
        rows += [("R0_ohm", model.R0_ohm, "ohm", s.id, model.R0_flag),
                 ("R0_std_ohm", model.R0_std_ohm, "ohm", s.id, model.R0_flag),
                 ("circuit_chi_square", model.chi_square, "", s.id),
                 ("circuit_identifiable", 1.0 if c.identifiable else 0.0, "", s.id)]
        rows += _arc_rows(model.arcs[0], s.id)  # GB
        for arc in c.paper.arcs[1:]:
            rows += _arc_rows(arc, s.id)
        rows += _arc_rows(c.electrode, s.id)
        if c.note:
            rows.append(("circuit_note", c.note, "", s.id))
        r_int.append(c.paper.arcs[-1])
        r_el.append(c.electrode)
    rows.append(("circuit_spectra", len(r_int), "", None))
    for label, arcs in (("R_int", r_int), ("R_SnO2_plus_int", r_el)):
        if arcs:
            rows += [(f"{label}_first_ohm", arcs[0].R_ohm, "ohm", None, arcs[0].flag),
                     (f"{label}_last_ohm", arcs[-1].R_ohm, "ohm", None, arcs[-1].flag)]
    return _store(recorder, run_id, "circuit", eis.VERSION, rows)


# ---- cv ----------------------------------------------------------------------------------------
def _cv_cycles(engine: Engine, ctx: RunContext) -> list[tuple[int, cv.CvCycle]]:
    """(step id, cycle) of every CV cycle that has a peak."""
    out = []
    for s in (s for s in ctx.steps if s.kind == "cv" and s.n_points):
        pts = step_points(engine, [s.id])
        p = s.params
        cyc = cv.cycle_numbers(pts["t_s"], pts["E_V"], p.get("E_start_V"), p.get("vertices_V"),
                               p.get("scan_rate_V_s"))
        out += [(s.id, c) for c in cv.cv_peaks(pts["E_V"], pts["I_mA"], cyc)]
    return out


def _no_cv_peak(run_id: int) -> str:
    return (f"analysis cv does not apply to run {run_id}: no cycle of its CV has a current "
            "peak (the largest currents are at the vertices)")


def analyze_cv(engine: Engine, recorder: Recorder, run_id: int) -> Results:
    """Per cycle the anodic and cathodic peaks; run level the first/last anodic peak and its
    growth. A CV without a peak in any cycle (a straight line, a limiting current) reports
    none: NotApplicable, nothing stored."""
    ctx = _ctx(engine, run_id, "cv")
    cycles = _cv_cycles(engine, ctx)
    if not cycles:
        raise NotApplicable(_no_cv_peak(run_id))
    rows: list[Row] = []
    ox: list[float] = []
    for step_id, c in cycles:
        tag = f"cycle{c.cycle:02d}"
        if c.ox_peak_I_mA is not None:
            rows += [(f"{tag}_ox_peak_E_V", c.ox_peak_E_V, "V", step_id),
                     (f"{tag}_ox_peak_I_mA", c.ox_peak_I_mA, "mA", step_id)]
            ox.append(c.ox_peak_I_mA)
        if c.red_peak_I_mA is not None:
            rows += [(f"{tag}_red_peak_E_V", c.red_peak_E_V, "V", step_id),
                     (f"{tag}_red_peak_I_mA", c.red_peak_I_mA, "mA", step_id)]
    rows.append(("cv_cycles", len(cycles), "", None))
    if ox:
        rows += [("cv_ox_peak_first_mA", ox[0], "mA", None),
                 ("cv_ox_peak_last_mA", ox[-1], "mA", None)]
        if ox[0]:
            rows.append(("cv_ox_peak_growth_pct", (ox[-1] - ox[0]) / abs(ox[0]) * 100, "%",
                         None))
    return _store(recorder, run_id, "cv", cv.VERSION, rows)


# ---- cycling -----------------------------------------------------------------------------------
def analyze_cycling(engine: Engine, recorder: Recorder, run_id: int) -> Results:
    ctx = _ctx(engine, run_id, "cycling")
    ramps = {s.id for s in ctx.steps if s.kind == "ccd_ramp"}
    allpts = run_points(engine, run_id)  # one query: long runs have hundreds of half-cycles
    order = np.argsort(allpts["step_id"], kind="stable")
    sid = allpts["step_id"][order]
    bounds = np.searchsorted(sid, [s.id for s in ctx.steps]), np.searchsorted(
        sid, [s.id for s in ctx.steps], side="right")
    halves = []
    e_ocv = 0.0
    for s, lo, hi in zip(ctx.steps, *bounds):
        idx = order[lo:hi]
        if s.kind == "rest" and len(idx):
            e_ocv = float(allpts["E_V"][idx[-1]])
        if s.kind != "galvanostatic" or s.parent_id in ramps or not len(idx):
            continue
        current = s.params.get("current_mA")
        if current is None:  # imported steps: the recorded current
            current = float(np.nanmedian(allpts["I_mA"][idx]))
        halves.append(cycling.HalfCycleData(s.id, float(current), allpts["E_V"][idx], e_ocv))
    res = cycling.analyze_cycling(halves, ctx.area_cm2)
    rows: list[Row] = []
    for h in res.halves:
        rows += [("overpotential_V", h.overpotential_V, "V", h.step_id),
                 ("asr_ohm_cm2", h.asr_ohm_cm2, "ohm*cm^2", h.step_id),
                 ("cycle", h.cycle, "", h.step_id)]
    for c, v in res.cycle_overpotential_V.items():
        rows.append((f"cycle{c:03d}_overpotential_V", v, "V", None))
    detector = [e for e in run_events(engine, run_id) if e.kind == "detector"]
    ov = list(res.cycle_overpotential_V.values())
    rows += [
        ("cycling_cycles", len(ov), "", None),
        ("cycling_overpotential_first_V", ov[0] if ov else None, "V", None),
        ("cycling_overpotential_last_V", ov[-1] if ov else None, "V", None),
        ("cycling_short_detected", 1.0 if (res.short_cycle or detector) else 0.0, "", None),
        ("cycling_short_cycle", res.short_cycle, "", None),
        ("cycling_short_reason", res.short_reason or (detector[0].message if detector else None),
         "", None),
    ]
    return _store(recorder, run_id, "cycling", cycling.VERSION, rows)


def applicable(engine: Engine, run_id: int) -> list[str]:
    """Analyses that fit the run, for `labctl analyze RUN` without --only.

    Running every registered analysis blindly would, e.g., report a "critical stripping
    capacity" for a CCD half-cycle; each is picked only when labctl.analysis.applicability says
    it fits (and cv only when a cycle has a peak).
    """
    ctx = _ctx(engine, run_id)
    names = [n for n in ANALYSIS_NAMES if analysis_reason(n, ctx) is None]
    if "cv" in names and not _cv_cycles(engine, ctx):
        names.remove("cv")
    return names


def not_applicable(engine: Engine, run_id: int, analysis: str) -> str | None:
    """The one line saying why `analysis` does not fit the run, or None if it does."""
    ctx = _ctx(engine, run_id)
    why = analysis_reason(analysis, ctx)
    if why is None and analysis == "cv" and not _cv_cycles(engine, ctx):
        why = _no_cv_peak(run_id)
    return why
