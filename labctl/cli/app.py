"""The typer application, its sub-command groups, consoles, shared options and error kinds.

Command modules (one per group of commands) register on `app`; `labctl.cli.main` turns the
error kinds below into one line and an exit status.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    name="labctl",
    help="Instrument control, protocols and SQL recording for solid-state battery labs.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # -h as well as --help, on every command (sub-contexts inherit the setting)
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database management.", no_args_is_help=True)
app.add_typer(db_app, name="db")
station_app = typer.Typer(help="Stations: the instruments runs use.", no_args_is_help=True)
app.add_typer(station_app, name="station")
sim_app = typer.Typer(help="The simulated bench.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")

# When piped, rich would wrap tables at 80 columns; give them room instead.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 400)

DbOption = Annotated[
    str | None,
    typer.Option("--db", metavar="URL",
                 help="Database URL (default: LABCTL_DB, else the embedded SQLite file)."),
]
# options shared by the commands that start runs (run, campaign)
SimOption = Annotated[bool, typer.Option("--sim", help="Run on the simulated bench.")]
StationOption = Annotated[Path | None, typer.Option(
    "--station", metavar="PATH",
    help="Station file naming the instruments (see labctl.stations.schema).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
#: the longest name the database stores (String(200) columns)
MAX_NAME_CHARS = 200


def _operator_name(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_NAME_CHARS:
        raise typer.BadParameter(f"at most {MAX_NAME_CHARS} characters (got {len(value)})")
    return value


OperatorOption = Annotated[str | None, typer.Option(metavar="NAME", callback=_operator_name,
                                                    help="Who is running this.")]
SeedOption = Annotated[int, typer.Option(metavar="INTEGER",
                                         help="Random seed of the simulated bench.")]
NotifyOption = Annotated[list[str] | None, typer.Option(
    "--notify", metavar="URL",
    help="apprise URL to tell when a run ends or trips (repeatable), e.g. "
         "mailto://..., slack://..., json://host/path.")]
#: the largest run number a database can hold (a signed 64-bit key); beyond it, one line, not
#: an overflow inside the driver
MAX_RUN_ID = 2**63 - 1
RunArgument = Annotated[int, typer.Argument(metavar="RUN", help="Run number (see labctl runs).",
                                            show_default=False, min=1, max=MAX_RUN_ID)]



def _print_version(value: bool) -> None:
    if value:
        from labctl import __version__

        out.print(f"labctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_print_version, is_eager=True,
        help="Print labctl's version and exit.")] = False,
) -> None:
    """Instrument control, protocols and SQL recording for solid-state battery labs."""


class UserError(Exception):
    """Wrong input: reported as one line, exit status 2."""


class Failure(Exception):
    """Could not be done (database unreachable, instrument missing): one line, exit status 1."""


def _json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
