"""What a report holds, read from the database into plain records (no HTML here)."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

import labctl
from labctl.analysis.figures.kinds import FigureKind
from labctl.analysis.figures.model import Needs
from labctl.analysis.figures.registry import draw, why_not
from labctl.analysis.plots import load_runs
from labctl.recording.queries import (
    RunSummary,
    StepSummary,
    get_run,
    run_events,
    run_steps,
    run_time_s,
)
from labctl.recording.reads_analysis import protocol_text
from labctl.recording.reads_report import (
    Note,
    RunRecord,
    results_with_quality,
    run_notes,
    run_record,
    run_tags,
)
from labctl.report.numbering import step_labels
from labctl.report.numbers import seconds
from labctl.report.readable import duration_of, quality_flag, result_value


class ReportError(LookupError):
    """A run asked for is not in the database."""


@dataclass(frozen=True)
class ResultLine:
    name: str
    value: str  # with its unit, at a readable precision
    step: str | None  # the step's number ('4.12'), None for run-level results
    analysis: str
    flag: str | None  # the quality flag's reason, None when the value passed


@dataclass(frozen=True)
class EventLine:
    t: str
    severity: str
    kind: str
    message: str


@dataclass
class RunSection:
    summary: RunSummary
    record: RunRecord
    duration: str
    steps: list[StepSummary]
    step_labels: dict[int, str]
    results: list[ResultLine]
    events: list[EventLine]
    notes: list[Note]
    tags: list[str]
    protocol: str


@dataclass(frozen=True)
class FigureImage:
    kind: str
    run_ids: list[int]
    png_data_uri: str


@dataclass
class Report:
    generated_at: dt.datetime
    labctl_version: str
    runs: list[RunSection]
    figures: list[FigureImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # kinds that apply to no run, and why


def _section(engine: Engine, run_id: int) -> RunSection:
    summary, record = get_run(engine, run_id), run_record(engine, run_id)
    if summary is None or record is None:
        raise ReportError(f"no run {run_id} in this database")
    steps = run_steps(engine, run_id)
    labels = step_labels(steps)
    results = [ResultLine(r.name, result_value(r, labels),
                          labels.get(r.step_id) if r.step_id is not None else None,
                          r.analysis, quality_flag(r))
               for r in results_with_quality(engine, run_id)]
    events = [EventLine("" if e.t_s is None else seconds(e.t_s), e.severity, e.kind, e.message)
              for e in run_events(engine, run_id)]
    duration = duration_of(summary, run_time_s(engine, [run_id]).get(run_id))
    return RunSection(summary, record, duration, steps, labels, results, events,
                      run_notes(engine, run_id), run_tags(engine, run_id),
                      protocol_text(engine, run_id) or "")


def _png_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def gather(engine: Engine, run_ids: Sequence[int]) -> Report:
    """Every section and every figure kind that applies to at least one of the runs."""
    sections = [_section(engine, rid) for rid in run_ids]
    data = load_runs(engine, run_ids, Needs.POINTS | Needs.SPECTRA | Needs.RESULTS)
    report = Report(dt.datetime.now(dt.UTC), labctl.__version__, sections)
    for kind in FigureKind:
        fits = [r for r in data if why_not(kind, r) is None]
        if not fits:
            report.skipped.append(str(kind))
            continue
        report.figures.append(FigureImage(str(kind), [r.run_id for r in fits],
                                          _png_uri(draw(kind, fits))))
    return report
