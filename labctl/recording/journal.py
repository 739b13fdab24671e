"""The local journal: a run's ending that the database could not take is kept on local disk.

When the database fails mid-run (disk full, a read-only file, PostgreSQL unreachable), the
engine switches every channel off first, as it always has. What must not be lost then is what
happened at the end: the safe-state event, faults, step ends and the run's final status. They
go to a journal: one append-only JSON-lines file per labctl process, fsynced after every
entry, in a directory next to the embedded SQLite file (`labctl.db.journal/`) or, for a
database server, in the user's state directory (`$XDG_STATE_HOME/labctl/journal/<url hash>/`).

Its space is reserved when the run starts (`posix_fallocate`), so a disk that fills up during
the run can still take the entries. The run's end tries to write the journal into the database
(retrying for a bounded time: a PostgreSQL restart takes seconds); what is still in a journal
afterwards is written by the next labctl that opens the database (`replay_journals`, called by
`open_database`). A journal that is being written is locked (`flock`) by its process, so a
reader never replays a live run's journal. Replaying is idempotent: an event already present is
not inserted twice, and a step or run is only closed while it is still open.

Points that were buffered but never committed are not journaled: they were never acknowledged
(the recorder's durability contract is about acknowledged data).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from labctl import interrupts
from labctl.engine import events as ev
from labctl.recording import models as m
from labctl.recording.database import JOURNAL_SUFFIX as SUFFIX
from labctl.recording.database import journal_dir
from labctl.recording.recorder import RecordingSink

log = logging.getLogger(__name__)

RESERVE_BYTES = 256 * 1024  # room for ~1000 entries, taken when the run starts


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """This process's journal file: reserved at open, appended and fsynced per entry."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}{SUFFIX}"
        self.path = directory / name
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.posix_fallocate(self._fd, 0, RESERVE_BYTES)
        os.fsync(self._fd)
        _fsync_dir(directory)
        self._size = 0
        self.entries: list[dict[str, Any]] = []

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry durably (fsync) before returning."""
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        os.pwrite(self._fd, line, self._size)
        os.fsync(self._fd)
        self._size += len(line)
        self.entries.append(entry)

    def settle(self, engine: Engine, within_s: float) -> bool:
        """Write the entries into the database, retrying for at most `within_s`; True when
        the journal is empty afterwards (its file is then removed)."""
        deadline = time.monotonic() + within_s
        delay = 0.2
        while self.entries:
            try:
                apply_entries(engine, self.entries)
                self.entries = []
                break
            except SQLAlchemyError as exc:
                if time.monotonic() + delay > deadline:
                    log.warning("journal %s kept (database still failing: %s); the next labctl "
                                "that opens the database writes it", self.path,
                                str(getattr(exc, "orig", exc)).splitlines()[0])
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        return True

    def close(self) -> None:
        """Release the file: removed if nothing is left to write, kept (unlocked) otherwise."""
        if self._fd < 0:
            return
        if not self.entries:
            self.path.unlink(missing_ok=True)
        else:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1


def _iso(t: dt.datetime | None = None) -> str:
    return (t or dt.datetime.now(dt.UTC)).isoformat()


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class JournalSink:
    """Subscribed after the recorder: once the recorder has failed, the events that end runs
    (notices such as the safe-state action, step ends, run ends) go to the journal instead."""

    def __init__(self, journal: Journal, recording: RecordingSink) -> None:
        self.journal = journal
        self.recording = recording

    def __call__(self, event: ev.Event) -> None:
        if not self.recording.failed:
            return
        entry: dict[str, Any] | None = None
        if isinstance(event, ev.Notice):
            entry = dict(type="event", run_id=event.run_id, step_id=self._row(event),
                         at=_iso(), t_s=event.t_s, kind=event.kind.value,
                         severity=event.severity.value, message=event.message,
                         data=event.data or {})
        elif isinstance(event, ev.StepEnded):
            step_id = self._row(event)
            if step_id is not None:  # a step whose start was never recorded has no row
                entry = dict(type="step_end", step_id=step_id, status=event.status.value,
                             end_reason=event.end.text, t_end_s=event.t_s, ended_at=_iso())
        elif isinstance(event, ev.RunEnded):
            entry = dict(type="run_end", run_id=event.run_id, status=event.status.value,
                         end_reason=event.reason, ended_at=_iso())
        if entry is not None:
            self.journal.append(entry)

    def _row(self, event: ev.Notice | ev.StepEnded) -> int | None:
        if event.step is None:
            return None
        try:
            return self.recording.row_of(event.run_id, event.step)
        except KeyError:
            return None


def apply_entries(engine: Engine, entries: list[dict[str, Any]]) -> None:
    """Write journal entries in one transaction (idempotent: see the module docstring)."""
    with interrupts.database_write(), engine.begin() as conn:
        for entry in entries:
            _apply(conn, entry)


def _apply(conn: Connection, entry: dict[str, Any]) -> None:
    kind = entry.get("type")
    if kind == "event":
        at = _time(entry["at"])
        present = conn.scalar(select(m.Event.id).where(
            m.Event.run_id == entry["run_id"], m.Event.at == at,
            m.Event.kind == entry["kind"], m.Event.message == entry["message"]))
        if present is None:
            conn.execute(m.Event.__table__.insert().values(
                run_id=entry["run_id"], step_id=entry.get("step_id"), at=at,
                t_s=entry.get("t_s"), kind=entry["kind"], severity=entry["severity"],
                message=entry["message"], data=entry.get("data") or {}))
    elif kind == "step_end":
        conn.execute(update(m.Step).where(m.Step.id == entry["step_id"],
                                          m.Step.status == "running").values(
            status=entry["status"], end_reason=entry["end_reason"], t_end_s=entry["t_end_s"],
            ended_at=_time(entry["ended_at"])))
    elif kind == "run_end":
        conn.execute(update(m.Run).where(m.Run.id == entry["run_id"],
                                         m.Run.status.in_(("running", "paused"))).values(
            status=entry["status"], end_reason=entry["end_reason"],
            ended_at=_time(entry["ended_at"]), control=None))
    else:
        log.warning("journal entry of unknown type %r skipped", kind)


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of a journal file (up to its reserved, unwritten space)."""
    data = path.read_bytes().split(b"\0", 1)[0]
    entries = []
    for line in data.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:  # a line cut by a crash mid-write was never acknowledged
            log.warning("journal %s: an incomplete entry skipped", path)
    return entries


def _unlocked_journals(directory: Path) -> Iterator[tuple[Path, int]]:
    """Journal files whose writer is gone, each locked for us (fd) while we replay it."""
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live labctl is writing it
            os.close(fd)
            continue
        yield path, fd


def replay_journals(engine: Engine, url: str) -> int:
    """Write every journal left by a finished labctl into the database; how many entries.

    A journal that cannot be written now (the database still failing) is kept for later.
    """
    directory = journal_dir(url)
    if not directory.is_dir():
        return 0
    written = 0
    for path, fd in _unlocked_journals(directory):
        try:
            entries = read_entries(path)
            if entries:
                apply_entries(engine, entries)
            path.unlink()
            written += len(entries)
            log.info("journal %s written into the database (%d entries)", path, len(entries))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("journal %s kept: %s", path, exc)
        finally:
            os.close(fd)
    return written
