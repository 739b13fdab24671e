"""DRT results of a spectrum appear as soon as its EIS step ends, while the run goes on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, select

from labctl.engine.events import Event, RunStatus, StepStarted
from labctl.launch import launch
from labctl.recording import models as m

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "nak65_half.yaml"
PROTOCOL = """\
schema_version: 1
name: eis then rest
analyses: [drt]
steps:
  - kind: eis
    f_high: 7 MHz
    f_low: 1 Hz
    amplitude: 10 mV
  - kind: rest
    duration: 10 min
"""


def test_drt_is_stored_when_the_eis_step_ends(tmp_path: Path) -> None:
    protocol = tmp_path / "p.yaml"
    protocol.write_text(PROTOCOL)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    seen_during_rest: list[set[str]] = []

    def watcher(event: Event) -> None:  # subscribed after the recorder and the analyses
        if (isinstance(event, StepStarted) and event.name.startswith("rest")
                and not seen_during_rest):
            reader = create_engine(url)
            with reader.connect() as conn:
                names = set(conn.scalars(select(m.Result.name).where(
                    m.Result.run_id == event.run_id, m.Result.step_id.is_not(None))))
            reader.dispose()
            seen_during_rest.append(names)

    (out,) = launch(protocol, [CELL], sim=True, db_url=url, subscribers=[watcher]).outcomes
    assert out.status is RunStatus.COMPLETED
    assert seen_during_rest and {"kk_valid", "drt_R_inf_ohm", "R_electrode_ohm"} \
        <= seen_during_rest[0]
