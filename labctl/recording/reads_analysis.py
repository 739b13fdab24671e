"""Read helpers for analyses, plots and exports (no writes: the Recorder is the only writer).

Kept apart from queries.py so that the CLI's listing queries and the heavier per-run reads the
data products need can change independently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from labctl.recording import models as m
from labctl.recording.queries import StepSummary, run_steps

POINT_COLS = ("step_id", "t_s", "E_V", "I_mA", "Q_mAh", "P_MPa")


@dataclass
class RunContext:
    """What an analysis needs to know about a run besides its data."""

    run_id: int
    cell_name: str
    anode_material: str
    k_wt_pct: float | None
    alloy_mass_mg: float | None
    area_cm2: float
    temperature_C: float | None
    protocol_name: str
    station: str
    simulated: bool
    started_at: Any
    steps: list[StepSummary]


@dataclass
class ResultRow:
    name: str
    value: float | None
    text: str | None
    unit: str
    analysis: str
    step_id: int | None


def run_context(engine: Engine, run_id: int) -> RunContext | None:
    """Cell, protocol and step tree of a run in one call; None if the run does not exist."""
    stmt = (
        select(m.Run, m.Cell, m.Protocol.name)
        .join(m.Cell, m.Run.cell_id == m.Cell.id)
        .join(m.Protocol, m.Run.protocol_id == m.Protocol.id)
        .where(m.Run.id == run_id)
    )
    with Session(engine) as session:
        row = session.execute(stmt).first()
        if row is None:
            return None
        run, cell, proto = row
        ctx = RunContext(
            run.id, cell.name, cell.anode_material, cell.k_wt_pct, cell.alloy_mass_mg,
            cell.area_cm2, cell.temperature_C, proto, run.station, run.simulated,
            run.started_at, [],
        )
    ctx.steps = run_steps(engine, run_id)
    return ctx


def run_points(engine: Engine, run_id: int) -> dict[str, np.ndarray]:
    """All points of a run in recording order, with the step's execution index per point."""
    stmt = (
        select(*(getattr(m.Point, c) for c in POINT_COLS), m.Step.index)
        .join(m.Step, m.Point.step_id == m.Step.id)
        .where(m.Step.run_id == run_id)
        .order_by(m.Point.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    names = (*POINT_COLS, "step_index")
    if not rows:
        return {c: np.empty(0) for c in names}
    arr = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    return {c: arr[:, i] for i, c in enumerate(names)}


def run_results_rows(engine: Engine, run_id: int, analysis: str | None = None) -> list[ResultRow]:
    """Every stored result of a run (run-level and per-step), optionally of one analysis."""
    stmt = select(m.Result).where(m.Result.run_id == run_id)
    if analysis is not None:
        stmt = stmt.where(m.Result.analysis == analysis)
    with Session(engine) as session:
        return [
            ResultRow(r.name, r.value, r.text, r.unit, r.analysis, r.step_id)
            for r in session.scalars(stmt.order_by(m.Result.id)).all()
        ]


def protocol_text(engine: Engine, run_id: int) -> str | None:
    """The protocol text stored with a run (for imports: the generated file description)."""
    stmt = select(m.Protocol.yaml_text).join(m.Run, m.Run.protocol_id == m.Protocol.id).where(
        m.Run.id == run_id
    )
    with engine.connect() as conn:
        return conn.scalar(stmt)
