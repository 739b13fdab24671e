"""How fast the engine runs simulated time: a 12 h cycling protocol with full SQLite recording.

The goal (issue 3) is wall/simulated < 0.01, i.e. a 12 h protocol replays in under 7 minutes,
so that long protocols can be checked on the digital twin before they occupy a real channel.
Run: python benchmarks/virtual_time.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from labctl.launch import launch
from labctl.recording.database import open_database

CELL = Path(__file__).resolve().parents[1] / "examples" / "cells" / "na_symmetric.yaml"

# 1 h rest + 11 cycles of 30 min strip / 30 min plate = 12 h, every point recorded (1 s).
PROTOCOL = """\
schema_version: 1
name: virtual-time benchmark (12 h)
limits:
  E_min: -1 V
  E_max: 1 V
steps:
  - kind: rest
    duration: 1 h
  - kind: repeat
    count: 11
    steps:
      - kind: galvanostatic
        name: strip
        current: 0.25 mA/cm^2
        duration: 30 min
      - kind: galvanostatic
        name: plate
        current: -0.25 mA/cm^2
        duration: 30 min
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proto = Path(tmp) / "bench.yaml"
        proto.write_text(PROTOCOL)
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        open_database(url)  # schema creation is not part of the measurement
        t0 = time.perf_counter()
        result = launch(proto, [CELL], sim=True, db_url=url)
        wall = time.perf_counter() - t0
        (out,) = result.outcomes
        engine = open_database(url)
        with engine.connect() as conn:
            simulated = conn.execute(text("SELECT max(t_end_s) FROM step WHERE run_id = :r"),
                                     {"r": out.run_id}).scalar_one()
            rows = sum(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                       for t in ("point", "eis_point", "step", "event"))
        engine.dispose()
    print(f"run status:        {out.status} ({out.end_reason})")
    print(f"simulated seconds: {simulated:.0f}")
    print(f"wall seconds:      {wall:.2f}")
    print(f"rows written:      {rows}")
    print(f"wall/simulated = {wall / simulated:.5f} (goal < 0.01)")


if __name__ == "__main__":
    main()
