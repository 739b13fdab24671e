"""`labctl run PROTOCOL --cell CELL --station S` on a station's LANDT channels.

The order keeps the contract of every launch -- nothing is written or touched before everything
is checked -- and adds what a tester labctl cannot drive needs:

1. each protocol is translated into a LAND program (`labctl.landt.plan`); a step LAND cannot run
   refuses the whole launch with its FILE:LINE, before the database is opened;
2. the database is reached, each channel's export folder found, the run rows written;
3. the program sheet of each run is written to a file, printed, and recorded with the run (an
   operator note), so what the operator was asked to enter is part of the record; on a
   simulated tester the simulated operator enters it and presses start;
4. the channels' exports are followed into the database through the engine's event path
   (`labctl.engine.followed`): steps, points, detectors, the program check, notifications;
5. the protocol's analyses run on the recorded data, as for any run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import labctl
from labctl.engine.channel import ChannelContext
from labctl.engine.events import (
    Event,
    EventBus,
    OperatorActed,
    OperatorAction,
    RunSummary,
    SafeStateAction,
    Severity,
    Sink,
)
from labctl.engine.followed import FollowedChannel, FollowedPlan, run_followed
from labctl.landt.plan import SkippableKind, plan_for_land
from labctl.launch import (
    DatabaseControls,
    LaunchResult,
    PreparedRun,
    _estimate_s,
    _operator,
    _run_analyses,
)
from labctl.notify import Notifier
from labctl.protocol import LocatedError, ProtocolError
from labctl.recording.database import open_database
from labctl.recording.history import check_cells
from labctl.recording.recorder import Recorder, RecordingSink
from labctl.stations.connect import (
    LandtBinding,
    make_cell_model,
    make_clock,
    open_landt_channels,
)
from labctl.stations.schema import StationSpec
from labctl_drivers.landt.program import render_sheet
from labctl_drivers.sim.landt import SimulatedLandProgram

#: where program sheets are written unless LABCTL_LAND_SHEETS names another folder
SHEET_DIR = "land-sheets"


def plans_for(prepared: Sequence[PreparedRun], spec: StationSpec) -> list[FollowedPlan]:
    """Each run's LAND program on the channel it takes; every refusal of every run at once."""
    assert spec.landt is not None
    errors: list[LocatedError] = []
    plans = []
    for run, ch in zip(prepared, spec.landt.channels):
        skip = frozenset(SkippableKind(s.value) for s in ch.skip)
        try:
            plans.append(plan_for_land(run.document.path, run.protocol, skip, ch.tester,
                                       ch.channel))
        except ProtocolError as exc:
            errors.extend(e for e in exc.errors if e not in errors)
    if errors:
        raise ProtocolError(errors)
    return plans


def sheet_for(plan: FollowedPlan, binding: LandtBinding) -> str:
    return render_sheet(plan.program, f"{binding.tester.name} ({binding.tester.model})",
                        binding.channel.channel, binding.tester.exports, binding.channel.export)


def launch_on_landt(prepared: list[PreparedRun], spec: StationSpec, *, db_url: str | None,
                    operator: str | None, seed: int, subscribers: Sequence[Sink],
                    notifier: Notifier | None) -> LaunchResult:
    """Run prepared (protocol, cell) pairs on the station's LANDT channels, one each."""
    try:
        plans = plans_for(prepared, spec)  # refused before anything is written or touched
        engine = open_database(db_url)
        check_cells(engine, [r.cell.as_record() for r in prepared])
        clock = make_clock(spec)
        bindings = open_landt_channels(spec, [r.cell for r in prepared], clock)
        recorder = Recorder(engine)
        recorder.reconcile_stale_runs()
        bus = EventBus()
        sink = RecordingSink(recorder)
        bus.subscribe(sink, critical=True, name="recorder")
        for sub in (*subscribers, *([notifier] if notifier is not None else [])):
            bus.subscribe(sub)
        jobs = [_job(run, plan, b, spec, recorder, bus, clock, operator, seed, k)
                for k, (run, plan, b) in enumerate(zip(prepared, plans, bindings))]
        outcomes = run_followed(jobs, controls=DatabaseControls(recorder))
        result = LaunchResult(outcomes, {o.run_id: dict(o.results) for o in outcomes})
        _run_analyses(engine, recorder, prepared, outcomes, result)
        for out, run in zip(outcomes, prepared):
            bus.publish(RunSummary(out.run_id, run.cell.id, out.status, out.end_reason,
                                   result.results[out.run_id]))
        return result
    finally:
        if notifier is not None:
            notifier.close()


