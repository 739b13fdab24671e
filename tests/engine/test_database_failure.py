"""Database hiccups are retried; a database that is gone for good stops every cell safely.

Failures are injected at the DBAPI level (a SQLAlchemy `before_cursor_execute` hook raising
sqlite3.OperationalError, as a locked or vanished database does), so the recorder's real retry
path and the engine's real safe-state path run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select

from labctl.engine.events import RunStatus
from labctl.engine.runner import RunFailure, run_protocol
from labctl.protocol import resolved as rs
from labctl.recording import models as m
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell

from .rig import Rig, make_rig

STEP = rs.Galvanostatic("long step", current_mA=0.5, duration_s=4 * 3600.0,
                        record=rs.RecordEvery(dt_s=1.0, dE_V=None))


@contextmanager
def failing_writes(rig: Rig, failures: int, after_s: float) -> Iterator[list[int]]:
    """Make the next `failures` INSERT/UPDATEs after simulated `after_s` fail (-1: all)."""
    failed = [0]

    def hook(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        verb = statement.lstrip().split(" ", 1)[0].upper()
        if verb in ("INSERT", "UPDATE") and rig.ctx.run_time() >= after_s and (
            failures < 0 or failed[0] < failures
        ):
            failed[0] += 1
            raise sqlite3.OperationalError("database is locked")

    event.listen(rig.engine, "before_cursor_execute", hook)
    try:
        yield failed
    finally:
        event.remove(rig.engine, "before_cursor_execute", hook)


def test_transient_database_errors_are_retried_and_nothing_is_lost(db_url: str) -> None:
    rig = make_rig(db_url, EquivalentCircuitCell(area_cm2=0.5))
    protocol = rs.ResolvedProtocol("hiccup", 1, (STEP,))
    with failing_writes(rig, failures=3, after_s=3600.0) as failed:
        (out,) = run_protocol([(rig.ctx, protocol)])
    assert failed[0] == 3
    assert out.status is RunStatus.COMPLETED
    with rig.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.Point)) == 4 * 3600


def test_database_gone_for_good_switches_the_channel_off(db_url: str) -> None:
    rig = make_rig(db_url, EquivalentCircuitCell(area_cm2=0.5))
    protocol = rs.ResolvedProtocol("db gone", 1, (STEP,))
    with failing_writes(rig, failures=-1, after_s=1800.0), pytest.raises(RunFailure) as err:
        run_protocol([(rig.ctx, protocol)])
    assert "every channel was switched off" in str(err.value)
    assert rig.channel_off()
    with rig.engine.connect() as conn:  # what was committed before the failure is kept
        assert conn.scalar(select(func.count()).select_from(m.Step)) == 1
    # its holder (this process) still exists, so nobody marks it interrupted on a guess
    assert rig.recorder.reconcile_stale_runs() == []
