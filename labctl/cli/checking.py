"""Commands that check without running anything: `validate`, `station check`, `plan`, `schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from labctl.cli.app import SimOption, UserError, _json, app, err, out, station_app

_KINDS = ("protocol", "cell", "campaign", "station")


def _file_kind(path: Path) -> str:
    """Which kind of file `path` is, from its top-level keys (a bounded look at its head);
    anything unreadable is left to the protocol reader, whose error is located."""
    import re

    from labctl.stations.schema import is_station_file

    if is_station_file(path):
        return "station"
    try:
        if not path.is_file():
            return "protocol"
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return "protocol"
    keys = set(re.findall(r"^([A-Za-z_]+)\s*:", head, re.M))
    if "steps" in keys:
        return "protocol"
    if "runs" in keys:
        return "campaign"
    if "anode" in keys or ("id" in keys and "schema_version" not in keys):
        return "cell"
    return "protocol"


def _check(path: Path, kind: str, cell: Any, ranges: Any) -> tuple[list[Any], list[Any]]:
    """(errors, warnings) of one file of `kind` (protocols against the instrument `ranges`)."""
    from labctl.campaign import load_campaign
    from labctl.protocol import load_protocol, resolve
    from labctl.protocol.errors import ProtocolError
    from labctl.protocol.instrument import check_ranges
    from labctl.protocol.loader import expand, load_cell
    from labctl.protocol.semantics import cell_warnings
    from labctl.stations import load_station

    try:
        if kind == "protocol":
            doc = load_protocol(path)
            if cell is not None:
                return [], list(resolve(doc, cell, ranges).warnings)
            return check_ranges(doc, expand(doc, []), ranges), []
        elif kind == "cell":
            return [], [str(w) for w in cell_warnings(load_cell(path))]
        elif kind == "campaign":
            load_campaign(path)
        else:
            load_station(path)
    except ProtocolError as exc:
        return list(exc.errors), []
    return [], []


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(
        help="Protocol, cell, campaign or station files (the kind is told from the keys).")],
    cell: Annotated[Path | None, typer.Option("--cell", help="Also resolve against this cell.")]
    = None,
    station: Annotated[Path | None, typer.Option(
        "--station", help="Check protocols against this station's instrument ranges "
                          "(default: the SP-300's).")] = None,
) -> None:
    """Check files; print FILE:LINE:COL: message for every problem (and every warning)."""
    from labctl.protocol.errors import ProtocolError
    from labctl.protocol.instrument import SP300
    from labctl.protocol.loader import load_cell
    from labctl.stations import load_station

    errors: list[Any] = []
    warnings: list[Any] = []
    cell_spec = None
    ranges = SP300
    if cell is not None:
        try:
            cell_spec = load_cell(cell)
        except ProtocolError as exc:
            errors.extend(exc.errors)
    if station is not None:
        try:
            ranges = load_station(station).instrument_ranges
        except ProtocolError as exc:
            errors.extend(exc.errors)
    counts = dict.fromkeys(_KINDS, 0)
    for f in files:
        kind = _file_kind(f)
        counts[kind] += 1
        errs, warns = _check(f, kind, cell_spec, ranges)
        errors.extend(errs)
        warnings.extend(warns)
    for w in warnings:
        err.print(str(w), markup=False, soft_wrap=True)
    for e in errors:
        err.print(str(e), markup=False, soft_wrap=True)
    if errors:
        raise typer.Exit(2)
    out.print(" and ".join(f"{n} {k} file(s)" for k, n in counts.items() if n) + " valid",
              markup=False)


@station_app.command("check")
def station_check(
    file: Annotated[Path | None, typer.Argument(help="Station file.")] = None,
    sim: SimOption = False,
) -> None:
    """Connect to every instrument of a station and report identity, channels and gauges.

    Changes nothing: no channel is started or stopped, no current is applied.
    """
    from labctl.stations import builtin_sim_station, load_station
    from labctl.stations.check import check_station

    if sim == (file is not None):
        raise UserError("say which station: a station FILE, or --sim for the built-in "
                        "simulated station (not both)")
    if file is not None and not file.is_file():
        raise UserError(f"{file}: no such file")
    spec = builtin_sim_station() if sim else load_station(file)  # type: ignore[arg-type]
    for line in check_station(spec).lines():
        out.print(line, markup=False, soft_wrap=True)


@app.command()
def plan(
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    cell: Annotated[Path, typer.Option("--cell", help="Cell description YAML.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The expanded steps with absolute values, estimated duration and charge, and bounds."""
    from labctl.engine.timing import INSTRUMENT_TIMING
    from labctl.protocol import load_and_resolve, plan_total
    from labctl.protocol import plan as make_plan

    resolved, _, _ = load_and_resolve(protocol, cell)
    for warning in resolved.warnings:
        err.print(warning, markup=False, soft_wrap=True)
    rows = make_plan(resolved, INSTRUMENT_TIMING)
    total = plan_total(rows)
    if as_json:
        _json({"steps": [{**r.__dict__, "number": r.index + 1} for r in rows],
               "total": total.__dict__})
        return
    table = Table("#", "kind", "name", "parameters", "est. time", "est. charge", "ends on")
    for r in rows:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items() if v is not None)
        # numbered from 1 as `labctl show` numbers the steps (labctl.report.numbering)
        table.add_row(str(r.index + 1), r.kind, r.name, params, _duration(r.est_duration_s),
                      _fmt(getattr(r, "est_charge_mAh", None), " mAh"), r.bound)
    out.print(table)
    out.print(f"total: {_duration(total.duration_s)}"
              + (f" (+{total.open_ended} open-ended step(s))" if total.open_ended else ""))


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return ""
    return f"{v:.4g}{unit}" if isinstance(v, float) else f"{v}{unit}"


def _duration(s: float | None) -> str:
    if s is None:
        return "?"
    h, rem = divmod(round(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file.")]
    = None,
) -> None:
    """Write the protocol JSON Schema (for editor completion and checking)."""
    from labctl.protocol import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text + "\n")
        out.print(f"wrote {output}")
