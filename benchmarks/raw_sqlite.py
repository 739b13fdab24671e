"""The baseline every recording benchmark compares against: bare `sqlite3` executemany.

Same table shapes as labctl's `point` and `eis_point` (with their step_id index, without the
rest of labctl's schema), WAL journal and synchronous=FULL like labctl's SQLite engine (every
commit fsynced: what the README promises), rows already built as tuples, one commit per batch:
the cheapest honest way to store those rows.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

POINT_INSERT = ("INSERT INTO point (step_id, t_s, E_V, I_mA, Q_mAh, P_MPa) "
                "VALUES (?, ?, ?, ?, ?, ?)")
EIS_INSERT = ("INSERT INTO eis_point (step_id, t_s, frequency_Hz, Z_re_ohm, Z_im_ohm, "
              "Z_mod_ohm, phase_deg, E_V, I_mA) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A fresh file with labctl-shaped point and eis_point tables."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute("CREATE TABLE point (id INTEGER PRIMARY KEY, step_id INTEGER NOT NULL, "
                "t_s FLOAT NOT NULL, E_V FLOAT NOT NULL, I_mA FLOAT NOT NULL, "
                "Q_mAh FLOAT NOT NULL, P_MPa FLOAT)")
    con.execute("CREATE INDEX ix_point_step_id ON point (step_id)")
    con.execute("CREATE TABLE eis_point (id INTEGER PRIMARY KEY, step_id INTEGER NOT NULL, "
                "t_s FLOAT NOT NULL, frequency_Hz FLOAT NOT NULL, Z_re_ohm FLOAT NOT NULL, "
                "Z_im_ohm FLOAT NOT NULL, Z_mod_ohm FLOAT NOT NULL, phase_deg FLOAT NOT NULL, "
                "E_V FLOAT, I_mA FLOAT)")
    con.execute("CREATE INDEX ix_eis_point_step_id ON eis_point (step_id)")
    con.commit()
    return con


def timed_inserts(con: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]],
                  batch: int) -> float:
    """Seconds to insert `rows` with executemany, committing every `batch` rows."""
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        con.executemany(sql, rows[i:i + batch])
        con.commit()
    return time.perf_counter() - t0
