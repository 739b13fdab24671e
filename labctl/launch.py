"""Launching a protocol: validate everything, open the database, wire the station, run, analyse.

The order is the safety contract for operators: the protocol and every cell are validated and
resolved, and the database is reached, before any run row is written or any instrument is
touched. This is the layer the CLI calls; tests call it directly too.
"""

from __future__ import annotations

import functools
import gc
import getpass
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, Required, TypedDict, TypeVar, Unpack

from sqlalchemy import Engine

import labctl
from labctl import interrupts
from labctl.engine.channel import DEFAULT_MAX_LINKED, ChannelContext
from labctl.engine.events import (
    Event,
    EventBus,
    EventKind,
    OperatorAction,
    RunSummary,
    Severity,
    Sink,
    StepEnded,
    StepStatus,
)
from labctl.engine.runner import RunOutcome, run_protocol
from labctl.engine.timing import INSTRUMENT_TIMING
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
from labctl.protocol.instrument import SP300
from labctl.protocol.loader import ProtocolDocument
from labctl.protocol.resolved import ResolvedProtocol
from labctl.recording.database import open_database
from labctl.recording.history import check_cells
from labctl.recording.journal import Journal, JournalSink, journal_dir
from labctl.recording.recorder import Recorder, RecordingSink
from labctl.station_claims import StationClaim
from labctl.stations import Station, builtin_sim_station, load_station, open_station
from labctl_drivers.interfaces import PotentiostatChannel
from labctl_drivers.sim.faults import FaultPlan

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

#: how long a run's end keeps trying to write its journal into a failing database (a PostgreSQL
#: restart takes seconds), and how long when a stop signal asked to exit promptly
JOURNAL_SETTLE_S = 20.0
JOURNAL_SETTLE_ON_STOP_S = 1.5
#: how long queued notifications may still take at the end (then logged as not delivered)
NOTIFY_CLOSE_S = 10.0
NOTIFY_CLOSE_ON_STOP_S = 1.0


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
    subscribers: Sequence[Sink]
    notify: list[str] | None


def launch(
    protocol_path: str | Path, cell_paths: list[str | Path], **options: Unpack[LaunchOptions]
) -> LaunchResult:
    """Run one protocol on one channel per cell (options: see `launch_runs`)."""
    return launch_runs(prepare_runs([(protocol_path, c) for c in cell_paths]), **options)


