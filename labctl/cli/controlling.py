"""Operator requests to a live run: `abort`, `pause`, `resume`."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.app import DbOption, UserError, app, out


def _control(run_id: int, action: str, db: str | None) -> None:
    from labctl.recording.database import open_database
    from labctl.recording.recorder import Recorder

    if not Recorder(open_database(db)).request_control(run_id, action):
        raise UserError(f"run {run_id} is not running")
    out.print(f"{action} requested for run {run_id}")


@app.command()
def abort(run_id: Annotated[int, typer.Argument(metavar="RUN")], db: DbOption = None) -> None:
    """Abort a running run (its channel is switched off first)."""
    _control(run_id, "abort", db)


@app.command()
def pause(run_id: Annotated[int, typer.Argument(metavar="RUN")], db: DbOption = None) -> None:
    """Pause a running run: the cell is held at open circuit until `labctl resume`."""
    _control(run_id, "pause", db)


@app.command()
def resume(run_id: Annotated[int, typer.Argument(metavar="RUN")], db: DbOption = None) -> None:
    """Resume a paused run where its step left off."""
    _control(run_id, "resume", db)
