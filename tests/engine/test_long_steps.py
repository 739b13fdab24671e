"""Long and open-ended steps run on the SP-300 adapter (through the simulated EClib).

A rest of 24 h is longer than one OCV technique can time (tb·2^31 ≈ 11.9 h): the adapter loads
it as OCV + LOOP + OCV, and the step still ends on its time, at 24 h, with a record every
minute. A galvanostatic step with no duration (open-ended) runs until its cut-off.
"""

from __future__ import annotations

from pathlib import Path

from labctl.launch import launch
from labctl.recording.database import open_database
from labctl.recording.queries import run_steps, step_points

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
NAK50 = ROOT / "examples" / "cells" / "nak50_half.yaml"

REST_24H = """\
schema_version: 1
name: a day at rest
steps:
  - kind: rest
    duration: 24 h
    record: {every: 1 min, dE: null}
  - kind: galvanostatic
    current: 0.1 mA/cm^2
    duration: 1 min
"""

OPEN_ENDED = """\
schema_version: 1
name: strip until the cut-off
limits: {E_min: -1 V, E_max: 1.5 V}
steps:
  - kind: galvanostatic
    current: 1 mA/cm^2
    E_max: 0.5 V
    detectors: {enabled: false}
"""


def _launch(tmp_path: Path, text: str, cell: Path) -> tuple[str, int]:
    protocol = tmp_path / "p.yaml"
    protocol.write_text(text)
    url = f"sqlite:///{tmp_path / 'long.db'}"
    (out,) = launch(protocol, [cell], sim=True, db_url=url).outcomes
    assert out.status.value == "completed", out.end_reason
    return url, out.run_id


def test_a_24_hour_rest_runs_as_linked_ocv_and_loop(tmp_path: Path) -> None:
    url, run_id = _launch(tmp_path, REST_24H, CELL)
    engine = open_database(url)
    rest, strip = run_steps(engine, run_id)
    assert rest.status == "completed" and rest.end_reason == "time"
    assert abs((rest.t_end_s - rest.t_start_s) - 86400.0) < 1.0
    t = step_points(engine, [rest.id])["t_s"]
    assert len(t) == 1440 and abs(t[-1] - rest.t_start_s - 86400.0) < 1.0
    assert strip.status == "completed"


def test_an_open_ended_strip_runs_to_its_cut_off(tmp_path: Path) -> None:
    url, run_id = _launch(tmp_path, OPEN_ENDED, NAK50)
    (strip,) = run_steps(open_database(url), run_id)
    assert strip.status == "completed" and strip.end_reason == "E_max"
    assert strip.t_end_s - strip.t_start_s > 3600.0  # a NaK50 anode strips for hours at 1 mA/cm²
