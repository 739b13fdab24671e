"""labctl's command line: run protocols, look at runs, manage the database.

Every command turns expected failures (a bad protocol, a missing file, an unreachable database,
an unknown option) into one clear line on stderr and a non-zero exit status, never a traceback.
Exit status 2 means "your input is wrong"; 1 means "could not be done"; 130 means Ctrl-C.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from labctl import __version__

try:  # recent typer vendors click; older releases use the click package
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException, UsageError

app = typer.Typer(
    name="labctl",
    help="Instrument control, protocols and SQL recording for solid-state battery labs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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
    typer.Option("--db", help="Database URL (default: LABCTL_DB, else the embedded SQLite file)."),
]
# options shared by the commands that start runs (run, campaign)
SimOption = Annotated[bool, typer.Option("--sim", help="Run on the simulated bench.")]
StationOption = Annotated[Path | None, typer.Option(
    "--station", help="Station file naming the instruments (see labctl.stations.schema).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
OperatorOption = Annotated[str | None, typer.Option(help="Who is running this.")]
SeedOption = Annotated[int, typer.Option(help="Random seed of the simulated bench.")]
NotifyOption = Annotated[list[str] | None, typer.Option(
    "--notify", help="apprise URL to tell when a run ends or trips (repeatable), e.g. "
                     "mailto://..., slack://..., json://host/path.")]


class UserError(Exception):
    """Wrong input: reported as one line, exit status 2."""


class Failure(Exception):
    """Could not be done (database unreachable, instrument missing): one line, exit status 1."""


def _json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


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


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Protocol or station files.")],
    cell: Annotated[Path | None, typer.Option("--cell", help="Also resolve against this cell.")]
    = None,
) -> None:
    """Check protocols and station files; print FILE:LINE:COL: message for every problem."""
    from labctl.protocol import validate_files
    from labctl.protocol.errors import ProtocolError
    from labctl.stations import load_station
    from labctl.stations.schema import is_station_file

    stations = [f for f in files if is_station_file(f)]
    errors = validate_files([f for f in files if f not in stations], cell_path=cell)
    for f in stations:
        try:
            load_station(f)
        except ProtocolError as exc:
            errors.extend(exc.errors)
    for e in errors:
        err.print(str(e), markup=False, soft_wrap=True)
    if errors:
        raise typer.Exit(2)
    n_p = len(files) - len(stations)
    parts = [f"{n_p} protocol file(s)" if n_p else "", f"{len(stations)} station file(s)"
             if stations else ""]
    out.print(" and ".join(p for p in parts if p) + " valid")


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


@sim_app.command("serve")
def sim_serve(
    cell: Annotated[list[Path], typer.Option("--cell", help="Cell description YAML (one "
                                                            "channel each, in order).")],
    station_out: Annotated[Path, typer.Option(
        "--station-out", help="Where to write the station file that reaches this bench.")],
    port: Annotated[int, typer.Option(help="TCP port (0: any free one).", min=0, max=65535)] = 0,
    speed: Annotated[float, typer.Option(help="Clock acceleration (1 = real time).", min=0.01,
                                         max=10000)] = 1.0,
    seed: SeedOption = 0,
) -> None:
    """Run the simulated bench as its own process until SIGTERM or Ctrl-C.

    Its instruments outlive any labctl that drives them through the station file it writes.
    """
    from labctl.protocol import load_cell
    from labctl.stations.serve import serve

    for path in cell:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
    cells = [load_cell(p) for p in cell]
    serve(cells, station_out, port=port, seed=seed, speed=speed)


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
    rows = make_plan(resolved, INSTRUMENT_TIMING)
    total = plan_total(rows)
    if as_json:
        _json({"steps": [r.__dict__ for r in rows], "total": total.__dict__})
        return
    table = Table("#", "kind", "name", "parameters", "est. time", "est. charge", "ends on")
    for r in rows:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items() if v is not None)
        table.add_row(str(r.index), r.kind, r.name, params, _duration(r.est_duration_s),
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


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the database schema to the current version."""
    from labctl.recording.database import resolve_url, safe_url, upgrade

    url = resolve_url(db)
    upgrade(url)
    out.print(f"database {safe_url(url)} is at the current schema")


