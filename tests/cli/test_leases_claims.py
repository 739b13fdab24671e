"""A launch's claim on a station's channels (labctl.station_claims), on SQLite and PostgreSQL.

What the end-to-end process test (test_leases_process.py) cannot provoke cheaply: a launch that
fails between taking a crashed holder's channels and switching them off must leave them
orphaned for the next labctl; the in-process simulated bench is never leased.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest
from sqlalchemy import Engine, select

from labctl.recording import leases
from labctl.recording import models as m
from labctl.recording.database import open_database
from labctl.station_claims import ChannelInUse, StationClaim
from labctl.stations import builtin_sim_station, parse_station_text

STATION = """\
name: bench-a
potentiostats:
  - {name: pot, driver: biologic-sp300, address: USB0, backend: 'tcp://127.0.0.1:9/pot'}
channels:
  - {potentiostat: pot, channel: 0}
  - {potentiostat: pot, channel: 1}
"""


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_database(db_url)
    yield eng
    eng.dispose()


def _crashed_holder() -> leases.Holder:
    """A process that held channels and is gone (killed and reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = leases.Holder(leases.Holder.current().host, proc.pid,
                           psutil.Process(proc.pid).create_time())
    proc.kill()
    proc.wait(10)
    return holder


def _leases(engine: Engine) -> dict[int, tuple[int, int | None]]:
    with engine.connect() as conn:
        return {r.channel: (r.pid, r.run_id) for r in conn.execute(select(m.ChannelLease))}


def test_orphans_stay_leased_until_switched_off(engine: Engine) -> None:
    spec = parse_station_text("bench-a.yaml", STATION)
    keys = [leases.ChannelKey("pot", 0), leases.ChannelKey("pot", 1)]
    gone = _crashed_holder()
    leases.claim_channels(engine, "bench-a", keys, holder=gone)

    claim = StationClaim.take(engine, spec, 1)
    assert claim.safe_first(spec) == [("pot", 0), ("pot", 1)]
    claim.release()  # as when connecting failed: nothing was switched off
    me = leases.Holder.current().pid
    assert _leases(engine) == {0: (me, None), 1: (me, None)}  # still flagged, in our name

    # held by a live process (this one) now: refused to anyone, this process included; once
    # this process is gone they are orphans again and the next labctl switches them off
    with pytest.raises(ChannelInUse, match=f"channel 0 of pot on station 'bench-a' is "
                                           f"leased: in use by pid {me}"):
        StationClaim.take(engine, spec, 1)


def test_switched_off_orphans_not_used_are_given_back(engine: Engine) -> None:
    spec = parse_station_text("bench-a.yaml", STATION)
    gone = _crashed_holder()
    leases.claim_channels(engine, "bench-a", [leases.ChannelKey("pot", 0),
                                              leases.ChannelKey("pot", 1)], holder=gone)
    claim = StationClaim.take(engine, spec, 1)
    claim.record_safe_state(spec)  # after open_station(safe_first=...) stopped both
    assert set(_leases(engine)) == {0}
    claim.release()
    assert _leases(engine) == {}


def test_the_in_process_bench_is_not_leased(engine: Engine) -> None:
    spec = builtin_sim_station()
    claims = [StationClaim.take(engine, spec, 2) for _ in range(2)]  # two --sim launches
    assert [c.claim for c in claims] == [None, None]
    assert _leases(engine) == {}
