"""Launching a protocol: validate everything, open the database, wire the station, run, analyse.

The order is the safety contract for operators: the protocol and every cell are validated and
resolved, and the database is reached, before any run row is written or any instrument is
touched. This is the layer the CLI calls; tests call it directly too.
"""

from __future__ import annotations

import gc
import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy import Engine

import labctl
from labctl.engine.channel import ChannelContext
from labctl.engine.runner import RunOutcome, run_protocol
from labctl.engine.scheduler import Scheduler
from labctl.notify import Notifier
from labctl.protocol import (
    LocatedError,
    ProtocolError,
    load_cell,
    load_protocol,
    plan,
    plan_total,
    resolve,
)
from labctl.protocol.cell import CellSpec
from labctl.protocol.loader import ProtocolDocument
from labctl.protocol.resolved import ResolvedProtocol
from labctl.recording.database import open_database
from labctl.recording.recorder import Recorder
from labctl.station import Station, build_sim_station
from labctl.station_file import connect_station, load_station_spec
from labctl_drivers.sim.faults import FaultPlan


class LaunchError(RuntimeError):
    """The run cannot start (e.g. neither --sim nor a station file given)."""


@dataclass
class PreparedRun:
    """One channel's work: a validated protocol resolved against its cell."""

    document: ProtocolDocument
    cell: CellSpec
    protocol: ResolvedProtocol  # resolved per cell: areal values depend on the cell


@dataclass
class LaunchResult:
    outcomes: list[RunOutcome]
    results: dict[int, dict[str, float | str | None]] = field(default_factory=dict)


def prepare_runs(pairs: list[tuple[str | Path, str | Path]]) -> list[PreparedRun]:
    """Validate every (protocol, cell) pair; each distinct file is parsed once.

    Raises ProtocolError listing every problem in every protocol and cell together.
    """
    errors: list[LocatedError] = []
    docs: dict[Path, ProtocolDocument | None] = {}
    cells: dict[Path, CellSpec | None] = {}

    def loaded(cache: dict[Path, Any], path: str | Path, load: Callable[[Path], Any]) -> Any:
        key = Path(path).resolve()
        if key not in cache:
            try:
                cache[key] = load(Path(path))
            except ProtocolError as exc:
                cache[key] = None
                errors.extend(e for e in exc.errors if e not in errors)
        return cache[key]

    runs: list[PreparedRun] = []
    for protocol_path, cell_path in pairs:
        doc = loaded(docs, protocol_path, load_protocol)
        cell = loaded(cells, cell_path, load_cell)
        if doc is None or cell is None:
            continue
        try:
            runs.append(PreparedRun(doc, cell, resolve(doc, cell)))
        except ProtocolError as exc:
            errors.extend(e for e in exc.errors if e not in errors)
    if errors:
        raise ProtocolError(errors)
    return runs


class LaunchOptions(TypedDict, total=False):
    """Keyword options of `launch` and `launch_runs`."""

    sim: Required[bool]
    station_path: str | Path | None
    db_url: str | None
    operator: str | None
    seed: int
    faults: FaultPlan | None
    on_progress: Callable[[int, dict[str, Any]], None] | None
    on_start: Callable[[list[int], Engine], None] | None
    on_plan: Callable[[float], None] | None
    notify: list[str] | None


def launch(
    protocol_path: str | Path, cell_paths: list[str | Path], **options: Unpack[LaunchOptions]
) -> LaunchResult:
    """Run one protocol on one channel per cell (options: see `launch_runs`)."""
    return launch_runs(prepare_runs([(protocol_path, c) for c in cell_paths]), **options)


def launch_runs(
    prepared: list[PreparedRun],
    *,
    sim: bool,
    station_path: str | Path | None = None,
    db_url: str | None = None,
    operator: str | None = None,
    seed: int = 0,
    faults: FaultPlan | None = None,
    on_progress: Callable[[int, dict[str, Any]], None] | None = None,
    on_start: Callable[[list[int], Engine], None] | None = None,
    on_plan: Callable[[float], None] | None = None,
    notify: list[str] | None = None,
) -> LaunchResult:
    """Run prepared (protocol, cell) pairs concurrently, one channel each, and record them."""
    notifier = Notifier(notify) if notify else None  # a bad URL is refused before any run
    if on_plan is not None:
        on_plan(max(plan_total(plan(r.protocol)).duration_s for r in prepared))
    if not sim and station_path is None:
        raise LaunchError("say where to run: --sim for the simulated bench, or --station FILE "
                          "naming the real instruments")
    spec = load_station_spec(station_path) if station_path is not None and not sim else None
    engine = open_database(db_url)
    cells = [r.cell for r in prepared]
    station = (connect_station(spec, cells) if spec is not None
               else build_sim_station(cells, seed=seed, faults=faults))
    recorder = Recorder(engine)
    if notifier is not None:
        recorder.observers.append(notifier.on_event)
    recorder.reconcile_stale_runs()
    contexts = _open_runs(prepared, station, recorder, operator, seed, on_progress)
    if on_start is not None:
        on_start([c.run_id for c in contexts], engine)
    # Everything alive now (modules, protocol, station) lives as long as the run: park it in
    # the collector's permanent generation so full collections during a long run do not
    # rescan it every time; hand it back afterwards.
    gc.freeze()
    try:
        outcomes = run_protocol([(ctx, r.protocol) for ctx, r in zip(contexts, prepared)],
                                housekeeping=_housekeeping(contexts, recorder))
    finally:
        gc.unfreeze()
    result = LaunchResult(outcomes)
    for out in outcomes:
        recorder.store_results(
            out.run_id, "engine", labctl.__version__,
            [(k, v, _unit(k), None) for k, v in out.results.items()],
        )
        result.results[out.run_id] = dict(out.results)
    _run_analyses(engine, recorder, prepared, outcomes, result)
    if notifier is not None:
        for out, run in zip(outcomes, prepared):
            notifier.run_ended(out.run_id, run.cell.id, out.status, out.end_reason,
                               result.results[out.run_id])
    return result