@db_app.command("path")
def db_path(db: DbOption = None) -> None:
    """Print the database URL labctl would use."""
    from labctl.recording.database import resolve_url, safe_url

    out.print(safe_url(resolve_url(db)))


@app.command()
def version() -> None:
    """Print labctl's version."""
    out.print(__version__)


# ---- data products: analyze, plot, export, import ----------------------------------------------
def _run_engine(db: str | None, run_id: int) -> Any:
    from labctl.recording.database import open_database
    from labctl.recording.queries import get_run

    engine = open_database(db)
    if get_run(engine, run_id) is None:
        raise UserError(f"no run {run_id} in this database")
    return engine


@app.command()
def analyze(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this analysis "
                                                   "(repeatable); default: those whose steps "
                                                   "the run has.")]
    = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """(Re)compute a run's analyses from its recorded data and store the results."""
    from labctl.analysis.products import applicable
    from labctl.analysis.runner import ANALYSES, analyze_run
    from labctl.recording.recorder import Recorder

    names = list(only or [])
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise UserError(f"unknown analysis {unknown[0]!r}; expected one of "
                        f"{', '.join(sorted(ANALYSES))}")
    engine = _run_engine(db, run_id)
    names = names or applicable(engine, run_id)
    results = analyze_run(engine, Recorder(engine), run_id, names)
    if as_json:
        _json({"run_id": run_id, "analyses": names, "results": results})
        return
    out.print(f"run {run_id}: {', '.join(names)}")
    for k, v in results.items():
        out.print(f"  {k} = {v:.4g}" if isinstance(v, float) else f"  {k} = {v}")


@app.command()
def plot(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    kind: Annotated[str, typer.Option("--kind", help="voltage | nyquist | bode | drt | "
                                      "drt-map | ccd | stripping | cv")] = "voltage",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Image file (.png, "
                                                ".pdf, .svg); default run<RUN>_<kind>.png.")]
    = None,
    db: DbOption = None,
) -> None:
    """Draw a figure of a run (paper-style CCD, stripping and DRT-map figures included)."""
    from labctl.analysis.plots import PLOT_KINDS, PlotError, plot_run

    if kind not in PLOT_KINDS:
        raise UserError(f"unknown plot kind {kind!r}; expected one of {', '.join(PLOT_KINDS)}")
    engine = _run_engine(db, run_id)
    path = output or Path(f"run{run_id}_{kind}.png")
    try:
        plot_run(engine, run_id, kind, path)
    except PlotError as exc:
        raise UserError(str(exc)) from exc
    out.print(f"wrote {path}")


