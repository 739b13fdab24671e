"""Running named analyses on a recorded run and storing their results (through the recorder).

Each analysis reads what it needs from the database, computes with a plain function, and hands
named values with units to `Recorder.store_results`, tagged with the analysis and its version,
so results can always be recomputed (`labctl analyze RUN`).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from labctl.analysis import products
from labctl.analysis.applicability import NotApplicable
from labctl.recording.recorder import Recorder

Results = products.Results


ANALYSES: dict[str, Callable[[Engine, Recorder, int], Results]] = {
    "critical_stripping": products.analyze_critical_stripping,
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
        try:
            results.update(fn(engine, recorder, run_id))
        except NotApplicable as exc:  # e.g. a protocol's run-end ccd on a run that never ramped
            recorder.event(run_id, "note", str(exc), severity="info")
    return results
