"""Ownership of runs and channels: leases the database grants, judged by who holds them.

Why not heartbeats: comparing a run's last heartbeat with the reader's wall clock marked a live
run interrupted when its process was stopped (SIGSTOP, a suspended laptop, a long GC pause) or
when the reader's clock ran fast, and left a killed run "running" for as long as nobody looked.

A lease names its holder — host, pid and the process's start time (a reused pid is another
process) — and carries times on the DATABASE's clock (SQLite's `julianday('now')`, PostgreSQL's
`now()`), so no client's clock enters any judgement. Whether a holder still holds is decided:

* on the holder's own host, by asking the operating system whether that very process exists
  (`psutil`: pid alive, same start time, not a zombie). A stopped process exists, so a run held
  by it is live however old its lease; a killed one does not, so its run is interrupted at once;
* for a holder on another host, which cannot be asked, by the lease: renewed before it expires
  means live; expired means *silent* — stopped, cut off or gone, nobody here can tell which.
  A silent holder's run is shown as such and its channels are refused, never taken over: a
  process that was only stopped would come back to a channel someone else is driving.

Nothing here marks a run interrupted on a guess: only a holder known gone (same host, process
gone) lets `Recorder.reconcile_stale_runs` write it, and readers show it at once either way.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import psutil
from sqlalchemy import (
    Connection,
    Engine,
    Float,
    cast,
    delete,
    extract,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from labctl.recording import models as m
from labctl.recording.database import DatabaseError

#: How long a lease lasts without renewal (LABCTL_LEASE_TTL_S, default 60 s). It only matters for
#: holders on another host; it is long against everything that can stall a healthy process (a
#: 10 s SQLite busy wait, retries). Tests shorten it to outlast it quickly.
LEASE_TTL_S = float(os.environ.get("LABCTL_LEASE_TTL_S", "60"))
#: How often a running process renews its leases (well inside the TTL).
RENEW_EVERY_S = min(5.0, LEASE_TTL_S / 3)
#: Start times from /proc are kept to 10 ms; two reads of the same process agree far closer.
_START_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Holder:
    """One process on one host: what a lease names."""

    host: str
    pid: int
    started_s: float

    @classmethod
    def current(cls) -> Holder:
        """This process (a forked child is another process: the pid keys the cache)."""
        return _process(os.getpid())

    @classmethod
    def of(cls, row: Any) -> Holder:
        return cls(row.host, row.pid, row.pid_started_s)

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}"

    def columns(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "pid_started_s": self.started_s}


@cache
def _process(pid: int) -> Holder:
    return Holder(socket.gethostname(), pid, psutil.Process(pid).create_time())


class Liveness(enum.Enum):
    LIVE = "live"  # the holder's process exists (same host) or renews its lease (other host)
    GONE = "gone"  # same host: the process is gone, a zombie, or its pid is another process now
    SILENT = "silent"  # other host, lease expired: stopped, cut off or gone; unknown which


def process_exists(holder: Holder) -> bool:
    """Whether `holder`'s very process exists on this host (stopped counts as existing)."""
    try:
        proc = psutil.Process(holder.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - holder.started_s) < _START_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists; we may not look closer
        return True


def judge(holder: Holder, expires_db_s: float, db_now_s: float) -> Liveness:
    """Whether `holder` still holds its lease (see the module docstring)."""
    if holder.host == Holder.current().host:
        return Liveness.LIVE if process_exists(holder) else Liveness.GONE
    return Liveness.LIVE if expires_db_s > db_now_s else Liveness.SILENT


def db_now_s(conn: Connection) -> ColumnElement[float]:
    """The database's clock as seconds since the epoch (a SQL expression)."""
    if conn.dialect.name == "sqlite":
        return func.julianday("now").op("-")(literal(2440587.5)).op("*")(literal(86400.0))
    return cast(extract("epoch", func.now()), Float)


def _times(conn: Connection, *, acquired: bool) -> dict[str, Any]:
    now = db_now_s(conn)
    times: dict[str, Any] = {"renewed_db_s": now, "expires_db_s": now + LEASE_TTL_S}
    if acquired:
        times["acquired_db_s"] = now
    return times


