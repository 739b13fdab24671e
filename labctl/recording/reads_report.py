"""Reads for a run's report and its notes: the run's record as written, the cell's description,
and the operator's notes and tags (events of kind 'note' and 'tag'; no writes here).

Notes and tags are events so that nothing about them needs a schema change and nothing is ever
rewritten: removing a tag is a later 'tag' event with ``removed: true``, and the tags a run has
are the fold of its tag events in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from labctl.recording import models as m

NOTE_KIND = "note"
TAG_KIND = "tag"


@dataclass(frozen=True)
class RunRecord:
    """What the run row and its cell row say, for a report's header."""

    run_id: int
    labctl_version: str
    operator: str | None
    seed: int | None
    station: str
    channel: int | None
    simulated: bool
    cell_name: str
    cell: dict[str, Any]  # the cell file as resolved when the run started


@dataclass(frozen=True)
class Note:
    at: Any
    text: str
    author: str | None


def run_record(engine: Engine, run_id: int) -> RunRecord | None:
    stmt = select(m.Run, m.Cell).join(m.Cell, m.Run.cell_id == m.Cell.id).where(m.Run.id == run_id)
    with Session(engine) as session:
        row = session.execute(stmt).first()
        if row is None:
            return None
        run, cell = row
        return RunRecord(run.id, run.labctl_version, run.operator, run.seed, run.station,
                         run.channel, run.simulated, cell.name, dict(cell.description or {}))


def _events(engine: Engine, run_id: int, kind: str) -> list[m.Event]:
    stmt = select(m.Event).where(m.Event.run_id == run_id, m.Event.kind == kind).order_by(
        m.Event.id)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(stmt).all())


def run_notes(engine: Engine, run_id: int) -> list[Note]:
    """The operator's notes on a run, oldest first (the engine's own 'note' events included:
    they are notes about the run too, e.g. an analysis that was skipped)."""
    return [Note(e.at, e.message, (e.data or {}).get("author"))
            for e in _events(engine, run_id, NOTE_KIND)]


def _fold_tags(rows: list[tuple[int, str, dict[str, Any] | None]]) -> dict[int, list[str]]:
    """Tags held per run after applying (run_id, message, data) tag events in order."""
    held: dict[int, dict[str, None]] = {}
    for run_id, message, data in rows:
        tag = str((data or {}).get("tag", message))
        tags = held.setdefault(run_id, {})
        if (data or {}).get("removed"):
            tags.pop(tag, None)
        else:
            tags.setdefault(tag, None)
    return {rid: list(tags) for rid, tags in held.items()}


def _tag_rows(engine: Engine, *where: Any) -> list[tuple[int, str, dict[str, Any] | None]]:
    stmt = (select(m.Event.run_id, m.Event.message, m.Event.data)
            .where(m.Event.kind == TAG_KIND, *where).order_by(m.Event.id))
    with engine.connect() as conn:
        return [(int(r), msg, data) for r, msg, data in conn.execute(stmt).all()]


def run_tags(engine: Engine, run_id: int) -> list[str]:
    """The run's tags now, in the order they were first added."""
    return _fold_tags(_tag_rows(engine, m.Event.run_id == run_id)).get(run_id, [])


def runs_tagged(engine: Engine, tag: str) -> set[int]:
    """Runs whose tags now include `tag` (one query over all tag events)."""
    return {rid for rid, tags in _fold_tags(_tag_rows(engine)).items() if tag in tags}


@dataclass(frozen=True)
class QualifiedResult:
    """A stored result with its quality check's verdict (flagged values failed it)."""

    name: str
    value: float | None
    text: str | None
    unit: str
    analysis: str
    step_id: int | None
    flagged: bool
    flag_reason: str | None


def results_with_quality(engine: Engine, run_id: int) -> list[QualifiedResult]:
    """Every stored result of a run (run-level and per step) in storage order, with flags."""
    r = m.Result
    stmt = (select(r.name, r.value, r.text, r.unit, r.analysis, r.step_id, r.flagged,
                   r.flag_reason).where(r.run_id == run_id).order_by(r.id))
    with engine.connect() as conn:
        return [QualifiedResult(*row[:6], bool(row[6]), row[7]) for row in conn.execute(stmt)]
