"""Limits the instrument enforces end techniques between recorded points, and the engine takes
the end reason from the instrument.

Through `launch` on the built-in simulated station, so the SP-300 adapter translates the limits
into CPLIMIT tests, the simulated firmware evaluates them between records (recording every
10 s, as the shipped critical-stripping protocol does), and the adapter reports which one ended
the technique — never guessed from the last recorded voltage, which lies below the limit.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from labctl.launch import launch
from labctl.recording import models as m
from labctl.recording.database import open_database

ROOT = Path(__file__).resolve().parents[2]
NAK65 = ROOT / "examples" / "cells" / "nak65_half.yaml"

STRIP = """\
schema_version: 1
name: strip to a limit
limits: {{E_min: -1 V, E_max: {global_E_max}}}
steps:
  - kind: galvanostatic
    name: strip
    current: 1 mA/cm^2{cut_off}
    record: {{every: 10 s, dE: null}}  # no dE-triggered records: nothing at the crossing
    detectors: {{enabled: false}}
  - kind: rest
    name: after
    duration: 10 min
"""


def _run(tmp_path: Path, global_E_max: str, cut_off: str | None = "0.5 V"
         ) -> tuple[m.Run, list[m.Step], list[float], float]:
    """Strip NaK65 to the step's cut-off `cut_off`, or with none for at most 100 h."""
    protocol = tmp_path / "strip.yaml"
    end = f"E_max: {cut_off}" if cut_off else "duration: 100 h"
    protocol.write_text(STRIP.format(global_E_max=global_E_max, cut_off=f"\n    {end}"))
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    (out,) = launch(protocol, [NAK65], sim=True, db_url=url).outcomes
    engine = open_database(url)
    with Session(engine, expire_on_commit=False) as s:
        run = s.get(m.Run, out.run_id)
        assert run is not None
        steps = list(s.scalars(select(m.Step).where(m.Step.run_id == out.run_id)
                               .order_by(m.Step.id)))
        rows = s.execute(select(m.Point.t_s, m.Point.E_V).where(m.Point.step_id == steps[0].id)
                         .order_by(m.Point.t_s)).all()
    return run, steps, [e for _, e in rows], rows[-1][0]


def test_cut_off_between_records_ends_the_step_with_that_limit(tmp_path: Path) -> None:
    run, steps, E, t_last = _run(tmp_path, "1.5 V")
    strip = steps[0]
    assert strip.status == "completed" and strip.end_reason == "E_max"
    # the crossing happened between two records: the last recorded point is below the cut-off
    assert max(E) < 0.5
    assert strip.t_end_s is not None and strip.t_end_s > t_last
    assert [s.name for s in steps] == ["strip", "after"] and run.status == "completed"


def test_safety_limit_on_the_instrument_stops_the_protocol(tmp_path: Path) -> None:
    """The protocol's E_max (0.3 V) is the step's only E bound, so the instrument ends the
    technique on it: a failure, recorded as a limit, and the next step never runs. (A step
    cut-off above a limit is refused before any run: the step could never end on it.)"""
    run, steps, E, _ = _run(tmp_path, "0.3 V", cut_off=None)
    strip = steps[0]
    assert strip.status == "failed" and "safety limit" in (strip.end_reason or "")
    assert max(E) < 0.3 + 0.01
    assert [s.name for s in steps] == ["strip"]  # "after" never ran
    assert run.status == "failed"