@dataclass(frozen=True)
class HolderState:
    """A lease as a reader sees it: who holds it and whether they still do."""

    holder: Holder
    liveness: Liveness
    silent_for_s: float  # how long ago the lease expired (database clock); 0 unless SILENT

    def why_not_live(self) -> str:
        if self.liveness is Liveness.GONE:
            return f"its holder ({self.holder.describe()}) is gone"
        return (f"its holder ({self.holder.describe()}) has not renewed its lease for "
                f"{self.silent_for_s:.0f} s past expiry (database clock): it may be stopped, "
                "cut off or gone")


def interrupted_reason(state: HolderState) -> str:
    """The end reason of a run whose holder is gone."""
    return (f"interrupted: {state.why_not_live()} without ending the run (crash, kill or power "
            "loss); data kept up to its last commit")


class RunNotHeld(RuntimeError):
    """An operator request to a run nobody holds any more (gone) or can be heard from (silent)."""

    def __init__(self, run_id: int, state: HolderState) -> None:
        self.run_id = run_id
        self.state = state
        shown = "interrupted" if state.liveness is Liveness.GONE else "unresponsive"
        super().__init__(f"run {run_id} is {shown}: {state.why_not_live()}")


def _state(row: Any, now: float) -> HolderState:
    holder = Holder.of(row)
    liveness = judge(holder, row.expires_db_s, now)
    silent = max(0.0, now - row.expires_db_s) if liveness is Liveness.SILENT else 0.0
    return HolderState(holder, liveness, silent)


# ---- runs -------------------------------------------------------------------------------------
def hold_run(conn: Connection, run_id: int, holder: Holder | None = None) -> None:
    """Grant `holder` (this process) the lease of a run just created, in its transaction."""
    holder = holder or Holder.current()
    conn.execute(insert(m.RunLease).values(run_id=run_id, **holder.columns(),
                                           **_times(conn, acquired=True)))


def release_run(conn: Connection, run_id: int) -> None:
    """The run has ended: its lease is kept as the record of who held it, marked released."""
    conn.execute(update(m.RunLease).where(m.RunLease.run_id == run_id,
                                          m.RunLease.released_db_s.is_(None))
                 .values(released_db_s=db_now_s(conn)))


def renew(conn: Connection, run_id: int, holder: Holder | None = None) -> None:
    """Renew the run's lease and every channel lease `holder` (this process) has."""
    holder = holder or Holder.current()
    conn.execute(update(m.RunLease).where(m.RunLease.run_id == run_id,
                                          m.RunLease.released_db_s.is_(None))
                 .values(**_times(conn, acquired=False)))
    conn.execute(update(m.ChannelLease).where(*_held_by(m.ChannelLease, holder))
                 .values(**_times(conn, acquired=False)))


def run_holders(conn: Connection, run_ids: Iterable[int]) -> dict[int, HolderState]:
    """The holder state of each unreleased run lease among `run_ids` (runs without one, e.g.
    recorded before leases existed or already ended, are absent)."""
    ids = list(run_ids)
    if not ids:
        return {}
    now = float(conn.scalar(select(db_now_s(conn))))
    rows = conn.execute(select(m.RunLease).where(m.RunLease.run_id.in_(ids),
                                                 m.RunLease.released_db_s.is_(None))).all()
    return {row.run_id: _state(row, now) for row in rows}


# ---- channels ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelKey:
    instrument: str
    channel: int

    def describe(self, station: str) -> str:
        return f"channel {self.channel} of {self.instrument} on station {station!r}"


@dataclass(frozen=True)
class Orphan:
    """A channel whose holder is gone: nobody stopped it; the next labctl on the station will."""

    key: ChannelKey
    holder: Holder
    run_id: int | None


@dataclass(frozen=True)
class ChannelClaim:
    """What `claim_channels` granted: the wanted channels, plus every orphaned channel of the
    station (held until it has been switched off, so nobody else starts on it meanwhile)."""

    station: str
    holder: Holder
    wanted: tuple[ChannelKey, ...]
    orphans: tuple[Orphan, ...]


class ChannelLeased(RuntimeError):
    """A wanted channel is held by another labctl (one line naming it and its holder)."""


def _held_by(table: type[m.ChannelLease] | type[m.RunLease], holder: Holder
             ) -> tuple[ColumnElement[bool], ...]:
    return (table.host == holder.host, table.pid == holder.pid,
            table.pid_started_s == holder.started_s)


