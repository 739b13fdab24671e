"""The database fails mid-run: the run still ends honestly in the database once it is back.

Real failures under a real `labctl run --sim` process:
  * disk full — the SQLite file lives on a small tmpfs with 3 MiB left, which the run fills;
  * read-only file — the SQLite file and its WAL are made immutable (`chattr +i`: even root's
    writes fail) mid-run, and writable again a few seconds later;
  * PostgreSQL down — labctl reaches the server through a TCP proxy in this test, which is
    killed mid-run (every connection cut, nothing listening) and started again after 6 s; the
    server itself (shared with other tests) is never touched.

Each time the channel is switched off first (the engine's safe state, as before), and the
safe-state event and the run's final status reach the database: written by the same process
within its run's end (read-only, PostgreSQL), or by the next labctl that opens the database
(disk full, after space was freed) from the local journal.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from labctl.recording.database import open_database
from labctl.recording.journal import journal_dir, read_entries
from tests.cli.test_bench_process import PROTOCOL as LONG_STRIP

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "examples" / "cells" / "na_symmetric.yaml"
LABCTL = Path(sys.executable).with_name("labctl")

PROTOCOL = LONG_STRIP.replace("duration: 1 h", "duration: 200 h")  # virtual time runs fast


def _start(tmp: Path, db_url: str) -> subprocess.Popen[str]:
    proto = tmp / "long.yaml"
    proto.write_text(PROTOCOL)
    return subprocess.Popen(
        [str(LABCTL), "run", str(proto), "--cell", str(CELL), "--sim", "--db", db_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "XDG_STATE_HOME": str(tmp / "state")})


def _wait_for_points(url: str, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    eng = create_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                with eng.connect() as conn:
                    if conn.execute(text("select count(*) from point")).scalar():
                        return
            except Exception:
                pass  # schema not there yet
            time.sleep(0.1)
    finally:
        eng.dispose()
    raise AssertionError("the run never recorded a point")


def _ending(url: str) -> tuple[str, str, list[str]]:
    """(status, end reason, safe-state messages) of run 1, read by a plain engine."""
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            status, reason = conn.execute(
                text("select status, end_reason from run where id = 1")).one()
            safe = list(conn.execute(text(
                "select message from event where run_id = 1 and kind = 'safe_state'")).scalars())
    finally:
        eng.dispose()
    return status, reason, safe


def _assert_ended_honestly(url: str) -> None:
    status, reason, safe = _ending(url)
    assert status == "failed", (status, reason)
    assert "database write failed" in reason, reason
    assert any(m.startswith("channel off: ") for m in safe), safe


# ---- disk full ---------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path, leave_bytes: int) -> Path:
    """Take all but `leave_bytes` of the file system's free space (the way a runaway log would):
    the run fills the rest itself."""
    free = os.statvfs(directory)
    take = free.f_bavail * free.f_frsize - leave_bytes
    filler = directory / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\1" * take)
    return filler


def test_disk_full_mid_run_ends_in_the_database_once_space_is_back(
        small_disk: Path, tmp_path: Path) -> None:
    db = small_disk / "labctl.db"
    url = f"sqlite:///{db}"
    filler = _fill(small_disk, leave_bytes=3 * 2**20)
    proc = _start(tmp_path, url)
    _wait_for_points(url, proc)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "database write failed" in err and "Traceback" not in err, err
    # the run's end is either in the journal (its room was reserved) and not yet in the full
    # database, or already written by the run's end (a rolled-back write can free the room
    # the few rows of an ending need)
    journals = list(journal_dir(url).glob("*.jsonl"))
    if _ending(url)[0] == "running":
        assert len(journals) == 1, journals
        print("the run's ending waited in the journal for the next labctl")
    else:
        assert not journals
        print("the run's ending was written within the run's end")
    filler.unlink()
    open_database(url).dispose()  # what every labctl does when it opens the database
    _assert_ended_honestly(url)
    assert not list(journal_dir(url).glob("*.jsonl"))


# ---- read-only file ----------------------------------------------------------------------------
def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def _journaled(url: str) -> list[dict[str, object]]:
    return [e for path in journal_dir(url).glob("*.jsonl") for e in read_entries(path)]


@pytest.mark.parametrize("writable_again", ["during the run's end", "after labctl exited"])
def test_read_only_file_mid_run_ends_in_the_database_when_writable_again(
        tmp_path: Path, writable_again: str) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr not available")
    db = tmp_path / "labctl.db"
    url = f"sqlite:///{db}"
    proc = _start(tmp_path, url)
    _wait_for_points(url, proc)
    files = [db, db.with_name(db.name + "-wal")]
    _chattr("+i", *files)
    try:
        deadline = time.monotonic() + 60
        while not any(e["type"] == "run_end" for e in _journaled(url)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        if writable_again == "after labctl exited":
            _, err = proc.communicate(timeout=120)  # its run's end gave up after a while
            assert _ending_without_writing(db) == "running"
            assert {e["type"] for e in _journaled(url)} >= {"event", "run_end"}
        else:
            time.sleep(3.0)  # read-only for a while, then writable while the run's end retries
    finally:
        _chattr("-i", *files)
    if writable_again == "after labctl exited":
        open_database(url).dispose()  # what every labctl does when it opens the database
    else:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    _assert_ended_honestly(url)
    assert not _journaled(url)


def _ending_without_writing(db: Path) -> str:
    """Run 1's status, read without writing (the file is immutable)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return str(conn.execute("select status from run where id = 1").fetchone()[0])


# ---- PostgreSQL down ---------------------------------------------------------------------------
class TcpProxy:
    """127.0.0.1:port -> the PostgreSQL server; `kill()` cuts every connection and stops
    listening, `start()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(16)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def kill(self) -> None:
        if self._listener is not None:  # shutdown wakes the thread blocked in accept()
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_postgresql_down_mid_run_ends_in_the_database_when_it_is_back(
        new_pg_database: Callable[[str], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pg_database = new_pg_database("labctl_h3_dbfail")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where the run's journal is
    direct = make_url(pg_database)
    proxy = TcpProxy((direct.host or "127.0.0.1", direct.port or 5432))
    proxy.start()
    via_proxy = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)
    open_database(via_proxy).dispose()  # the schema, so that the test can watch the points
    proc = _start(tmp_path, via_proxy)
    _wait_for_points(pg_database, proc)
    proxy.kill()
    time.sleep(6.0)  # down for 6 s, as in the fault test that found the problem
    proxy.start()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proxy.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    _assert_ended_honestly(pg_database)  # the same process wrote it once the server was back
    assert not list(journal_dir(via_proxy).glob("*.jsonl"))
