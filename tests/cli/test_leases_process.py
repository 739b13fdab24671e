"""Ownership with real processes and signals: run leases, channel leases, safe state after a crash.

`labctl sim serve` is the instruments (two channels, outliving every labctl); `labctl run` runs
in its own processes against the station file it writes, on a SQLite file and on the real
PostgreSQL server. Leases are shortened (LABCTL_LEASE_TTL_S=2) so that a SIGSTOP outlasts them
several times over: nothing but the holder's existence may decide that a run is live.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import create_engine, func, select

from labctl.recording import models as m
from labctl.recording.database import open_database
from labctl.recording.queries import recent_runs
from labctl_drivers.sim.remote import BenchConnection
from tests.cli.test_bench_process import CELL, LABCTL, _wait_for
from tests.cli.test_bench_process import PROTOCOL as LONG  # a 1 h strip

TTL_S = 2.0
ENV = {**os.environ, "LABCTL_LEASE_TTL_S": str(TTL_S)}

SHORT = """\
schema_version: 1
name: short rest
steps:
  - kind: rest
    duration: 2 s
"""
#: EClib calls that only read (the adapter's connect reads every channel's state)
READS = {"BL_Connect", "BL_GetChannelsPlugged", "BL_GetChannelInfos"}


class Bench:
    """The served bench: its station file and the simulated SP-300's own command log."""

    def __init__(self, station: Path) -> None:
        self.station = station
        doc = YAML(typ="safe").load(station.read_text())
        backend = doc["potentiostats"][0]["backend"]
        self.url, self.instrument = backend.rsplit("/", 1)

    def log(self) -> list[tuple[float, str, int | None]]:
        conn = BenchConnection(self.url)
        try:
            return [tuple(e) for e in conn.call(self.instrument, "command_log")]
        finally:
            conn.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    station = tmp_path / "served.yaml"
    server = subprocess.Popen(
        [str(LABCTL), "sim", "serve", "--cell", str(CELL), "--cell", str(CELL),
         "--station-out", str(station)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _wait_for(station.exists, 30, "the bench's station file")
        yield Bench(station)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def _labctl(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LABCTL), *args, "--db", db], capture_output=True, text=True,
                          timeout=120, env=ENV)


def _runs(db: str) -> dict[int, dict[str, Any]]:
    done = _labctl("runs", "--json", db=db)
    assert done.returncode == 0, done.stderr
    return {r["id"]: r for r in json.loads(done.stdout)}


def _shown(db: str) -> dict[int, str]:
    """What `labctl runs` shows, read in this process (the same query; a labctl process costs
    seconds on a loaded machine, so the polling loops read here)."""
    eng = open_database(db)
    try:
        return {r.id: r.status for r in recent_runs(eng)}
    finally:
        eng.dispose()


def _points(db: str) -> int:
    eng = create_engine(db)
    try:
        with eng.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(m.Point)) or 0)
    except Exception:  # not created yet
        return 0
    finally:
        eng.dispose()


