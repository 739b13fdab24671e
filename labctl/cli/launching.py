"""Commands that start runs: `run` and `campaign`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from labctl.cli.app import (
    DbOption,
    JsonOption,
    NotifyOption,
    OperatorOption,
    SeedOption,
    SimOption,
    StationOption,
    UserError,
    _json,
    app,
    out,
)


@app.command()
def run(
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    cell: Annotated[list[Path], typer.Option("--cell", help="Cell description YAML (repeat "
                                                            "for several channels).")],
    sim: SimOption = False,
    station: StationOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    operator: OperatorOption = None,
    seed: SeedOption = 0,
    notify: NotifyOption = None,
) -> None:
    """Run PROTOCOL on one or more cells and record everything to the database."""
    from labctl.launch import launch

    _check_where(sim, station, [protocol, *cell])
    _launch_and_report(lambda **kw: launch(protocol, list(cell), **kw), sim=sim,
                       station=station, db=db, as_json=as_json, operator=operator, seed=seed,
                       notify=notify)


@app.command()
def campaign(
    file: Annotated[Path, typer.Argument(help="Campaign YAML: (protocol, cell) pairs.")],
    sim: SimOption = False,
    station: StationOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    operator: OperatorOption = None,
    seed: SeedOption = 0,
    notify: NotifyOption = None,
) -> None:
    """Run a campaign: several protocols on several cells at once, one channel each."""
    from labctl.campaign import load_campaign
    from labctl.launch import launch_runs, prepare_runs

    _check_where(sim, station, [file])
    _, pairs = load_campaign(file)
    prepared = prepare_runs(pairs)
    _launch_and_report(lambda **kw: launch_runs(prepared, **kw), sim=sim, station=station,
                       db=db, as_json=as_json, operator=operator, seed=seed, notify=notify)


def _check_where(sim: bool, station: Path | None, files: list[Path]) -> None:
    """Exactly one of --sim / --station, and every named file exists."""
    if sim == (station is not None):
        raise UserError("say where to run: --sim for the simulated bench, or --station FILE "
                        "naming the real instruments (not both)")
    for path in [*files, *([station] if station else [])]:
        if not path.is_file():
            raise UserError(f"{path}: no such file")


def _launch_and_report(start: Any, *, sim: bool, station: Path | None, db: str | None,
                       as_json: bool, operator: str | None, seed: int,
                       notify: list[str] | None) -> None:
    """Start the runs with live progress on a terminal; print the outcome (or one JSON)."""
    from labctl.progress import LiveProgress

    live = LiveProgress(out, enabled=not as_json and out.is_terminal)
    with live:
        result = start(sim=sim, station_path=station, db_url=db, operator=operator, seed=seed,
                       subscribers=[live], notify=notify)
    runs = [
        {"run_id": o.run_id, "status": o.status, "end_reason": o.end_reason,
         "results": result.results.get(o.run_id, {})}
        for o in result.outcomes
    ]
    if as_json:
        if len(runs) == 1:
            _json({k: runs[0][k] for k in ("run_id", "status", "results")})
        else:
            status = "completed" if all(r["status"] == "completed" for r in runs) else "failed"
            _json({"status": status, "runs": runs})
    else:
        for r in runs:
            out.print(f"run {r['run_id']}: {r['status']} ({r['end_reason']})")
            for k, v in r["results"].items():
                out.print(f"  {k} = {v:.4g}" if isinstance(v, float) else f"  {k} = {v}")
    if any(r["status"] != "completed" for r in runs):
        raise typer.Exit(1)