def _unit(name: str) -> str:
    for suffix, unit in (("_mA_cm2", "mA/cm^2"), ("_mAh_cm2", "mAh/cm^2"), ("_mAh_g", "mAh/g"),
                         ("_mAh", "mAh"), ("_ohm", "ohm"), ("_s", "s"), ("_V", "V")):
        if name.endswith(suffix):
            return unit
    return ""


def _open_runs(
    prepared: list[PreparedRun], station: Station, recorder: Recorder, operator: str | None,
    seed: int, on_progress: Callable[[int, dict[str, Any]], None] | None,
) -> list[ChannelContext]:
    contexts = []
    t0 = station.clock.now()
    for binding, run in zip(station.bindings, prepared):
        doc, protocol = run.document, run.protocol
        cell_dict = binding.cell.model_dump(mode="json")
        cell_dict["area_cm2_resolved"] = binding.cell.area
        run_id = recorder.start_run(
            cell=cell_dict, protocol_name=doc.name, protocol_text=doc.text,
            protocol_sha256=doc.sha256, schema_version=doc.schema_version,
            station=station.name, simulated=station.simulated,
            operator=operator or _operator(), labctl_version=labctl.__version__,
            potentiostat=binding.potentiostat, channel=binding.channel_index, seed=seed,
            pid=os.getpid(),
        )
        ctx = ChannelContext(
            run_id=run_id, recorder=recorder, channel=binding.channel, clock=station.clock,
            t0=t0, limits=protocol.limits, area_cm2=binding.cell.area,
            frame=binding.frame, poll_interval_s=station.poll_interval_s,
        )
        if on_progress is not None:
            ctx.on_progress = lambda info, rid=run_id: on_progress(rid, info)
        ctx.on_step_end = _step_end_analyses(recorder, run_id, protocol.analyses)
        contexts.append(ctx)
    return contexts


def _step_end_analyses(
    recorder: Recorder, run_id: int, names: tuple[str, ...]
) -> Callable[[int, str], None] | None:
    """Per-step analyses that run as soon as their step ends (results visible during the run).

    Only the fast ones: DRT + Kramers-Kronig of each spectrum (~ms). Everything in the
    protocol's `analyses:` list runs again over the whole run at its end. An analysis failure
    is recorded as an event and never stops the run.
    """
    if "drt" not in names:
        return None
    from labctl.analysis.products import analyze_drt_step

    def on_step_end(step_id: int, kind: str) -> None:
        if kind != "eis":
            return
        try:
            analyze_drt_step(recorder.engine, recorder, run_id, step_id)
        except Exception as exc:  # a bad fit must not stop a cell's run
            recorder.event(run_id, "note", f"step analysis 'drt' failed: {exc}",
                           step_id=step_id, severity="warning")

    return on_step_end


def _operator() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def _housekeeping(
    contexts: list[ChannelContext], recorder: Recorder
) -> Callable[[Scheduler], None]:
    """Every wall second: commit points, beat the heart, apply operator requests."""
    by_run = {c.run_id: c for c in contexts}

    def tick(sched: Scheduler) -> None:
        recorder.maybe_flush()
        for run_id, ctx in by_run.items():
            action = recorder.heartbeat(run_id)
            if action == "abort":
                recorder.event(run_id, "operator", "abort requested", t_s=ctx.run_time())
                sched.abort(run_id, "aborted by operator")
            elif action == "pause" and not ctx.paused:
                ctx.paused = True
                recorder.event(run_id, "operator", "paused", t_s=ctx.run_time())
                recorder.set_run_status(run_id, "paused")
            elif action == "resume" and ctx.paused:
                ctx.paused = False
                recorder.event(run_id, "operator", "resumed", t_s=ctx.run_time())
                recorder.set_run_status(run_id, "running")

    return tick


def _run_analyses(engine: Engine, recorder: Recorder, prepared: list[PreparedRun],
                  outcomes: list[RunOutcome], result: LaunchResult) -> None:
    """Run each protocol's end-of-run analyses (labctl.analysis) and merge their results.

    The analysis stack (scipy's optimisers, fitters) is only imported when a protocol asks
    for an analysis.
    """
    wanted = [(out, run.protocol.analyses) for out, run in zip(outcomes, prepared)
              if run.protocol.analyses]
    if not wanted:
        return
    from labctl.analysis.runner import analyze_run

    for out, names in wanted:
        result.results[out.run_id].update(analyze_run(engine, recorder, out.run_id, names))
