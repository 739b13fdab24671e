"""Data products of recorded runs: `analyze`, `plot`, `export`, `import`."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from labctl.analysis.figures.kinds import FigureKind, ImageFormat
from labctl.cli.app import MAX_RUN_ID, DbOption, RunArgument, UserError, _json, app, out


def _run_engine(db: str | None, run_id: int) -> Any:
    return _run_engines(db, [run_id])


def _run_engines(db: str | None, run_ids: list[int]) -> Any:
    """The database holding every one of `run_ids` (UserError naming the first missing run)."""
    from labctl.recording.database import open_database
    from labctl.recording.queries import get_run

    engine = open_database(db)
    for run_id in run_ids:
        if get_run(engine, run_id) is None:
            raise UserError(f"no run {run_id} in this database")
    return engine


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    BDF = "bdf"


class ExportData(enum.StrEnum):
    POINTS = "points"
    EIS = "eis"


@app.command()
def analyze(
    run_id: RunArgument,
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
    run_ids: Annotated[list[int], typer.Argument(
        metavar="RUN...", help="Run numbers; several are overlaid, or drawn side by side.",
        show_default=False, min=1, max=MAX_RUN_ID)],
    kind: Annotated[FigureKind, typer.Option(
        "--kind", "-k", help="Figure kind (the paper's: ccd Fig. 1b, ccd-summary 1c, "
        "stripping 1d/e, nyquist 2c-e, drt-map 3b-d, cv 6).")] = FigureKind.VOLTAGE,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="PATH", help="Image file; its suffix (.png, .svg, .pdf) "
        "sets the format. Default: run<RUN>[_<RUN>...]_<kind>.<format>.")] = None,
    fmt: Annotated[ImageFormat, typer.Option(
        "--format", "-f", help="Image format when -o is not given.")] = ImageFormat.PNG,
    db: DbOption = None,
) -> None:
    """Draw a figure of one or more runs (the paper's figure kinds; one colour per run)."""
    from labctl.analysis.plots import PlotError, plot_runs

    path = output or Path(f"run{'_'.join(map(str, run_ids))}_{kind.value}.{fmt.value}")
    engine = _run_engines(db, run_ids)
    try:
        plot_runs(engine, run_ids, kind.value, path)
    except PlotError as exc:
        raise UserError(str(exc)) from exc
    out.print(f"wrote {path}")


@app.command()
def report(
    run_ids: Annotated[list[int], typer.Argument(
        metavar="RUN...", help="Run numbers to report on together.", show_default=False,
        min=1, max=MAX_RUN_ID)],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="PATH",
        help="HTML file to write. Default: report_run<RUN>[_<RUN>...].html.")] = None,
    db: DbOption = None,
) -> None:
    """One self-contained HTML report of runs: figures, results, events, protocol, cell."""
    from labctl.report.html import write_report

    path = output or Path(f"report_run{'_'.join(map(str, run_ids))}.html")
    engine = _run_engines(db, run_ids)
    write_report(engine, run_ids, path)
    out.print(f"wrote {path}")


@app.command()
def export(
    run_id: RunArgument,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="File format.")]
    = ExportFormat.CSV,
    data: Annotated[ExportData, typer.Option(
        "--data", help="points: the time series; eis: every impedance spectrum.")]
    = ExportData.POINTS,
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="PATH",
                                                help="Output file.")] = None,
    db: DbOption = None,
) -> None:
    """Write a run's time series or spectra to CSV, Parquet or (time series) BDF.

    Columns keep the database's names (t_s, E_V, I_mA, Q_mAh, P_MPa; frequency_Hz, Z_re_ohm,
    ...); step_index is the step table's index and step_number the number `labctl show`
    prints (4.12 is stage 12 of step 4).
    """
    import numpy as np

    from labctl.analysis.export import export_run, export_spectra
    from labctl.recording.reads_analysis import run_context, run_points
    from labctl.report.numbering import step_labels

    engine = _run_engine(db, run_id)
    ctx = run_context(engine, run_id)
    assert ctx is not None
    started = ctx.started_at
    meta = {"run_id": run_id, "cell": ctx.cell_name, "protocol": ctx.protocol_name,
            "station": ctx.station, "simulated": ctx.simulated, "area_cm2": ctx.area_cm2,
            "started_at": str(started),
            "start_unix_s": started.timestamp() if started is not None else None}
    ext = {"csv": ".csv", "parquet": ".parquet", "bdf": ".bdf.csv"}[fmt.value]
    if data is ExportData.EIS:
        from labctl.recording.queries import step_spectrum

        if fmt is ExportFormat.BDF:
            raise UserError("the Battery Data Format has no impedance columns; "
                            "use --format csv or parquet for --data eis")
        labels = step_labels(ctx.steps)
        spectra = [(s.index, labels[s.id], step_spectrum(engine, s.id))
                   for s in ctx.steps if s.n_eis]
        if not spectra:
            raise UserError(f"run {run_id} has no impedance spectra to export")
        path = export_spectra(spectra, meta, fmt.value,
                              output or Path(f"run{run_id}_eis{ext}"))
        n = sum(len(sp["t_s"]) for *_, sp in spectra)
        out.print(f"wrote {path} ({len(spectra)} spectra, {n} frequencies)")
        return
    pts = run_points(engine, run_id)
    if len(pts["t_s"]) == 0:
        raise UserError(f"run {run_id} has no time-series points to export")
    columns = {"t_s": pts["t_s"], "E_V": pts["E_V"], "I_mA": pts["I_mA"],
               "Q_mAh": pts["Q_mAh"]}
    if not all(v != v for v in pts["P_MPa"]):  # only when a pressure was recorded
        columns["P_MPa"] = pts["P_MPa"]
    columns["step_index"] = pts["step_index"].astype("int64")  # the step table's index
    labels = step_labels(ctx.steps)  # and the number `labctl show` prints, e.g. 4.12
    columns["step_number"] = np.array([labels[int(i)] for i in pts["step_id"]], dtype=object)
    path = export_run(columns, meta, fmt.value, output or Path(f"run{run_id}{ext}"))
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
    if summary.already_imported:
        out.print(f"{file.name} was imported before (same content): it is run "
                  f"{summary.run_id}; nothing new was written", markup=False)
        return
    out.print(f"run {summary.run_id}: {summary.n_steps} steps, {summary.n_points} points, "
              f"{summary.n_eis} impedance points from {file.name}", markup=False)
