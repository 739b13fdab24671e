"""Runs and results in the words `labctl show`, `labctl runs` and the report use.

Kept free of matplotlib and the figure code so the read-only commands import only this.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `labctl show` need not import numpy with the readers
    from labctl.recording.queries import RunSummary
    from labctl.recording.reads_analysis import ResultRow
    from labctl.recording.reads_report import QualifiedResult
from labctl.report.numbers import quantity, seconds


def quality_flag(row: QualifiedResult) -> str | None:
    """Why a result failed its quality check, None when it passed."""
    if not row.flagged:
        return None
    return row.flag_reason or "failed its quality check"


def result_value(row: QualifiedResult | ResultRow, labels: dict[int, str]) -> str:
    """A result's value for people; a result that holds a step's database id names the step
    by its number (labctl.report.numbering)."""
    if row.name.endswith("_step_id") and row.value is not None:
        return f"step {labels.get(int(row.value), '?')}"
    return quantity(row.value if row.value is not None else row.text, row.unit)


def duration_of(run: RunSummary, run_time_s: float | None = None) -> str:
    """The run's duration: its run time on the instrument clock when known (what a simulated
    run lasted), else the wall time from start to end (or to now, while it runs)."""
    if run_time_s is not None:
        return seconds(run_time_s)
    if run.started_at is None:
        return ""
    end = run.ended_at or dt.datetime.now(dt.UTC)
    start = run.started_at
    if (start.tzinfo is None) != (end.tzinfo is None):  # SQLite returns naive UTC
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return seconds((end - start).total_seconds())
