"""Read-side helpers: what the CLI and the analyses ask of the database (no writes here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from labctl.recording import leases
from labctl.recording import models as m

if TYPE_CHECKING:  # numpy only where time series are read, not for `runs` / `show`
    import numpy as np

#: Recorded statuses of a run that has not ended.
OPEN_STATUSES = ("running", "paused")


@dataclass
class RunSummary:
    id: int
    cell: str
    protocol: str
    station: str
    channel: int | None
    simulated: bool
    operator: str | None
    status: str
    started_at: Any
    ended_at: Any
    end_reason: str | None


@dataclass
class StepSummary:
    id: int
    index: int
    parent_id: int | None
    kind: str
    name: str
    status: str
    end_reason: str | None
    t_start_s: float
    t_end_s: float | None
    n_points: int
    n_eis: int
    params: dict[str, Any]


def _run_summaries(engine: Engine, *where: Any, limit: int | None = None) -> list[RunSummary]:
    stmt = (
        select(m.Run, m.Cell.name, m.Protocol.name)
        .join(m.Cell, m.Run.cell_id == m.Cell.id)
        .join(m.Protocol, m.Run.protocol_id == m.Protocol.id)
        .where(*where)
        .order_by(m.Run.id.desc())
        .limit(limit)
    )
    with Session(engine) as session:
        found = [
            RunSummary(run.id, cell, proto, run.station, run.channel, run.simulated,
                       run.operator, run.status, run.started_at, run.ended_at, run.end_reason)
            for run, cell, proto in session.execute(stmt).all()
        ]
        return shown_as_held(session.connection(), found)


#: The status a reader shows for a run whose holder on another host is silent (lease expired).
UNRESPONSIVE = "unresponsive"


def shown_as_held(conn: Connection, runs: list[RunSummary]) -> list[RunSummary]:
    """`runs` with the status their holders make true now (labctl.recording.leases).

    A run recorded 'running' or 'paused' whose holder is gone is shown 'interrupted' at once,
    whether or not anybody has reconciled the record yet; one whose holder on another host is
    silent is shown 'unresponsive'. Live runs, ended runs and runs recorded before leases
    existed are shown as recorded. Nothing is written.
    """
    open_ids = [r.id for r in runs if r.status in OPEN_STATUSES]
    states = leases.run_holders(conn, open_ids)
    for r in runs:
        state = states.get(r.id)
        if state is None or state.liveness is leases.Liveness.LIVE:
            continue
        if state.liveness is leases.Liveness.GONE:
            r.status, r.end_reason = "interrupted", leases.interrupted_reason(state)
        else:
            r.status, r.end_reason = UNRESPONSIVE, state.why_not_live()
    return runs


def recent_runs(engine: Engine, limit: int | None = 20, *, cell: str | None = None,
                status: str | None = None, protocol: str | None = None,
                since: Any = None, run_ids: set[int] | None = None) -> list[RunSummary]:
    """The newest runs matching every filter given, newest first, at most `limit`.

    `cell` and `protocol` match part of the name, case-insensitively; `since` is a datetime
    (UTC) the run started at or after; `run_ids` keeps only those runs (e.g. the runs with a
    tag). `status` is compared with the status shown (after the holder check), so
    ``status="interrupted"`` also finds runs whose holder is gone but not yet reconciled.
    """
    where: list[Any] = []
    if cell:
        where.append(m.Cell.name.icontains(cell, autoescape=True))
    if protocol:
        where.append(m.Protocol.name.icontains(protocol, autoescape=True))
    if since is not None:
        where.append(m.Run.started_at >= since)
    if run_ids is not None:
        where.append(m.Run.id.in_(sorted(run_ids)))
    if status is None:
        return _run_summaries(engine, *where, limit=limit)
    shown = [r for r in _run_summaries(engine, *where) if r.status == status]
    return shown if limit is None else shown[:limit]


def get_run(engine: Engine, run_id: int) -> RunSummary | None:
    found = _run_summaries(engine, m.Run.id == run_id)
    return found[0] if found else None


def _counts_per_step(model: type[m.Point] | type[m.EisPoint], run_id: int) -> Any:
    """Rows of `model` per step of the run, as a subquery (step_id, n)."""
    return (
        select(model.step_id, func.count().label("n"))
        .join(m.Step, m.Step.id == model.step_id)
        .where(m.Step.run_id == run_id)
        .group_by(model.step_id)
        .subquery()
    )


def run_steps(engine: Engine, run_id: int) -> list[StepSummary]:
    """The run's steps in order, with their point and spectrum counts.

    The counts are grouped over this run's steps only (joined through step.run_id), not over
    every point in a lab-wide database.
    """
    npts, neis = _counts_per_step(m.Point, run_id), _counts_per_step(m.EisPoint, run_id)
    stmt = (
        select(m.Step, func.coalesce(npts.c.n, 0), func.coalesce(neis.c.n, 0))
        .outerjoin(npts, npts.c.step_id == m.Step.id)
        .outerjoin(neis, neis.c.step_id == m.Step.id)
        .where(m.Step.run_id == run_id)
        .order_by(m.Step.index)
    )
    with Session(engine) as session:
        return [
            StepSummary(s.id, s.index, s.parent_id, s.kind, s.name, s.status, s.end_reason,
                        s.t_start_s, s.t_end_s, int(n), int(e), s.params)
            for s, n, e in session.execute(stmt).all()
        ]


def run_results(engine: Engine, run_id: int) -> dict[str, float | str | None]:
    stmt = select(m.Result).where(m.Result.run_id == run_id, m.Result.step_id.is_(None))
    with Session(engine) as session:
        return {
            r.name: (r.value if r.value is not None else r.text)
            for r in session.scalars(stmt).all()
        }


def run_events(engine: Engine, run_id: int) -> list[m.Event]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(select(m.Event).where(m.Event.run_id == run_id)
                                    .order_by(m.Event.id)).all())


def _columns(engine: Engine, table: str, cols: tuple[str, ...], where: str,
             ids: list[int]) -> dict[str, np.ndarray]:
    """Numeric columns of `table` as float arrays, read straight from the DBAPI cursor.

    Analyses read every point of a run after it ends; building SQLAlchemy Row objects for
    hundreds of thousands of rows cost more than the query, so the raw tuples go to numpy
    directly. NULL becomes NaN, as np.array(..., dtype=float) made it before.
    """
    import numpy as np

    if not ids:
        return {c: np.empty(0) for c in cols}
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    # quoted: the columns are mixed-case (E_V), which PostgreSQL folds unless quoted
    select_cols = ", ".join(f'"{c}"' for c in cols)
    sql = (f"SELECT {select_cols} FROM {table} "
           f"WHERE {where} IN ({', '.join([mark] * len(ids))}) ORDER BY id")
    with engine.connect() as conn:
        # the DBAPI cursor's plain tuples: numpy probing SQLAlchemy Row objects for the array
        # protocol raised and caught an exception per row (372k per CCD run's analysis)
        rows = conn.exec_driver_sql(sql, tuple(int(x) for x in ids)).cursor.fetchall()
    if not rows:
        return {c: np.empty(0) for c in cols}
    arr = np.array(rows, dtype=float)
    return {c: arr[:, i] for i, c in enumerate(cols)}


def step_points(engine: Engine, step_ids: list[int]) -> dict[str, np.ndarray]:
    """Time series of the given steps as numpy columns (step_id, t_s, E_V, I_mA, Q_mAh, P_MPa)."""
    cols = ("step_id", "t_s", "E_V", "I_mA", "Q_mAh", "P_MPa")
    return _columns(engine, "point", cols, "step_id", list(step_ids))


def step_spectrum(engine: Engine, step_id: int) -> dict[str, np.ndarray]:
    cols = ("t_s", "frequency_Hz", "Z_re_ohm", "Z_im_ohm", "Z_mod_ohm", "phase_deg", "E_V",
            "I_mA")
    return _columns(engine, "eis_point", cols, "step_id", [step_id])


def run_time_s(engine: Engine, run_ids: list[int]) -> dict[int, float]:
    """Run time reached by each run on its instrument clock (the latest step end or start), s.

    This is what a run's duration means to people: a simulated 10 h CCD run that took a minute
    of wall time lasted 10 h. Runs without steps are absent.
    """
    if not run_ids:
        return {}
    latest = func.max(func.coalesce(m.Step.t_end_s, m.Step.t_start_s))
    stmt = (select(m.Step.run_id, latest).where(m.Step.run_id.in_(run_ids))
            .group_by(m.Step.run_id))
    with engine.connect() as conn:
        return {int(rid): float(t) for rid, t in conn.execute(stmt).all() if t is not None}