def claim_channels(engine: Engine, station: str, wanted: Sequence[ChannelKey],
                   holder: Holder | None = None) -> ChannelClaim:
    """Lease `wanted` on `station` for `holder` (this process), or refuse and change nothing.

    A channel held by a live or silent holder is refused (`ChannelLeased`). Leases of holders
    known gone are taken over — all of the station's, not only the wanted ones — and returned
    as orphans for the caller to switch off before anything else. Two labctls claiming at once
    cannot both win: each lease is one primary-key row, inserted in one transaction.
    """
    holder = holder or Holder.current()
    wanted = tuple(dict.fromkeys(wanted))
    try:
        with engine.begin() as conn:
            # a write first: claimants queue here (SQLite's write lock, PostgreSQL's row locks)
            # instead of deciding on what another claimant is changing
            conn.execute(update(m.ChannelLease).where(m.ChannelLease.station == station)
                         .values(station=m.ChannelLease.station))
            now = float(conn.scalar(select(db_now_s(conn))))
            rows = conn.execute(select(m.ChannelLease)
                                .where(m.ChannelLease.station == station)).all()
            orphans: list[Orphan] = []
            for row in rows:
                key = ChannelKey(row.instrument, row.channel)
                state = _state(row, now)
                if state.liveness is Liveness.GONE:
                    orphans.append(Orphan(key, state.holder, row.run_id))
                elif key in wanted:
                    run = "" if row.run_id is None else f" (run {row.run_id})"
                    live = ("in use by " + state.holder.describe()
                            if state.liveness is Liveness.LIVE else state.why_not_live())
                    raise ChannelLeased(f"{key.describe(station)} is leased{run}: {live}; "
                                        "nothing was touched")
            for o in orphans:
                conn.execute(delete(m.ChannelLease).where(
                    m.ChannelLease.station == station,
                    m.ChannelLease.instrument == o.key.instrument,
                    m.ChannelLease.channel == o.key.channel, *_held_by(m.ChannelLease, o.holder)))
            # an orphan keeps its crashed run's id until it is switched off and given back
            keys = {k: None for k in wanted} | {o.key: o.run_id for o in orphans}
            if keys:
                conn.execute(insert(m.ChannelLease), [
                    dict(station=station, instrument=k.instrument, channel=k.channel,
                         **holder.columns(), run_id=run_id, acquired_db_s=now,
                         renewed_db_s=now, expires_db_s=now + LEASE_TTL_S)
                    for k, run_id in keys.items()])
    except IntegrityError:
        raise ChannelLeased(f"a channel of station {station!r} was leased by another labctl "
                            "at the same moment; nothing was touched") from None
    except OperationalError as exc:  # e.g. SQLite still locked after its busy wait
        detail = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "error"
        raise DatabaseError(f"could not lease the channels of station {station!r}: {detail}; "
                            "nothing was touched") from None
    return ChannelClaim(station, holder, wanted, tuple(orphans))


def name_runs(engine: Engine, claim: ChannelClaim, runs: dict[ChannelKey, int]) -> None:
    """Say which run each claimed channel carries (so a refusal can name it)."""
    with engine.begin() as conn:
        for key, run_id in runs.items():
            conn.execute(update(m.ChannelLease).where(
                m.ChannelLease.station == claim.station,
                m.ChannelLease.instrument == key.instrument,
                m.ChannelLease.channel == key.channel,
                *_held_by(m.ChannelLease, claim.holder)).values(run_id=run_id))


def release_channels(engine: Engine, claim: ChannelClaim,
                     keys: Iterable[ChannelKey] | None = None) -> None:
    """Give back `keys` (default: every channel of the claim) if the claim's holder has them."""
    chosen = list(keys) if keys is not None else [*claim.wanted, *(o.key for o in claim.orphans)]
    if not chosen:
        return
    with engine.begin() as conn:
        for key in chosen:
            conn.execute(delete(m.ChannelLease).where(
                m.ChannelLease.station == claim.station,
                m.ChannelLease.instrument == key.instrument,
                m.ChannelLease.channel == key.channel,
                *_held_by(m.ChannelLease, claim.holder)))