def _job(run: PreparedRun, plan: FollowedPlan, b: LandtBinding, spec: StationSpec,
         recorder: Recorder, bus: EventBus, clock: object, operator: str | None, seed: int,
         k: int) -> FollowedChannel:
    doc = run.document
    cell_dict = b.cell.model_dump(mode="json")
    cell_dict["area_cm2_resolved"] = b.cell.area
    run_id = recorder.start_run(
        cell=cell_dict, protocol_name=doc.name, protocol_text=doc.text,
        protocol_sha256=doc.sha256, schema_version=doc.schema_version, station=spec.name,
        simulated=b.simulated is not None, operator=operator or _operator(),
        labctl_version=labctl.__version__, potentiostat=b.as_row(), channel=None, seed=seed,
        pid=os.getpid(),
    )
    ctx = ChannelContext(run_id=run_id, bus=bus, channel=None,  # type: ignore[arg-type]
                         clock=clock, t0=clock.now(),  # type: ignore[attr-defined]
                         limits=run.protocol.limits, area_cm2=b.cell.area,
                         poll_interval_s=spec.poll_interval_s, cell=b.cell.id,
                         estimated_s=_estimate_s(run.protocol))
    sheet = sheet_for(plan, b)
    path = _write_sheet(sheet, run_id, b)
    print(sheet, file=sys.stderr, flush=True)  # stdout may carry --json
    bus.publish(OperatorActed(run_id, 0.0, None,
                              f"LAND program sheet (also in {path}); the operator enters it in "
                              f"LAND's software and starts the channel:\n{sheet}",
                              OperatorAction.NOTE, Severity.INFO))
    for omitted in plan.program.omitted:
        bus.publish(OperatorActed(run_id, 0.0, None, f"not run on LAND: {omitted}",
                                  OperatorAction.NOTE, Severity.WARNING))
    if b.simulated is not None:  # the simulated operator enters the sheet and presses start
        pressure = b.cell.stack_pressure_MPa if b.cell.stack_pressure_MPa is not None else 10.0
        model = make_cell_model(b.cell, pressure, seed * 1000 + k)
        b.simulated.start_program(_export_name(b), model, plan.program)
        bus.subscribe(SimulatedOperator(run_id, b.simulated, _export_name(b)),
                      name=f"simulated LAND operator, run {run_id}")
    return FollowedChannel(ctx, plan, b.follower, b.stop_instruction, doc.name,
                           b.channel.start_timeout_s)


class SimulatedOperator:
    """The simulated tester's operator: does what labctl tells people to do at a trip or a
    program mismatch -- stops the channel in (simulated) LAND software."""

    def __init__(self, run_id: int, sim: SimulatedLandProgram, channel: str) -> None:
        self.run_id, self.sim, self.channel = run_id, sim, channel

    def __call__(self, event: Event) -> None:
        if (isinstance(event, SafeStateAction) and event.run_id == self.run_id
                and not event.confirmed and self.sim.is_running(self.channel)):
            self.sim.stop_channel(self.channel)


def _export_name(b: LandtBinding) -> str:
    """The file stem a simulated tester exports this channel as (matching its glob)."""
    pattern = b.channel.export
    stem = pattern.split("*")[0] if "*" in pattern else Path(pattern).stem
    return stem.rstrip("._-") or f"ch{b.channel.channel}"


def _write_sheet(sheet: str, run_id: int, b: LandtBinding) -> Path:
    folder = Path(os.environ.get("LABCTL_LAND_SHEETS", SHEET_DIR))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{run_id}-{b.tester.name}-ch{b.channel.channel}.txt"
    path.write_text(sheet, encoding="utf-8")
    return path
