"""Leases on SQLite and PostgreSQL: who holds a run or a channel, judged by existence, not clocks.

Real processes stand in for holders (alive, stopped with SIGSTOP, killed, a pid with another
start time); holders on another host are rows naming another host.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from sqlalchemy import Engine, select, update

from labctl.recording import leases
from labctl.recording import models as m
from labctl.recording.database import open_database
from labctl.recording.queries import get_run, recent_runs
from labctl.recording.recorder import Recorder

RUN = dict(
    cell={"id": "c1", "anode": {"material": "Na"}, "area_cm2_resolved": 0.28},
    protocol_name="p", protocol_text="schema_version: 1\n", protocol_sha256="cd" * 32,
    schema_version=1, station="st", simulated=True, operator="pytest", labctl_version="0",
)
ST = "st"
CH0, CH1 = leases.ChannelKey("pot", 0), leases.ChannelKey("pot", 1)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_database(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    proc.wait(10)


def _holder(proc: subprocess.Popen[bytes]) -> leases.Holder:
    return leases.Holder(leases.Holder.current().host, proc.pid,
                         psutil.Process(proc.pid).create_time())


def _hand_run_to(engine: Engine, run_id: int, holder: leases.Holder, *,
                 expires_in_s: float = leases.LEASE_TTL_S) -> None:
    """Make `holder` the holder of the run (as if it had started it), lease due in expires_in_s."""
    with engine.begin() as conn:
        now = float(conn.scalar(select(leases.db_now_s(conn))))
        conn.execute(update(m.RunLease).where(m.RunLease.run_id == run_id).values(
            **holder.columns(), expires_db_s=now + expires_in_s))


def test_a_run_is_held_by_its_process_from_its_first_row_until_it_ends(engine: Engine) -> None:
    rec = Recorder(engine)
    run_id = rec.start_run(**RUN)  # type: ignore[arg-type]
    with engine.connect() as conn:
        state = leases.run_holders(conn, [run_id])[run_id]
        lease = conn.execute(select(m.RunLease)).one()
        db_now = float(conn.scalar(select(leases.db_now_s(conn))))
    assert state.holder == leases.Holder.current() and state.liveness is leases.Liveness.LIVE
    assert abs(lease.acquired_db_s - db_now) < 5 and lease.expires_db_s == pytest.approx(
        lease.acquired_db_s + leases.LEASE_TTL_S)
    rec.end_run(run_id, "completed")
    with engine.connect() as conn:
        assert leases.run_holders(conn, [run_id]) == {}
        assert conn.scalar(select(m.RunLease.released_db_s)) is not None  # kept as the record


def test_stopped_holder_is_live_however_old_its_lease(
        engine: Engine, other_process: subprocess.Popen[bytes]) -> None:
    rec = Recorder(engine)
    run_id = rec.start_run(**RUN)  # type: ignore[arg-type]
    _hand_run_to(engine, run_id, _holder(other_process), expires_in_s=-86_400.0)
    other_process.send_signal(signal.SIGSTOP)
    _wait_status(other_process.pid, psutil.STATUS_STOPPED)
    assert rec.reconcile_stale_runs() == []
    assert get_run(engine, run_id).status == "running"  # type: ignore[union-attr]
    assert rec.request_control(run_id, "pause") is True  # it will act on it when woken


def test_killed_holder_is_interrupted_at_once_and_refuses_requests(
        engine: Engine, other_process: subprocess.Popen[bytes]) -> None:
    rec = Recorder(engine)
    run_id = rec.start_run(**RUN)  # type: ignore[arg-type]
    _hand_run_to(engine, run_id, _holder(other_process))  # a lease good for a minute still
    other_process.kill()
    _wait_status(other_process.pid, psutil.STATUS_ZOMBIE)  # not reaped yet: a zombie is gone
    shown = get_run(engine, run_id)
    assert shown is not None and shown.status == "interrupted"
    assert f"pid {other_process.pid}" in (shown.end_reason or "")
    assert [r.status for r in recent_runs(engine)] == ["interrupted"]
    with pytest.raises(leases.RunNotHeld, match=f"run {run_id} is interrupted"):
        rec.request_control(run_id, "abort")
    other_process.wait(10)
    assert rec.reconcile_stale_runs() == [run_id]  # now written, with its reason and an event
    with engine.connect() as conn:
        run = conn.execute(select(m.Run)).one()
        events = conn.execute(select(m.Event.kind, m.Event.message)).all()
    assert run.status == "interrupted" and run.ended_at is not None and run.control is None
    assert [k for k, _ in events] == ["fault"] and "gone" in events[0][1]
    assert rec.reconcile_stale_runs() == []  # once


def test_a_reused_pid_is_another_process(engine: Engine) -> None:
    rec = Recorder(engine)
    run_id = rec.start_run(**RUN)  # type: ignore[arg-type]
    me = leases.Holder.current()
    _hand_run_to(engine, run_id, leases.Holder(me.host, me.pid, me.started_s - 3600.0))
    assert get_run(engine, run_id).status == "interrupted"  # type: ignore[union-attr]


def test_holder_on_another_host_live_while_renewed_silent_when_expired(engine: Engine) -> None:
    rec = Recorder(engine)
    run_id = rec.start_run(**RUN)  # type: ignore[arg-type]
    far = leases.Holder("another-host.invalid", 4242, 1.0)
    _hand_run_to(engine, run_id, far, expires_in_s=30.0)
    assert get_run(engine, run_id).status == "running"  # type: ignore[union-attr]
    _hand_run_to(engine, run_id, far, expires_in_s=-300.0)
    shown = get_run(engine, run_id)
    assert shown is not None and shown.status == "unresponsive"
    assert "not renewed its lease for 300 s" in (shown.end_reason or "")
    assert rec.reconcile_stale_runs() == []  # silent is not gone: never written as interrupted
    with pytest.raises(leases.RunNotHeld, match="unresponsive"):
        rec.request_control(run_id, "abort")
    with engine.connect() as conn:
        assert conn.scalar(select(m.Run.status)) == "running"


def test_heartbeat_renews_on_the_database_clock(engine: Engine) -> None:
    rec = Recorder(engine)
    run_id = rec.start_run(**RUN)  # type: ignore[arg-type]
    leases.claim_channels(engine, ST, [CH0])
    with engine.begin() as conn:  # both leases made to look old
        conn.execute(update(m.RunLease).values(expires_db_s=0.0))
        conn.execute(update(m.ChannelLease).values(expires_db_s=0.0))
    assert rec.heartbeat(run_id) is None
    with engine.connect() as conn:
        now = float(conn.scalar(select(leases.db_now_s(conn))))
        for table in (m.RunLease, m.ChannelLease):
            assert conn.scalar(select(table.expires_db_s)) == pytest.approx(
                now + leases.LEASE_TTL_S, abs=5)


def test_a_leased_channel_is_refused_and_nothing_changes(
        engine: Engine, other_process: subprocess.Popen[bytes]) -> None:
    other = _holder(other_process)
    leases.claim_channels(engine, ST, [CH0], holder=other)
    with engine.connect() as conn:
        before = conn.execute(select(m.ChannelLease)).all()
    with pytest.raises(leases.ChannelLeased,
                       match=f"channel 0 of pot on station 'st' is leased: in use by pid "
                             f"{other.pid}"):
        leases.claim_channels(engine, ST, [CH0, CH1])
    with engine.connect() as conn:
        assert conn.execute(select(m.ChannelLease)).all() == before
    # another channel of the station is free
    got = leases.claim_channels(engine, ST, [CH1])
    assert got.wanted == (CH1,) and got.orphans == ()


def test_a_gone_holders_channels_are_orphans_all_of_them(
        engine: Engine, other_process: subprocess.Popen[bytes]) -> None:
    rec = Recorder(engine)
    run_id = rec.start_run(**RUN)  # type: ignore[arg-type]
    crashed = leases.claim_channels(engine, ST, [CH0, CH1], holder=_holder(other_process))
    leases.name_runs(engine, crashed, {CH1: run_id})
    far = leases.Holder("another-host.invalid", 7, 1.0)  # silent: neither taken nor touched
    leases.claim_channels(engine, ST, [leases.ChannelKey("pot", 2)], holder=far)
    with engine.begin() as conn:
        conn.execute(update(m.ChannelLease).where(m.ChannelLease.host == far.host)
                     .values(expires_db_s=0.0))
    other_process.kill()
    other_process.wait(10)
    claim = leases.claim_channels(engine, ST, [CH0])
    assert claim.wanted == (CH0,)
    assert {(o.key, o.run_id) for o in claim.orphans} == {(CH0, None), (CH1, run_id)}
    with engine.connect() as conn:  # every orphan is ours until it has been switched off
        held = {(r.channel, r.pid) for r in conn.execute(select(m.ChannelLease)).all()}
    me = leases.Holder.current().pid
    assert held == {(0, me), (1, me), (2, far.pid)}
    leases.release_channels(engine, claim, [CH1])
    leases.release_channels(engine, claim)
    with engine.connect() as conn:
        assert [r.pid for r in conn.execute(select(m.ChannelLease)).all()] == [far.pid]
    with pytest.raises(leases.ChannelLeased, match="may be stopped, cut off or gone"):
        leases.claim_channels(engine, ST, [leases.ChannelKey("pot", 2)])


def test_two_claims_at_once_one_wins(engine: Engine, other_process: subprocess.Popen[bytes]
                                     ) -> None:
    holders = [leases.Holder.current(), _holder(other_process)]
    barrier = threading.Barrier(2)
    outcome: list[str] = []

    def claim(h: leases.Holder) -> None:
        barrier.wait()
        try:
            leases.claim_channels(engine, ST, [CH0, CH1], holder=h)
            outcome.append("won")
        except leases.ChannelLeased:
            outcome.append("refused")

    threads = [threading.Thread(target=claim, args=(h,)) for h in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcome) == ["refused", "won"]
    with engine.connect() as conn:
        assert len({r.pid for r in conn.execute(select(m.ChannelLease)).all()}) == 1


def _wait_status(pid: int, status: str) -> None:
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != status:
        assert time.monotonic() < deadline, f"pid {pid} never became {status}"
        time.sleep(0.02)
