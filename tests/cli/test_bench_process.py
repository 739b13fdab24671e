"""The simulated bench as its own process: it outlives the labctl that drives it.

Real processes and a real signal: `labctl sim serve` in one process, `labctl run` against the
station file it writes in another, SIGKILL to the second in the middle of a step. The simulated
SP-300 keeps its technique running (as a real one would, with nobody to stop it), and a new
labctl that connects sees the channel still on, without changing it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from labctl.recording import models as m

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
LABCTL = Path(sys.executable).with_name("labctl")

PROTOCOL = """\
schema_version: 1
name: long strip
limits: {E_min: -1 V, E_max: 1 V}
steps:
  - kind: galvanostatic
    current: 0.1 mA/cm^2
    duration: 1 h
"""


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    station = tmp_path / "served.yaml"
    server = subprocess.Popen(
        [str(LABCTL), "sim", "serve", "--cell", str(CELL), "--station-out", str(station)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(station.exists, 30, "the bench's station file")
        yield station, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


def test_sigkilled_labctl_leaves_the_simulated_instrument_running(served, tmp_path: Path
                                                                  ) -> None:  # type: ignore[no-untyped-def]
    station, server = served
    protocol = tmp_path / "p.yaml"
    protocol.write_text(PROTOCOL)
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    run = subprocess.Popen([str(LABCTL), "run", str(protocol), "--cell", str(CELL), "--station",
                            str(station), "--db", url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def points() -> int:
        if not db.exists():
            return 0
        eng = create_engine(url)
        try:
            with eng.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(m.Point)) or 0)
        except Exception:
            return 0
        finally:
            eng.dispose()

    try:
        _wait_for(lambda: points() >= 3, 60, "points of the running step")
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
    assert run.returncode == -signal.SIGKILL
    time.sleep(1.5)  # the instrument goes on without labctl

    # a new labctl connects and sees the channel still on, with current flowing
    check = subprocess.run([str(LABCTL), "station", "check", str(station)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    (line,) = [ln for ln in check.stdout.splitlines() if "channel 0:" in ln]
    assert "running" in line, check.stdout
    assert "I = 0.02827 mA" in line or "I = 0.0283 mA" in line, line  # 0.1 mA/cm^2 on 6 mm
    # ... and checking changed nothing: it is still running afterwards
    again = subprocess.run([str(LABCTL), "station", "check", str(station)],
                           capture_output=True, text=True, timeout=60)
    assert "running" in next(ln for ln in again.stdout.splitlines() if "channel 0:" in ln)
    assert server.poll() is None  # the bench process is alive all along
