"""What the pages show, gathered from `labctl.recording`'s readers into plain records.

Kept apart from the HTTP routes so that the same gathering serves the first page load and each
live update pushed over server-sent events.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from labctl.recording.live_reads import (
    LIVE_STATUSES,
    ChannelUse,
    LastValue,
    channels,
    last_value,
    run_cell_description,
    runs_by_status,
)
from labctl.recording.queries import RunSummary
from labctl.recording.reads_analysis import protocol_text
from labctl.web.planned import planned_duration_s

#: The order statuses are listed in on the overview (unknown ones follow).
STATUS_ORDER = ("running", "paused", "interrupted", "failed", "aborted", "completed")


@dataclass(frozen=True)
class RunLine:
    """One run on the overview: what it is, its newest point, how far through its plan."""

    run: RunSummary
    last: LastValue | None
    planned_s: float | None

    @property
    def elapsed_s(self) -> float | None:
        return None if self.last is None else self.last.t_s

    @property
    def fraction(self) -> float | None:
        if self.planned_s is None or self.elapsed_s is None or self.planned_s <= 0:
            return None
        return min(self.elapsed_s / self.planned_s, 1.0)


@dataclass(frozen=True)
class Overview:
    groups: list[tuple[str, list[RunLine]]]
    channels: list[ChannelUse]
    at: dt.datetime


def planned_s(engine: Any, run_id: int) -> float | None:
    return planned_duration_s(protocol_text(engine, run_id), run_cell_description(engine, run_id))


def overview(engine: Any, recent: int = 50) -> Overview:
    """Live runs with their last values and progress; the recent others by status."""
    grouped = runs_by_status(engine, recent)
    order = [s for s in STATUS_ORDER if s in grouped] + sorted(set(grouped) - set(STATUS_ORDER))
    groups = []
    for status in order:
        live = status in LIVE_STATUSES
        groups.append((status, [
            RunLine(r, last_value(engine, r.id) if live else None,
                    planned_s(engine, r.id) if live else None)
            for r in grouped[status]
        ]))
    return Overview(groups, channels(engine), dt.datetime.now(dt.UTC))


def hms(seconds: float | None) -> str:
    """Run time as h:mm:ss (d h:mm:ss past a day), '' when unknown."""
    if seconds is None:
        return ""
    s = round(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days} d {text}" if days else text
