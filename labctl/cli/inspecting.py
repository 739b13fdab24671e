"""Commands that read runs: `runs` (filtered list) and `show` (one run, readable numbers)."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Annotated, Any

import typer
from rich.table import Table

from labctl.cli.app import DbOption, RunArgument, UserError, _json, app, out

#: Above this many steps, `show` prints cycling steps one row per cycle (--all-steps: each).
MAX_STEP_ROWS = 40


class RunStatus(enum.StrEnum):
    """Statuses a run is shown with (recorded, or made true by its holder's lease)."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"
    UNRESPONSIVE = "unresponsive"


_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(min|m|h|d|w)$")
_AGO_S = {"min": 60, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """'2026-11-30', '2026-11-30T14:00' (UTC unless an offset is given) or '36h', '2d', '1w'."""
    now = now or dt.datetime.now(dt.UTC)
    m = _AGO.match(text.strip())
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _AGO_S[m.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"--since {text!r}: expected a date (2026-11-30), a time "
                        "(2026-11-30T14:00) or an age (30min, 12h, 2d, 1w)") from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _since_param(when: dt.datetime) -> dt.datetime:
    """SQLite keeps naive UTC text; comparing with an aware value would compare text forms."""
    return when.replace(tzinfo=None)


@app.command()
def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", help="How many runs.")]
    = 20,
    cell: Annotated[str | None, typer.Option(metavar="TEXT",
                                             help="Only cells whose id contains TEXT.")] = None,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs with this status.")]
    = None,
    protocol: Annotated[str | None, typer.Option(
        metavar="TEXT", help="Only protocols whose name contains TEXT.")] = None,
    since: Annotated[str | None, typer.Option(
        metavar="WHEN", help="Only runs started since WHEN: 2026-11-30, 2026-11-30T14:00 "
                             "(UTC) or an age: 30min, 12h, 2d, 1w.")] = None,
    tag: Annotated[str | None, typer.Option(metavar="TAG", help="Only runs tagged TAG.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """Recent runs, newest first, with duration, cell and protocol; filters combine."""
    from labctl.recording.database import open_database
    from labctl.recording.queries import recent_runs, run_time_s
    from labctl.recording.reads_report import run_tags, runs_tagged
    from labctl.report.readable import duration_of

    engine = open_database(db)
    started = None if since is None else parse_since(since)
    param = None if started is None else (
        _since_param(started) if engine.dialect.name == "sqlite" else started)
    rows = recent_runs(engine, limit, cell=cell, protocol=protocol, since=param,
                       status=None if status is None else status.value,
                       run_ids=None if tag is None else runs_tagged(engine, tag))
    tags = {r.id: run_tags(engine, r.id) for r in rows}
    spans = run_time_s(engine, [r.id for r in rows])
    if as_json:
        _json([{**r.__dict__, "run_time_s": spans.get(r.id), "tags": tags[r.id]}
               for r in rows])
        return
    table = Table("run", "cell", "protocol", "status", "started (UTC)", "duration", "station",
                  "ch", *(["tags"] if any(tags.values()) else []))
    for r in rows:
        table.add_row(str(r.id), r.cell, r.protocol, r.status, _ts(r.started_at),
                      duration_of(r, spans.get(r.id)),
                      r.station + (" (sim)" if r.simulated else ""),
                      "" if r.channel is None else str(r.channel),
                      *([", ".join(tags[r.id])] if any(tags.values()) else []))
    out.print(table)


def _ts(t: Any) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _cycles(steps: list[Any]) -> list[list[Any]]:
    """Consecutive steps grouped into cycles: a cycle starts at a strip (positive current)
    after a plate, as labctl.analysis.cycling counts them; other steps join their cycle."""
    groups: list[list[Any]] = []
    prev_sign = 0.0
    for s in steps:
        current = float(s.params.get("current_mA") or 0.0) if s.kind == "galvanostatic" else 0.0
        sign = (current > 0) - (current < 0)
        if not groups or (sign > 0 and prev_sign < 0):
            groups.append([])
        if sign:
            prev_sign = sign
        groups[-1].append(s)
    return groups


def _step_rows(steps: list[Any], labels: dict[int, str], every: bool) -> list[list[str]]:
    """Table rows: one per step, or for long runs one per cycle of each step's stages."""
    from labctl.report.numbers import seconds

    def one(s: Any, indent: str) -> list[str]:
        return [labels[s.id], indent + s.kind, s.name, s.status, s.end_reason or "",
                seconds(s.t_start_s), seconds(s.t_end_s), str(s.n_points), str(s.n_eis)]

    if every or len(steps) <= MAX_STEP_ROWS:
        return [one(s, "  " if s.parent_id else "") for s in steps]
    rows = []
    children: dict[int, list[Any]] = {}
    for s in steps:
        if s.parent_id is not None:
            children.setdefault(s.parent_id, []).append(s)
    for s in steps:
        if s.parent_id is not None:
            continue
        rows.append(one(s, ""))
        for n, cycle in enumerate(_cycles(children.get(s.id, [])), 1):
            first, last = cycle[0], cycle[-1]
            j = {abs(float(c.params["current_mA"])) for c in cycle
                 if c.kind == "galvanostatic" and c.params.get("current_mA") is not None}
            failed = [c for c in cycle if c.status != "completed"]
            rows.append([f"{labels[first.id]}–{labels[last.id].rpartition('.')[2]}",
                         f"  cycle {n}", f"{len(cycle)} stages"
                         + (f", ±{max(j):.4g} mA" if j else ""),
                         failed[0].status if failed else last.status,
                         failed[0].end_reason or "" if failed else "",
                         seconds(first.t_start_s), seconds(last.t_end_s),
                         str(sum(c.n_points for c in cycle)), str(sum(c.n_eis for c in cycle))])
    return rows


@app.command()
def show(
    run_id: RunArgument,
    db: DbOption = None,
    all_steps: Annotated[bool, typer.Option(
        "--all-steps", help=f"One row per step even past {MAX_STEP_ROWS} steps (default: "
                            "a cycling step's stages one row per cycle).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A run's steps, events, notes and results, numbers with units."""
    from labctl.recording.database import open_database
    from labctl.recording.queries import get_run, run_events, run_steps, run_time_s
    from labctl.recording.reads_report import results_with_quality, run_notes, run_tags
    from labctl.report.numbering import step_labels
    from labctl.report.numbers import seconds
    from labctl.report.readable import duration_of, quality_flag, result_value

    engine = open_database(db)
    info = get_run(engine, run_id)
    if info is None:
        raise UserError(f"no run {run_id} in this database")
    steps = run_steps(engine, run_id)
    labels = step_labels(steps)
    results = [r for r in results_with_quality(engine, run_id) if r.step_id is None]
    tags = run_tags(engine, run_id)
    span = run_time_s(engine, [run_id]).get(run_id)
    if as_json:
        _json({"run": {**info.__dict__, "run_time_s": span, "tags": tags},
               "steps": [{**s.__dict__, "number": labels[s.id]} for s in steps],
               "results": {r.name: (r.value if r.value is not None else r.text)
                           for r in results},
               "flagged": {r.name: r.flag_reason for r in results if r.flagged}})
        return
    out.print(f"run {info.id}: cell {info.cell}, protocol {info.protocol}, {info.status}"
              + (f" ({info.end_reason})" if info.end_reason else ""), markup=False)
    out.print(f"started {_ts(info.started_at)} UTC, duration {duration_of(info, span)}"
              + (f"; tags: {', '.join(tags)}" if tags else ""), markup=False)
    table = Table("#", "kind", "name", "status", "end reason", "start", "end", "points",
                  "eis")
    for row in _step_rows(steps, labels, all_steps):
        table.add_row(*row)
    out.print(table)
    events = [e for e in run_events(engine, run_id) if e.kind not in ("note", "tag")]
    if events:
        out.print("events:")
        for e in events:
            t = "" if e.t_s is None else f"t={seconds(e.t_s)} "
            out.print(f"  [{e.severity}] {t}{e.kind}: {e.message}", markup=False)
    notes = run_notes(engine, run_id)
    if notes:
        out.print("notes:")
        for n in notes:
            who = f" ({n.author})" if n.author else ""
            out.print(f"  {_ts(n.at)}{who}: {n.text}", markup=False)
    if results:
        out.print("results:")
        for r in results:
            flag = quality_flag(r)
            out.print(f"  {r.name} = {result_value(r, labels)}"
                      + (f"  [flagged: {flag}]" if flag else ""), markup=False)
