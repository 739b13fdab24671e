"""Running named analyses on a recorded run and storing their results (through the recorder).

Each analysis reads what it needs from the database, computes with a plain function, and hands
named values with units to `Recorder.store_results`, tagged with the analysis and its version,
so results can always be recomputed (`labctl analyze RUN`).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from labctl.analysis import products, stripping
from labctl.recording.queries import run_cell, run_steps
from labctl.recording.recorder import Recorder

Results = dict[str, float | str | None]


def _critical_stripping(engine: Engine, recorder: Recorder, run_id: int) -> Results:
    cell = run_cell(engine, run_id)
    if cell is None:
        return {}
    steps = [
        stripping.StrippingStep(s.id, float(s.params.get("current_mA") or 0.0),
                                _step_charge(engine, s.id), s.end_reason)
        for s in run_steps(engine, run_id)
        if s.kind == "galvanostatic"
    ]
    res = stripping.critical_stripping(
        steps, cell.area_cm2, cell.alloy_mass_mg / 1000.0 if cell.alloy_mass_mg else None,
        cell.k_wt_pct, cell.temperature_C if cell.temperature_C is not None else 25.0,
    )
    if res is None:
        return {}
    out: list[tuple[str, float | str | None, str, int | None]] = [
        ("critical_capacity_mAh", res.capacity_mAh, "mAh", None),
        ("critical_capacity_mAh_cm2", res.capacity_mAh_cm2, "mAh/cm^2", None),
        ("critical_capacity_mAh_g", res.capacity_mAh_g, "mAh/g", None),
        ("critical_fraction_of_q_all", res.fraction_of_q_all, "", None),
        ("critical_fraction_of_q_window", res.fraction_of_q_window, "", None),
        ("critical_final_k_fraction", res.w_final, "", None),
    ]
    recorder.store_results(run_id, "critical_stripping", stripping.VERSION, out)
    return {name: value for name, value, _, _ in out}


def _step_charge(engine: Engine, step_id: int) -> float:
    from labctl.recording.queries import step_points

    pts = step_points(engine, [step_id])
    return float(abs(pts["Q_mAh"][-1])) if len(pts["Q_mAh"]) else 0.0


ANALYSES: dict[str, Callable[[Engine, Recorder, int], Results]] = {
    "critical_stripping": _critical_stripping,
    "ccd": products.analyze_ccd,
    "drt": products.analyze_drt,
    "circuit": products.analyze_circuit,
    "cv": products.analyze_cv,
    "cycling": products.analyze_cycling,
}


def analyze_run(engine: Engine, recorder: Recorder, run_id: int, names: tuple[str, ...] | list[str]
                ) -> Results:
    results: Results = {}
    for name in names:
        fn = ANALYSES.get(name)
        if fn is None:
            recorder.event(run_id, "note", f"unknown analysis {name!r} skipped", severity="warning")
            continue
        results.update(fn(engine, recorder, run_id))
    return results
