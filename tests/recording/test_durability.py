"""Durability contract: a process killed without warning loses at most the last second of points.

A child process records a point every 5 ms, stamped with the wall time it was acknowledged,
through the real Recorder into a real SQLite file; it is killed with SIGKILL (no cleanup, no
flush). Every point older than the flush interval must be in the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import create_engine, text

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from labctl.recording.database import open_database
    from labctl.recording.recorder import Recorder
    rec = Recorder(open_database(sys.argv[1]))
    cell = {"id": "c", "anode": {"material": "Na"}, "area_cm2_resolved": 0.28}
    run = rec.start_run(cell=cell, protocol_name="p", protocol_text="x", protocol_sha256="x",
                        schema_version=1, station="t", simulated=True, operator=None,
                        labctl_version="0")
    step = rec.start_step(run, 1, "rest", "rest", {}, 0.0)
    print("ready", flush=True)
    while True:
        now = np.array([time.time()])
        rec.add_points(step, now, now, now, now)
        time.sleep(0.005)
""")


def test_kill_loses_at_most_one_second(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(3.0)
    killed_at = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    eng = create_engine(url)
    with eng.connect() as conn:
        n, newest = conn.execute(text("SELECT count(*), max(t_s) FROM point")).one()
    assert n > 100
    lost_s = killed_at - newest
    assert lost_s <= 1.1, f"lost {lost_s:.2f} s of points"