def _stopping_on_signals(fn: Callable[P, T]) -> Callable[P, T]:
    """While `fn` runs, SIGINT, SIGTERM and SIGHUP are stop requests acted on at safe points
    (`labctl.interrupts`): the runs end aborted, every channel switched off first, and
    `StopRequested` (a KeyboardInterrupt) is raised."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        with interrupts.stop_signals():
            return fn(*args, **kwargs)

    return call


@_stopping_on_signals
def launch_runs(
    prepared: list[PreparedRun],
    *,
    sim: bool,
    station_path: str | Path | None = None,
    db_url: str | None = None,
    operator: str | None = None,
    seed: int = 0,
    faults: FaultPlan | None = None,
    subscribers: Sequence[Sink] = (),
    notify: list[str] | None = None,
) -> LaunchResult:
    """Run prepared (protocol, cell) pairs concurrently, one channel each, and record them.

    `subscribers` hear every engine event (`labctl.engine.events`), e.g. a live display;
    they are isolated: one that fails is logged and never stops a run. The recorder is the
    critical subscriber, the only writer of the database.
    """
    notifier = Notifier(notify) if notify else None  # a bad URL is refused before any run
    if not sim and station_path is None:
        raise LaunchError("say where to run: --sim for the simulated bench, or --station FILE "
                          "naming the real instruments")
    # the station file is checked completely before the database or any instrument is touched
    spec = builtin_sim_station() if sim else load_station(station_path)  # type: ignore[arg-type]
    if spec.instrument_ranges != SP300:  # the station's instruments can do less: check again
        prepared = [PreparedRun(r.document, r.cell,
                                resolve(r.document, r.cell, spec.instrument_ranges))
                    for r in prepared]
    if spec.runs_on_landt:  # followed, not driven: labctl.landt.launch
        from labctl.landt.launch import launch_on_landt

        return launch_on_landt(prepared, spec, db_url=db_url, operator=operator, seed=seed,
                               subscribers=subscribers, notifier=notifier)
    engine = open_database(db_url)
    try:
        # a cell id recorded with another description is refused before any row or instrument
        check_cells(engine, [r.cell.as_record() for r in prepared])
        # leased before any instrument is touched: a channel another labctl holds is refused
        claim = StationClaim.take(engine, spec, len(prepared))
        try:  # a crashed holder's channels are switched off first thing on connecting
            station = open_station(spec, [r.cell for r in prepared],
                                   seed=seed if sim else None, faults=faults,
                                   safe_first=claim.safe_first(spec))
        except BaseException:
            claim.release()
            raise
    except BaseException:
        if notifier is not None:
            notifier.close()
        raise
    try:
        claim.record_safe_state(spec)
        station.make_safe()  # every channel the runs use is off before anything is loaded
        return _run_on(station, prepared, engine, operator, seed, subscribers, notifier, claim)
    finally:
        station.close()
        claim.release()


def _run_on(station: Station, prepared: list[PreparedRun], engine: Engine,
            operator: str | None, seed: int, subscribers: Sequence[Sink],
            notifier: Notifier | None, claim: StationClaim) -> LaunchResult:
    """Record and run the prepared runs on an opened station; analyse; tell the notifier."""
    recorder = Recorder(engine)
    recorder.reconcile_stale_runs()
    sink = RecordingSink(recorder)
    # reserved now, while the disk has room: it takes the runs' endings if the database fails
    journal = Journal(journal_dir(engine.url.render_as_string(hide_password=False)))
    bus = EventBus()
    bus.subscribe(sink, critical=True, name="recorder")
    bus.subscribe(JournalSink(journal, sink), name="journal")
    for sub in (*subscribers, *([notifier] if notifier is not None else [])):
        bus.subscribe(sub)
    contexts: list[ChannelContext] = []
    try:
        contexts = _open_runs(prepared, station, recorder, bus, operator, seed)
        claim.name_runs((b.potentiostat.name, b.channel_index, c.run_id)
                        for b, c in zip(station.bindings, contexts))
        _end_if_stopping(recorder, [c.run_id for c in contexts])
        drt_runs = {c.run_id for c, r in zip(contexts, prepared) if "drt" in r.protocol.analyses}
        if drt_runs:
            bus.subscribe(StepEndAnalyses(recorder, sink, drt_runs), name="step-end analyses")
        # Everything alive now (modules, protocol, station) lives as long as the run: park it
        # in the collector's permanent generation so full collections during a long run do not
        # rescan it every time; hand it back afterwards.
        gc.freeze()
        try:
            outcomes = run_protocol([(ctx, r.protocol) for ctx, r in zip(contexts, prepared)],
                                    controls=DatabaseControls(recorder))
        finally:
            gc.unfreeze()
        result = LaunchResult(outcomes, {o.run_id: dict(o.results) for o in outcomes})
        _run_analyses(engine, recorder, prepared, outcomes, result)
        for out, run in zip(outcomes, prepared):
            bus.publish(RunSummary(out.run_id, run.cell.id, out.status, out.end_reason,
                                   result.results[out.run_id]))
        interrupts.raise_if_stopping()  # arrived after the runs ended: their records stand
    finally:
        stopping = interrupts.stop_requested() is not None
        if stopping and not sink.failed:
            _note_deferred_stop(recorder, [c.run_id for c in contexts])
        if journal.entries:  # the database failed: write the runs' endings if it is back
            journal.settle(engine, JOURNAL_SETTLE_ON_STOP_S if stopping else JOURNAL_SETTLE_S)
        journal.close()
        if notifier is not None:  # deliver what is queued before the process may exit
            notifier.close(NOTIFY_CLOSE_ON_STOP_S if stopping else NOTIFY_CLOSE_S)
            if not sink.failed:
                _record_delivery_failures(recorder, notifier, [c.run_id for c in contexts])
    return result


def _record_delivery_failures(recorder: Recorder, notifier: Notifier, run_ids: list[int]) -> None:
    """Each notification that did not reach its service, with apprise's reason, as a note on
    its run (on every run when it was not about one)."""
    for failure in notifier.failures:
        for run_id in [failure.run_id] if failure.run_id in run_ids else run_ids:
            recorder.event(run_id, EventKind.NOTE, f"notification '{failure.title}' not "
                           f"delivered: {failure.reason}", severity=Severity.WARNING)


def _note_deferred_stop(recorder: Recorder, run_ids: list[int]) -> None:
    """Say, on each run, that its stop signal arrived inside a database write and waited for
    it (recorded after the channels were switched off, never before)."""
    stop = interrupts.stop_requested()
    if stop is None or not interrupts.arrived_during_write():
        return
    for run_id in run_ids:
        recorder.event(run_id, EventKind.NOTE, f"{stop.name} arrived during a database write; "
                       "acted on once the write was done")


def _end_if_stopping(recorder: Recorder, run_ids: list[int]) -> None:
    """A stop that arrived while the run rows were written: end them before any step."""
    stop = interrupts.stop_requested()
    if stop is None:
        return
    for run_id in run_ids:
        recorder.event(run_id, EventKind.OPERATOR, f"run aborted before its first step: {stop}",
                       severity=Severity.WARNING)
        recorder.end_run(run_id, "aborted", str(stop))
    interrupts.raise_if_stopping()


def _estimate_s(protocol: ResolvedProtocol) -> float:
    """The plan's duration, with the instrument's timing of EIS sweeps."""
    return plan_total(plan(protocol, INSTRUMENT_TIMING)).duration_s


def _open_runs(
    prepared: list[PreparedRun], station: Station, recorder: Recorder, bus: EventBus,
    operator: str | None, seed: int,
) -> list[ChannelContext]:
    """Create every run row (the run ids), then a channel context per run on the bus."""
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
            potentiostat=binding.potentiostat.as_row(), channel=binding.channel_index, seed=seed,
            pid=os.getpid(),
        )
        for warning in protocol.warnings:  # validation warnings are kept with the run
            recorder.event(run_id, EventKind.NOTE, warning, severity=Severity.WARNING.value)
        contexts.append(ChannelContext(
            run_id=run_id, bus=bus, channel=binding.channel, clock=station.clock,
            t0=t0, limits=protocol.limits, area_cm2=binding.cell.area,
            frame=binding.frame, poll_interval_s=station.poll_interval_s,
            max_linked=linked_techniques(binding.channel), cell=binding.cell.id,
            estimated_s=_estimate_s(protocol),
        ))
    return contexts


def linked_techniques(channel: PotentiostatChannel) -> int:
    """How many techniques the engine links in one load on `channel`: what the driver can
    (`max_linked_techniques`), at most the engine's own bound."""
    return max(1, min(int(channel.max_linked_techniques), DEFAULT_MAX_LINKED))


