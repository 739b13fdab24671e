"""Data products of recorded runs: `analyze`, `plot`, `export`, `import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from labctl.cli.app import DbOption, UserError, _json, app, out


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
    from labctl.analysis.products import applicable, not_applicable
    from labctl.analysis.runner import ANALYSES, analyze_run
    from labctl.recording.recorder import Recorder

    names = list(only or [])
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise UserError(f"unknown analysis {unknown[0]!r}; expected one of "
                        f"{', '.join(sorted(ANALYSES))}")
    engine = _run_engine(db, run_id)
    for name in names:  # asked for by name: one that does not fit the run stores nothing
        if (why := not_applicable(engine, run_id, name)) is not None:
            raise UserError(why)
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