@app.command()
def export(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    fmt: Annotated[str, typer.Option("--format", help="csv | parquet | bdf")] = "csv",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file.")] = None,
    db: DbOption = None,
) -> None:
    """Write a run's time series to CSV, Parquet or the Battery Data Format (BDF)."""
    from labctl.analysis.export import export_run
    from labctl.recording.reads_analysis import run_context, run_points

    if fmt not in ("csv", "parquet", "bdf"):
        raise UserError(f"unknown export format {fmt!r}; expected csv, parquet or bdf")
    engine = _run_engine(db, run_id)
    ctx = run_context(engine, run_id)
    assert ctx is not None
    pts = run_points(engine, run_id)
    if len(pts["t_s"]) == 0:
        raise UserError(f"run {run_id} has no time-series points to export")
    columns = {"t_s": pts["t_s"], "E_V": pts["E_V"], "I_mA": pts["I_mA"],
               "Q_mAh": pts["Q_mAh"], "step_index": pts["step_index"].astype("int64")}
    if not all(v != v for v in pts["P_MPa"]):  # only when a pressure was recorded
        columns["pressure_MPa"] = pts["P_MPa"]
    started = ctx.started_at
    meta = {"run_id": run_id, "cell": ctx.cell_name, "protocol": ctx.protocol_name,
            "station": ctx.station, "simulated": ctx.simulated, "area_cm2": ctx.area_cm2,
            "started_at": str(started),
            "start_unix_s": started.timestamp() if started is not None else None}
    ext = {"csv": ".csv", "parquet": ".parquet", "bdf": ".bdf.csv"}[fmt]
    path = export_run(columns, meta, fmt, output or Path(f"run{run_id}{ext}"))  # type: ignore[arg-type]
    out.print(f"wrote {path} ({len(pts['t_s'])} points)")


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="Instrument file (EC-Lab .mpr/.mpt, LANDT).")],
    cell: Annotated[Path, typer.Option("--cell", help="Cell description YAML.")],
    instrument: Annotated[str | None, typer.Option(help="eclab | landt (default: by "
                                                   "extension).")] = None,
    db: DbOption = None,
    analyses: Annotated[list[str] | None, typer.Option("--analyze", help="Run this analysis "
                                                       "on the imported run (repeatable).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import an instrument file into the database as a run of CELL."""
    from labctl.analysis.runner import ANALYSES, analyze_run
    from labctl.importers import ImportFormatError, read_file
    from labctl.protocol.loader import load_cell
    from labctl.recording.database import open_database
    from labctl.recording.importing import import_run
    from labctl.recording.recorder import Recorder

    for path in (file, cell):
        if not path.is_file():
            raise UserError(f"{path}: no such file")
    for name in analyses or []:
        if name not in ANALYSES:
            raise UserError(f"unknown analysis {name!r}")
    spec = load_cell(cell)
    try:
        imported = read_file(file, instrument)
    except (ImportFormatError, ValueError) as exc:
        raise UserError(f"{file}: {exc}") from exc
    engine = open_database(db)
    recorder = Recorder(engine)
    cell_dict = spec.model_dump(mode="json")
    cell_dict["area_cm2_resolved"] = spec.area
    summary = import_run(recorder, imported, cell_dict)
    results = analyze_run(engine, recorder, summary.run_id, analyses) if analyses else {}
    if as_json:
        _json({**summary.__dict__, "results": results})
        return
    out.print(f"run {summary.run_id}: {summary.n_steps} steps, {summary.n_points} points, "
              f"{summary.n_eis} impedance points from {file.name}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn expected errors into one line on stderr."""
    from labctl.engine.runner import RunFailure
    from labctl.launch import LaunchError
    from labctl.notify import NotificationURLError
    from labctl.protocol import ProtocolError
    from labctl.recording.database import DatabaseError
    from labctl.stations import StationError

    try:
        # Without standalone mode, typer returns exit codes (typer.Exit, Ctrl-C -> 130) instead
        # of raising them; turn them into the process's exit status.
        code = app(args=argv, standalone_mode=False, prog_name="labctl")
        if code == 130:
            err.print("labctl: interrupted (Ctrl-C); channels were switched off and the runs "
                      "recorded as aborted")
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("labctl: interrupted")
        sys.exit(130)
    except UsageError as exc:
        cmd = f" {exc.ctx.command_path.split(' ', 1)[1]}" if exc.ctx and " " in \
            exc.ctx.command_path else ""
        err.print(f"labctl{cmd}: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(2)
    except ClickException as exc:
        err.print(f"labctl: {exc.format_message()}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except ProtocolError as exc:
        for e in exc.errors:
            err.print(str(e), markup=False, soft_wrap=True)
        sys.exit(2)
    except UserError as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except NotificationURLError as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except (DatabaseError, LaunchError, StationError, RunFailure, Failure) as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("labctl: interrupted (Ctrl-C); channels were switched off and the runs "
                  "recorded as aborted")
        sys.exit(130)
    except OSError as exc:
        err.print(f"labctl: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)
