"""Commands that read runs: `runs` and `show`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from labctl.cli.app import DbOption, UserError, _json, app, out


@app.command()
def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent runs, newest first."""
    from labctl.recording.database import open_database
    from labctl.recording.queries import recent_runs

    rows = recent_runs(open_database(db), limit)
    if as_json:
        _json([r.__dict__ for r in rows])
        return
    table = Table("run", "cell", "protocol", "status", "started", "ended", "station", "ch")
    for r in rows:
        table.add_row(str(r.id), r.cell, r.protocol, r.status, _ts(r.started_at),
                      _ts(r.ended_at), r.station + (" (sim)" if r.simulated else ""),
                      "" if r.channel is None else str(r.channel))
    out.print(table)


def _ts(t: Any) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def show(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's steps with status, end reason and point counts, its events and results."""
    from labctl.recording.database import open_database
    from labctl.recording.queries import get_run, run_events, run_results, run_steps

    engine = open_database(db)
    info = get_run(engine, run_id)
    if info is None:
        raise UserError(f"no run {run_id} in this database")
    steps = run_steps(engine, run_id)
    results = run_results(engine, run_id)
    if as_json:
        _json({"run": info.__dict__, "steps": [s.__dict__ for s in steps], "results": results})
        return
    out.print(f"run {info.id}: cell {info.cell}, protocol {info.protocol}, {info.status}"
              f" ({info.end_reason or ''})")
    table = Table("#", "kind", "name", "status", "end reason", "t start (s)", "t end (s)",
                  "points", "eis")
    for s in steps:
        indent = "  " if s.parent_id else ""
        table.add_row(str(s.index), indent + s.kind, s.name, s.status, s.end_reason or "",
                      f"{s.t_start_s:.0f}", "" if s.t_end_s is None else f"{s.t_end_s:.0f}",
                      str(s.n_points), str(s.n_eis))
    out.print(table)
    events = run_events(engine, run_id)
    if events:
        out.print("events:")
        for e in events:
            t = "" if e.t_s is None else f"t={e.t_s:.0f}s "
            out.print(f"  [{e.severity}] {t}{e.kind}: {e.message}")
    if results:
        out.print("results:")
        for k, v in results.items():
            out.print(f"  {k} = {v}")
