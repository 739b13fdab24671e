"""Notifications: off the engine loop, sent with their severity, failures kept with a reason.

Real parts: apprise `json://` to real local HTTP servers (one that answers, one that accepts
connections and never answers, a port nothing listens on) and a real `labctl run` process on a
simulated bench served on the wall clock, so a run's duration is set by its protocol and any time
the engine spent waiting on a notification would show in it.
"""

from __future__ import annotations

import datetime as dt
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.engine.events import DetectorTripped, LimitTripped, RunStatus, RunSummary
from labctl.notify import Notifier
from labctl.protocol import load_cell
from labctl.stations.serve import start_served_bench

ROOT = Path(__file__).resolve().parents[1]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
LABCTL = Path(sys.executable).with_name("labctl")

#: 20 s at rest, then a current whose first reading is past the safety limit: the run fails at
#: about 20 s with a limit trip and a safe-state action, both alerts sent while the run ends
PROTOCOL = """\
schema_version: 1
name: rest then trip
limits: {E_min: -1 V, E_max: 0.002 V}
steps:
  - kind: rest
    duration: 20 s
  - kind: galvanostatic
    current: 2 mA/cm^2
    duration: 10 min
"""


@pytest.fixture
def stuck_endpoint() -> Iterator[str]:
    """Accepts every connection and never answers (a hung webhook)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(lst.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"json://127.0.0.1:{lst.getsockname()[1]}/hook"
    lst.shutdown(socket.SHUT_RDWR)
    lst.close()
    for s in held:
        s.close()


def test_each_message_carries_its_severity(webhook: tuple[str, list[dict[str, str]]]) -> None:
    url, received = webhook
    notifier = Notifier([url])
    notifier(DetectorTripped(1, 5.0, 2, "detector: voltage collapse", mode="short"))
    notifier(LimitTripped(1, 6.0, 2, "safety limit: E 5 V"))
    notifier(RunSummary(1, "c", RunStatus.COMPLETED, "all steps done", {}))
    notifier(RunSummary(2, "c", RunStatus.ABORTED, "interrupted (SIGTERM)", {}))
    notifier.close()
    assert [m["type"] for m in received] == ["warning", "failure", "success", "warning"]
    assert not notifier.failures


def test_a_failed_delivery_keeps_apprise_reason() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    notifier = Notifier([f"json://127.0.0.1:{port}/hook"])
    notifier(LimitTripped(4, 6.0, 2, "safety limit: E 5 V"))
    notifier.close()
    (failure,) = notifier.failures
    assert failure.run_id == 4
    assert "Connection error" in failure.reason and "127.0.0.1" in failure.reason


def _run(station: Path, db: Path, tmp: Path, notify: list[str]) -> tuple[float, list[str]]:
    """(recorded duration of the run in s, its note events) of one `labctl run`."""
    proto = tmp / "trip.yaml"
    proto.write_text(PROTOCOL)
    args = [str(LABCTL), "run", str(proto), "--cell", str(CELL), "--station", str(station),
            "--db", str(db)] + [a for u in notify for a in ("--notify", u)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the run failed on its safety limit, as planned
    with sqlite3.connect(db) as conn:
        run_id, started, ended = conn.execute(
            "select id, started_at, ended_at from run order by id desc limit 1").fetchone()
        notes = [m for (m,) in conn.execute(
            "select message from event where run_id = ? and kind = 'note'", (run_id,))]
        kinds = {k for (k,) in conn.execute("select kind from event where run_id = ?",
                                            (run_id,))}
    assert {"limit", "safe_state"} <= kinds
    span = dt.datetime.fromisoformat(ended) - dt.datetime.fromisoformat(started)
    return span.total_seconds(), notes


def test_a_stuck_endpoint_does_not_change_a_runs_duration(stuck_endpoint: str,
                                                          tmp_path: Path) -> None:
    station = tmp_path / "served.yaml"
    with start_served_bench([load_cell(CELL)], station):
        plain, _ = _run(station, tmp_path / "a.db", tmp_path, [])
        stuck, notes = _run(station, tmp_path / "b.db", tmp_path, [stuck_endpoint])
    print(f"run duration: {plain:.3f} s without notifications, {stuck:.3f} s with a stuck "
          f"endpoint (ratio {stuck / plain:.4f})")
    assert abs(stuck / plain - 1) <= 0.01
    # what could not be delivered is on the run, with apprise's reason
    assert any(n.startswith("notification ") and "not delivered" in n for n in notes), notes
