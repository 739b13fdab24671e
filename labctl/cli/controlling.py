"""Operator requests to a live run: `abort`, `pause`, `resume`."""

from __future__ import annotations

from labctl.cli.app import DbOption, Failure, RunArgument, UserError, app, out


def _control(run_id: int, action: str, db: str | None) -> None:
    """Write the request to the run's row, for the process holding the run to act on.

    A run whose holder is gone (interrupted) or silent on another host is refused, exit 1:
    nobody would act on the request, and saying "requested" would be untrue.
    """
    from labctl.recording.database import open_database
    from labctl.recording.leases import RunNotHeld
    from labctl.recording.recorder import Recorder

    try:
        requested = Recorder(open_database(db)).request_control(run_id, action)
    except RunNotHeld as exc:
        raise Failure(f"{exc}; nothing requested") from None
    if not requested:
        raise UserError(f"run {run_id} is not running")
    out.print(f"{action} requested for run {run_id}")


@app.command()
def abort(run_id: RunArgument, db: DbOption = None) -> None:
    """Abort a running run (its channel is switched off first)."""
    _control(run_id, "abort", db)


@app.command()
def pause(run_id: RunArgument, db: DbOption = None) -> None:
    """Pause a running run: the cell is held at open circuit until `labctl resume`."""
    _control(run_id, "pause", db)


@app.command()
def resume(run_id: RunArgument, db: DbOption = None) -> None:
    """Resume a paused run where its step left off."""
    _control(run_id, "resume", db)
