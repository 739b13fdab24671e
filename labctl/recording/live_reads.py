"""Reads for live displays (the web dashboard): no writes here.

A dashboard asks the same few things many times a second from many browsers, while other labctl
processes write: what runs, the last value of each running cell, a run's trace at screen
resolution, and what is new since the last look. Each question is one short query that uses an
index (points by step, rows by id), so it costs the same on a 7-day run as on a 1-hour one,
except the downsampled trace, which reads the run's points once and returns at most a fixed
number of min/max buckets (the reduction happens in SQL, so only the buckets cross the wire).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Integer, cast, func, literal, select

from labctl.recording import models as m
from labctl.recording.queries import RunSummary, _run_summaries
from labctl.recording.reads_analysis import ResultRow

#: Statuses of a run that is still on its channel (the engine may still act on a request).
LIVE_STATUSES = ("running", "paused")


@dataclass(frozen=True)
class LastValue:
    """The newest recorded point of a run."""

    point_id: int
    t_s: float
    E_V: float
    I_mA: float
    P_MPa: float | None


@dataclass
class Trace:
    """A run's time series reduced to buckets of equal run time, each with its min and max.

    Min and max (not a mean or every n-th sample) keep a short spike visible at any zoom, e.g.
    the voltage collapse of a dendrite short. ``last_point_id`` lets a live display ask only for
    what comes after.
    """

    bucket_s: float
    t_lo: list[float] = field(default_factory=list)
    t_hi: list[float] = field(default_factory=list)
    E_lo: list[float] = field(default_factory=list)
    E_hi: list[float] = field(default_factory=list)
    I_lo: list[float] = field(default_factory=list)
    I_hi: list[float] = field(default_factory=list)
    P_lo: list[float | None] = field(default_factory=list)
    P_hi: list[float | None] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # each bucket's number from t0
    t0: float = 0.0
    n_points: int = 0
    last_point_id: int = 0


@dataclass(frozen=True)
class EventRow:
    id: int
    step_id: int | None
    at: dt.datetime
    t_s: float | None
    kind: str
    severity: str
    message: str


@dataclass
class ResultView(ResultRow):
    """A stored result with its quality flag (a flagged value failed its quality check)."""

    flagged: bool = False
    flag_reason: str | None = None


@dataclass(frozen=True)
class ChannelUse:
    """A channel seen in the database (station, potentiostat, channel number), with the newest
    run on it and the live runs on it (more than one when separate processes each ran a bench
    of that name, as simulated benches do)."""

    station: str
    potentiostat: str | None
    channel: int | None
    simulated: bool
    run_id: int
    status: str
    live: tuple[int, ...] = ()


def _run_steps(run_id: int) -> Any:
    return select(m.Step.id).where(m.Step.run_id == run_id).scalar_subquery()


def runs_by_status(engine: Engine, recent: int = 50) -> dict[str, list[RunSummary]]:
    """Every live run (running or paused), plus the `recent` newest others, grouped by status."""
    live = _run_summaries(engine, m.Run.status.in_(LIVE_STATUSES))
    others = _run_summaries(engine, m.Run.status.not_in(LIVE_STATUSES), limit=recent)
    grouped: dict[str, list[RunSummary]] = {}
    for r in (*live, *others):
        grouped.setdefault(r.status, []).append(r)
    return grouped


def channels(engine: Engine) -> list[ChannelUse]:
    """Each station's channels as the runs recorded them, with the newest and the live runs
    (statuses as their holders make them true now, as `labctl runs` shows them)."""
    key = (m.Run.station, m.Instrument.name, m.Run.channel, m.Run.simulated)
    newest = (
        select(func.max(m.Run.id).label("run_id"))
        .outerjoin(m.Instrument, m.Instrument.id == m.Run.potentiostat_id)
        .group_by(*key)
        .subquery()
    )
    base = select(*key, m.Run.id).outerjoin(
        m.Instrument, m.Instrument.id == m.Run.potentiostat_id)
    with engine.connect() as conn:
        rows = conn.execute(base.join(newest, newest.c.run_id == m.Run.id)).all()
        open_rows = conn.execute(base.where(m.Run.status.in_(LIVE_STATUSES))
                                 .order_by(m.Run.id)).all()
    ids = sorted({row[4] for row in (*rows, *open_rows)})
    shown = {r.id: r.status for r in _run_summaries(engine, m.Run.id.in_(ids))} if ids else {}
    live_on: dict[tuple[Any, ...], list[int]] = {}
    for row in open_rows:
        if shown.get(row[4]) in LIVE_STATUSES:
            live_on.setdefault(tuple(row[:4]), []).append(row[4])
    uses = [ChannelUse(*row[:5], shown.get(row[4], "?"),
                       live=tuple(live_on.get(tuple(row[:4]), ()))) for row in rows]
    return sorted(uses, key=lambda c: (c.station, c.potentiostat or "", c.channel or 0))


def last_value(engine: Engine, run_id: int) -> LastValue | None:
    """The run's newest point: its steps newest first, one indexed look-up each until found."""
    step_ids = select(m.Step.id).where(m.Step.run_id == run_id).order_by(m.Step.index.desc())
    newest = (
        select(m.Point.id, m.Point.t_s, m.Point.E_V, m.Point.I_mA, m.Point.P_MPa)
        .order_by(m.Point.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        for step_id in conn.scalars(step_ids):
            row = conn.execute(newest.where(m.Point.step_id == step_id)).first()
            if row is not None:
                return LastValue(*row)
    return None


def run_trace(engine: Engine, run_id: int, buckets: int = 1000) -> Trace:
    """The run's trace as at most `buckets` (+ the newest few) min/max buckets of run time."""
    last = last_value(engine, run_id)
    if last is None:
        return Trace(bucket_s=0.0)
    with engine.connect() as conn:
        t0 = conn.scalar(select(func.min(m.Step.t_start_s)).where(m.Step.run_id == run_id))
        t0 = float(t0 if t0 is not None else 0.0)
        width = max((last.t_s - t0) / max(buckets, 1), 1e-9)
        offset = (m.Point.t_s - t0) / width
        # non-negative, so truncation is the floor; PostgreSQL's CAST rounds, hence floor()
        bucket = (func.floor(offset) if engine.dialect.name == "postgresql"
                  else cast(offset, Integer)).label("b")
        p = m.Point
        # PostgreSQL keeps a NaN (SQLite stores it as NULL) and orders it above every number,
        # so a missing pressure would become the bucket's max: read it as NULL there too
        E, I, P = ((func.nullif(c, literal(float("nan"))) if engine.dialect.name == "postgresql"
                    else c) for c in (p.E_V, p.I_mA, p.P_MPa))
        stmt = (
            select(bucket, func.min(p.t_s), func.max(p.t_s), func.min(E), func.max(E),
                   func.min(I), func.max(I), func.min(P), func.max(P),
                   func.count(), func.max(p.id))
            .where(p.step_id.in_(_run_steps(run_id)))
            .group_by(bucket)
            .order_by(bucket)
        )
        rows = conn.execute(stmt).all()
    trace = Trace(bucket_s=width, t0=t0)
    for row in rows:
        trace.index.append(int(row[0]))
        trace.count.append(int(row[9]))
        trace.t_lo.append(row[1])
        trace.t_hi.append(row[2])
        trace.E_lo.append(row[3])
        trace.E_hi.append(row[4])
        trace.I_lo.append(row[5])
        trace.I_hi.append(row[6])
        trace.P_lo.append(row[7])
        trace.P_hi.append(row[8])
        trace.n_points += int(row[9])
        trace.last_point_id = max(trace.last_point_id, int(row[10]))
    return trace


def points_after(engine: Engine, run_id: int, after_id: int,
                 limit: int = 100_000) -> list[tuple[int, float, float, float, float | None]]:
    """The run's points recorded after point `after_id`, oldest first, at most `limit`, as
    (id, t_s, E_V, I_mA, P_MPa) tuples straight from the DBAPI cursor (a live display turns
    them into JSON or numpy at once; Row objects would only cost time)."""
    p = m.Point
    stmt = (
        select(p.id, p.t_s, p.E_V, p.I_mA, p.P_MPa)
        .where(p.step_id.in_(_run_steps(run_id)), p.id > after_id)
        .order_by(p.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(stmt).all()]  # type: ignore[misc]


def events_after(engine: Engine, run_id: int, after_id: int = 0) -> list[EventRow]:
    """The run's events after event `after_id`, oldest first."""
    e = m.Event
    stmt = (
        select(e.id, e.step_id, e.at, e.t_s, e.kind, e.severity, e.message)
        .where(e.run_id == run_id, e.id > after_id)
        .order_by(e.id)
    )
    with engine.connect() as conn:
        return [EventRow(*row) for row in conn.execute(stmt).all()]


def results_with_quality(engine: Engine, run_id: int) -> list[ResultView]:
    """The run's results in the order they were stored, with their quality flags."""
    r = m.Result
    stmt = select(r.name, r.value, r.text, r.unit, r.analysis, r.step_id, r.flagged,
                  r.flag_reason).where(r.run_id == run_id).order_by(r.id)
    with engine.connect() as conn:
        return [ResultView(*row[:6], bool(row[6]), row[7]) for row in conn.execute(stmt).all()]


def run_status(engine: Engine, run_id: int) -> tuple[str, str | None, str | None] | None:
    """(status as shown, end reason, pending operator request) of a run, or None if there is
    none. The status is the one its holder makes true now (`queries.shown_as_held`): a run
    whose process is gone reads 'interrupted' even before anybody reconciled its row."""
    found = _run_summaries(engine, m.Run.id == run_id)
    if not found:
        return None
    with engine.connect() as conn:
        control = conn.scalar(select(m.Run.control).where(m.Run.id == run_id))
    return found[0].status, found[0].end_reason, control


def run_cell_description(engine: Engine, run_id: int) -> dict[str, Any] | None:
    """The cell description recorded with the run (as the operator's file gave it)."""
    stmt = select(m.Cell.description).join(m.Run, m.Run.cell_id == m.Cell.id).where(
        m.Run.id == run_id)
    with engine.connect() as conn:
        return conn.scalar(stmt)
