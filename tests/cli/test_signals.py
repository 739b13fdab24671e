"""Every stop signal is a safe stop: SIGTERM, SIGHUP and SIGINT at seeded random moments.

Real processes and real signals: the simulated bench is served from this test's process (the
instrument, with its own log of the calls that reach it), `labctl run --station` drives it from
another process through the real SP-300 driver, and the test signals that process at a random
moment of its run. Half of the trials hold SQLite's write lock from here around the moment of
the signal, so that labctl is inside a database write (waiting on the lock) when the signal
arrives — the case that used to hang for minutes on "database is locked".

Each time: the process exits within 5 s with 128 + the signal's number; the channel-off command
reached the instrument after the signal and before any event, step end or run end was recorded;
the channel is off on the instrument; the run is "aborted" with the signal as its reason and
the safe-state event recorded.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.interrupts import STOP_SIGNALS
from labctl.protocol import load_cell
from labctl.stations.serve import ServedBench, start_served_bench
from tests.cli.test_bench_process import PROTOCOL  # a 1 h strip: longer than any trial

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
LABCTL = Path(sys.executable).with_name("labctl")
SP300 = "sim-SP300-1"
pytestmark = pytest.mark.slow
TRIALS = int(os.environ.get("H3_TRIALS", 24))  # 8 of each signal
EXIT_WITHIN_S = 5.0



class InstrumentLog:
    """The calls that reached the simulated SP-300, with the wall time each arrived."""

    def __init__(self, served: ServedBench) -> None:
        self.calls: list[tuple[float, str, int]] = []
        self.lock = threading.Lock()
        self.sp300 = served.bench.sp300(SP300)
        for name in ("stop_channel", "start_channel", "load_technique"):
            self._watch(name)

    def _watch(self, name: str) -> None:
        real: Callable[..., Any] = getattr(self.sp300, name)

        def logged(idn: int, channel: int, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.calls.append((time.time(), name, channel))
            return real(idn, channel, *args, **kwargs)

        setattr(self.sp300, name, logged)

    def stops_after(self, t: float) -> list[float]:
        with self.lock:
            return [at for at, name, ch in self.calls if name == "stop_channel" and ch == 0
                    and at >= t]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, InstrumentLog]]:
    station = tmp_path_factory.mktemp("bench") / "served.yaml"
    with start_served_bench([load_cell(CELL)], station) as served:
        yield station, InstrumentLog(served)


def _utc(text: str) -> float:
    """A time stored by the recorder (UTC, naive in SQLite) as a POSIX time."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def _first_step_started(db: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=0.2) as conn:
                    if conn.execute("select count(*) from step").fetchone()[0]:
                        return
            except sqlite3.OperationalError:
                pass  # schema not there yet
        time.sleep(0.05)
    raise AssertionError("the run never started its first step")


def _hold_write_lock(db: Path, hold_s: float, held: threading.Event) -> None:
    """Another writer holding SQLite's write lock for `hold_s` (labctl's writes wait on it)."""
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(hold_s)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def _trial(k: int, station: Path, log: InstrumentLog, workdir: Path) -> dict[str, Any]:
    rng = random.Random(9000 + k)
    sig = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)[k % 3]
    during_write = (k // 3) % 2 == 0  # half the trials of each signal land inside a write
    delay = rng.uniform(0.0, 2.5)
    db = workdir / f"run{k}.db"
    proto = workdir / "long.yaml"
    proto.write_text(PROTOCOL)
    proc = subprocess.Popen(
        [str(LABCTL), "run", str(proto), "--cell", str(CELL), "--station", str(station),
         "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LABCTL_DB": str(db)})
    try:
        _first_step_started(db, time.monotonic() + 120)
        time.sleep(delay)
        holder = None
        if during_write:
            held = threading.Event()
            holder = threading.Thread(target=_hold_write_lock, args=(db, 2.0, held))
            holder.start()
            held.wait(10)
            time.sleep(1.2)  # labctl's flush or heartbeat (about every second) now waits on it
        t_sig = time.time()
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        exit_s = time.monotonic() - t0
        if holder is not None:
            holder.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(db) as conn:
        status, reason, ended = conn.execute(
            "select status, end_reason, ended_at from run").fetchone()
        events = conn.execute("select at, kind, message from event order by id").fetchall()
        step_ends = [r[0] for r in conn.execute(
            "select ended_at from step where ended_at is not null")]
    return dict(sig=sig, delay=delay, during_write=during_write, t_sig=t_sig, exit_s=exit_s,
                rc=proc.returncode, err=err, status=status, reason=reason, ended=_utc(ended),
                events=[(_utc(at), kind, msg) for at, kind, msg in events],
                step_ends=[_utc(t) for t in step_ends], stops=log.stops_after(t_sig),
                running=log.sp300.channel_status(0).running)


def test_every_stop_signal_is_a_safe_stop(bench: tuple[Path, InstrumentLog],
                                          tmp_path: Path) -> None:
    station, log = bench
    results = []
    for k in range(TRIALS):
        r = _trial(k, station, log, tmp_path)
        results.append(r)
        name = r["sig"].name
        where = f"trial {k} ({name} {r['delay']:.2f} s into the run, during write: " \
                f"{r['during_write']}): {r['err'].strip()[-300:]}"
        assert r["exit_s"] <= EXIT_WITHIN_S, where
        assert r["rc"] == 128 + r["sig"], where
        assert STOP_SIGNALS[r["sig"]] in r["err"], where
        assert (r["status"], r["reason"]) == ("aborted", STOP_SIGNALS[r["sig"]]), where
        assert not r["running"], where
        assert r["stops"], f"no channel-off reached the instrument after the signal: {where}"
        first_off = min(r["stops"])
        recorded_after = [at for at, _, _ in r["events"] if at >= r["t_sig"]]
        recorded_after += [t for t in r["step_ends"] if t >= r["t_sig"]] + [r["ended"]]
        assert first_off <= min(recorded_after), where
        safe = [msg for _, kind, msg in r["events"] if kind == "safe_state"]
        assert f"channel off: {STOP_SIGNALS[r['sig']]}" in safe, where
        if r["during_write"]:
            notes = [msg for _, kind, msg in r["events"] if kind == "note"]
            assert f"{name} arrived during a database write; acted on once the write was " \
                   "done" in notes, where
    for r in results:
        print(f"{r['sig'].name:8s} at {r['delay']:.2f} s, during write "
              f"{r['during_write']!s:5s}: exit {r['rc']} in {r['exit_s']:.2f} s")
