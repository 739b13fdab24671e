"""The local journal on its own: reserved, fsynced entries; replay is idempotent and never
touches a live process's journal; a cut last line is skipped. Real SQLite files, real flock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, text

from labctl.engine import events as ev
from labctl.recording.database import open_database
from labctl.recording.journal import (
    RESERVE_BYTES,
    Journal,
    JournalSink,
    apply_entries,
    journal_dir,
    read_entries,
    replay_journals,
)
from labctl.recording.recorder import Recorder, RecordingSink

CELL = {"id": "j-1", "anode": {"material": "Na"}, "area_cm2_resolved": 0.283}


def _run(engine: Engine) -> tuple[Recorder, int, int]:
    rec = Recorder(engine)
    run = rec.start_run(cell=CELL, protocol_name="p", protocol_text="p", protocol_sha256="p",
                        schema_version=1, station="s", simulated=True, operator=None,
                        labctl_version="t")
    step = rec.start_step(run, 1, "rest", "rest", {}, 0.0)
    return rec, run, step


def _state(engine: Engine, run: int) -> tuple[str, str | None, int, str]:
    with engine.connect() as conn:
        status, reason = conn.execute(text("select status, end_reason from run where id = :r"),
                                      {"r": run}).one()
        n = conn.execute(text("select count(*) from event where kind = 'safe_state'")).scalar()
        step = conn.execute(text("select status from step")).scalar()
    return status, reason, int(n or 0), step


def test_a_failed_recorder_sends_the_runs_ending_to_the_journal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    engine = open_database(url)
    rec, run, _ = _run(engine)
    sink = RecordingSink(rec)
    sink._rows[run, 1] = 1  # the step row written by _run
    journal = Journal(journal_dir(url))
    assert os.stat(journal.path).st_blocks * 512 >= RESERVE_BYTES  # room taken at the start
    jsink = JournalSink(journal, sink)
    jsink(ev.SafeStateAction(run, 5.0, None, "channel off: x"))  # recorder fine: not journaled
    assert journal.entries == []
    sink.failed = True
    end = ev.StepEnd(ev.EndCause.ABORTED, "database failed")
    for event in (ev.SafeStateAction(run, 6.0, 1, "channel off: database failed"),
                  ev.StepEnded(run, 6.0, 1, "rest", ev.StepStatus.FAILED, end),
                  ev.RunEnded(run, 6.0, ev.RunStatus.FAILED, "database failed")):
        jsink(event)
    entries = read_entries(journal.path)
    assert [e["type"] for e in entries] == ["event", "step_end", "run_end"]
    journal.close()  # kept: nothing was written yet
    assert journal.path.exists()
    assert replay_journals(engine, url) == 3
    assert _state(engine, run) == ("failed", "database failed", 1, "failed")
    assert not journal.path.exists()
    # replaying the same entries again changes nothing (a crash between commit and unlink)
    apply_entries(engine, entries)
    assert _state(engine, run) == ("failed", "database failed", 1, "failed")


def journal_dict(run: int) -> list[dict[str, object]]:
    return [dict(type="event", run_id=run, step_id=None, at="2026-01-01T00:00:00+00:00",
                 t_s=1.0, kind="safe_state", severity="warning", message="channel off: y",
                 data={}),
            dict(type="run_end", run_id=run, status="aborted", end_reason="other",
                 ended_at="2026-01-01T00:00:00+00:00")]


def test_replay_is_idempotent_and_never_reopens_an_ended_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    engine = open_database(url)
    _, run, _ = _run(engine)
    entries = journal_dict(run)
    apply_entries(engine, entries)
    apply_entries(engine, entries)
    assert _state(engine, run)[:3] == ("aborted", "other", 1)
    later = [dict(entries[1], status="failed", end_reason="late")]
    apply_entries(engine, later)  # the run is ended: a stale entry does not rewrite history
    assert _state(engine, run)[:2] == ("aborted", "other")


def test_a_live_processs_journal_is_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    engine = open_database(url)
    _, run, _ = _run(engine)
    directory = journal_dir(url)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "live.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in journal_dict(run)))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert replay_journals(engine, url) == 0
        assert path.exists() and _state(engine, run)[0] == "running"
    finally:
        holder.kill()
        holder.wait()
    assert replay_journals(engine, url) == 2
    assert _state(engine, run)[0] == "aborted"


def test_an_entry_cut_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    good = json.dumps(journal_dict(1)[0])
    path.write_bytes(good.encode() + b"\n" + b'{"type": "run_e' + b"\0" * 100)
    assert read_entries(path) == [json.loads(good)]