def test_stopped_run_stays_live_killed_run_is_interrupted_and_its_channels_go_off_first(
        bench: Bench, db_url: str, tmp_path: Path) -> None:
    long, short = tmp_path / "long.yaml", tmp_path / "short.yaml"
    long.write_text(LONG)
    short.write_text(SHORT)
    holder = subprocess.Popen(
        [str(LABCTL), "run", str(long), "--cell", str(CELL), "--cell", str(CELL), "--station",
         str(bench.station), "--db", db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ENV)
    try:
        _wait_for(lambda: _points(db_url) >= 4, 90, "points of both channels")
        assert _shown(db_url) == {1: "running", 2: "running"}

        # -- SIGSTOP for three lease lifetimes: still live to everyone ----------------------
        holder.send_signal(signal.SIGSTOP)
        time.sleep(3 * TTL_S)
        assert {r["status"] for r in _runs(db_url).values()} == {"running"}  # `labctl runs`
        # a second labctl on the same station refuses the leased channel and touches nothing
        calls_before = len(bench.log())
        second = _labctl("run", str(short), "--cell", str(CELL), "--station",
                         str(bench.station), db=db_url)
        assert second.returncode == 1, second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert "channel 0 of sim-SP300-1" in line and "is leased (run 1)" in line, line
        assert f"pid {holder.pid}" in line and "nothing was touched" in line, line
        assert len(bench.log()) == calls_before  # not even a connect reached the instrument
        assert _shown(db_url) == {1: "running", 2: "running"}  # and no run row was written
        # a labctl run elsewhere (the in-process bench) reconciles the database as it starts:
        # the stopped holder's runs stay running, in the record itself
        elsewhere = _labctl("run", str(short), "--cell", str(CELL), "--sim", db=db_url)
        assert elsewhere.returncode == 0, elsewhere.stderr
        eng = create_engine(db_url)
        with eng.connect() as conn:
            recorded = dict(conn.execute(select(m.Run.id, m.Run.status)).all())
        eng.dispose()
        assert recorded == {1: "running", 2: "running", 3: "completed"}

        # -- woken, it was live all along: it acts on an abort --------------------------------
        holder.send_signal(signal.SIGCONT)
        aborted = _labctl("abort", "1", db=db_url)
        assert aborted.returncode == 0 and "abort requested" in aborted.stdout, aborted.stderr
        _wait_for(lambda: _shown(db_url)[1] == "aborted", 60, "run 1 to be aborted")
        assert _shown(db_url)[2] == "running"
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()  # SIGKILL: no chance to switch anything off or record anything
        holder.wait(10)

    # -- killed: interrupted at once, in `runs` and `show`; operator commands say so ----------
    runs = _runs(db_url)
    assert runs[2]["status"] == "interrupted", runs[2]
    assert f"pid {holder.pid}" in runs[2]["end_reason"] and "gone" in runs[2]["end_reason"]
    assert runs[1]["status"] == "aborted"  # an ended run stays as it ended
    refused = _labctl("abort", "2", db=db_url)  # pause and resume: tests/recording/test_leases
    assert refused.returncode == 1, refused.stdout
    (line,) = refused.stderr.strip().splitlines()
    assert "run 2 is interrupted" in line and "nothing requested" in line, line
    running_on_1 = [e for e in bench.log() if e[2] == 1]
    assert running_on_1[-1][1] != "BL_StopChannel"  # nobody has stopped channel 1 yet

    # -- the next labctl on the station: every orphaned channel off before anything else ------
    calls_before = len(bench.log())
    third = _labctl("run", str(short), "--cell", str(CELL), "--station", str(bench.station),
                    db=db_url)
    assert third.returncode == 0, third.stderr
    log = bench.log()[calls_before:]
    assert log[0][1] == "BL_Connect"
    first_acts = []
    for _, function, channel in log:
        if function in READS:
            continue
        if function != "BL_StopChannel":
            break
        first_acts.append(channel)
    # channel 1 is not used by this run: it is switched off because its holder is gone
    assert set(first_acts) == {0, 1}, log[:12]
    assert _shown(db_url) == {1: "aborted", 2: "interrupted", 3: "completed", 4: "completed"}
    shown = _labctl("show", "2", db=db_url).stdout
    assert "run 2: cell na-sym-001, protocol long strip, interrupted" in shown, shown
    assert "channel 1 of sim-SP300-1" in shown and "switched off by labctl" in shown, shown
    eng = create_engine(db_url)
    with eng.connect() as conn:  # recorded now, not only shown
        assert conn.scalar(select(m.Run.status).where(m.Run.id == 2)) == "interrupted"
    eng.dispose()
    check = subprocess.run([str(LABCTL), "station", "check", str(bench.station)],
                           capture_output=True, text=True, timeout=60)
    (ch1,) = [ln for ln in check.stdout.splitlines() if "channel 1:" in ln]
    assert "running" not in ch1, check.stdout