class StepEndAnalyses:
    """Per-step analyses that run as soon as their step ends (results visible during the run).

    Only the fast ones: DRT + Kramers-Kronig of each spectrum (~ms). Everything in the
    protocol's `analyses:` list runs again over the whole run at its end. A subscriber after
    the recorder, so the spectrum is committed when it reads it; an analysis failure is
    recorded as a note and never stops the run.
    """

    def __init__(self, recorder: Recorder, sink: RecordingSink, run_ids: set[int]) -> None:
        self.recorder = recorder
        self.sink = sink
        self.run_ids = run_ids

    def __call__(self, event: Event) -> None:
        if (not isinstance(event, StepEnded) or event.kind != "eis"
                or event.status is not StepStatus.COMPLETED or event.run_id not in self.run_ids):
            return
        from labctl.analysis.products import analyze_drt_step

        step_id = self.sink.row_of(event.run_id, event.step)
        try:
            analyze_drt_step(self.recorder.engine, self.recorder, event.run_id, step_id)
        except Exception as exc:  # a bad fit must not stop a cell's run
            self.recorder.event(event.run_id, EventKind.NOTE,
                                f"step analysis 'drt' failed: {exc}", step_id=step_id,
                                severity=Severity.WARNING)


class DatabaseControls:
    """Operator requests from the run rows (`labctl pause/resume/abort`, from any process);
    reading them is the run's heartbeat."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def request(self, run_id: int) -> OperatorAction | None:
        interrupts.raise_if_stopping()  # the engine's safe point for stop signals
        action = self.recorder.heartbeat(run_id)
        if action is None:
            return None
        try:
            return OperatorAction(action)
        except ValueError:  # written by a newer or broken client: not a reason to stop a run
            log.warning("run %s: unknown operator request %r ignored", run_id, action)
            return None


def _operator() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


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
