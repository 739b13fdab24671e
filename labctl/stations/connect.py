"""Opening a station: the one composition root between a station file and the drivers.

Order matters for the cells' safety and is the same for real and simulated stations:

1. every instrument a run will use is built by name through the driver registry and connected
   — connecting changes nothing on an instrument (a channel a crashed labctl left running is
   seen running, not silently stopped) — except that the channels named `safe_first` (those a
   crashed labctl held, whether or not these runs use them) are switched off right after their
   potentiostat answers, before anything else is done on the station;
2. every gauge is identified and read inside its band, before any current can flow;
3. `Station.make_safe()` switches every channel the runs use off; only then does the engine
   load a technique.

`labctl station check` does 1 and 2 for every instrument and stops there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.protocol.cell import CellSpec
from labctl.stations.schema import (
    Actuator,
    Backend,
    ChannelEntry,
    ClockKind,
    FrameEntry,
    LandtBackend,
    LandtChannelEntry,
    LandtTesterEntry,
    PotentiostatEntry,
    StationSpec,
)
from labctl_drivers.clock import Clock, VirtualClock, WallClock
from labctl_drivers.errors import InstrumentError
from labctl_drivers.interfaces import Potentiostat, PotentiostatChannel, PressureFrame
from labctl_drivers.landt.follower import ExportFollower
from labctl_drivers.pressure_frame import ForceGauge, SpringPressureFrame
from labctl_drivers.registry import DriverKind, DriverRequest, make
from labctl_drivers.sim.bench import SimulatedBench
from labctl_drivers.sim.cell_model import CellModel
from labctl_drivers.sim.faults import FaultPlan
from labctl_drivers.sim.remote import RemoteOperator

if TYPE_CHECKING:
    from labctl_drivers.sim.landt import SimulatedLandProgram

#: The stack pressure a simulated cell is assembled at when its description gives none.
DEFAULT_SIM_PRESSURE_MPA = 10.0


class StationError(RuntimeError):
    """The station cannot be used: too few channels, an instrument unreachable or implausible.
    One line, naming the station and the instrument."""


@dataclass(frozen=True)
class InstrumentRecord:
    """How a run's record names the potentiostat it ran on."""

    name: str
    model: str
    address: str
    simulated: bool

    def as_row(self) -> dict[str, object]:
        return {"name": self.name, "kind": "potentiostat", "model": self.model,
                "address": self.address, "simulated": self.simulated}


@dataclass
class ChannelBinding:
    """One cell on one channel (and, if the channel has one, the frame pressing it)."""

    cell: CellSpec
    channel: PotentiostatChannel
    channel_index: int
    frame: PressureFrame | None
    potentiostat: InstrumentRecord


@dataclass
class Station:
    name: str
    simulated: bool
    clock: Clock
    poll_interval_s: float
    bindings: list[ChannelBinding]
    potentiostats: dict[str, Potentiostat] = field(default_factory=dict)
    frames: dict[str, PressureFrame] = field(default_factory=dict)
    #: gauges of frames whose area comes from a cell, opened by a check that has no cells
    gauges: dict[str, ForceGauge] = field(default_factory=dict)
    bench: SimulatedBench | None = None

    def make_safe(self) -> None:
        """Switch every channel the runs use off, whatever it was doing."""
        for b in self.bindings:
            b.channel.stop()

    def close(self) -> None:
        """Let go of the instruments (channels keep whatever state the engine left them in)."""
        for closable in [*self.frames.values(), *self.gauges.values()]:
            try:
                closable.close()
            except InstrumentError:
                pass
        for pot in self.potentiostats.values():
            try:
                pot.disconnect()
            except InstrumentError:
                pass


def make_clock(spec: StationSpec) -> Clock:
    if spec.clock.kind is ClockKind.VIRTUAL:
        return VirtualClock()
    return WallClock(speed=spec.clock.speed)


def make_cell_model(cell: CellSpec, pressure_MPa: float, seed: int) -> CellModel:
    """The digital twin of a described cell (labctl_drivers.sim.cells)."""
    from labctl_drivers.sim.cells import make_cell

    return make_cell(
        anode_material=cell.anode.material,
        k_wt_pct=cell.anode.k_wt_pct,
        alloy_mass_mg=cell.anode.alloy_mass_mg,
        counter=cell.counter_electrode,
        counter_k_wt_pct=cell.counter_k_wt_pct,
        area_cm2=cell.area,
        temperature_C=cell.temperature_C,
        pressure_MPa=pressure_MPa,
        seed=seed,
        coated=bool(cell.coating),
    )


def _bind(spec: StationSpec, cells: list[CellSpec]) -> list[tuple[CellSpec, ChannelEntry]]:
    if len(cells) > len(spec.channels):
        raise StationError(f"{len(cells)} cells but station {spec.name!r} has only "
                           f"{len(spec.channels)} channels")
    return list(zip(cells, spec.channels))


def _potentiostat(entry: PotentiostatEntry, bench: SimulatedBench | None) -> Potentiostat:
    request = DriverRequest(entry.name, {
        "address": entry.address, "backend": entry.backend, "timeout_s": entry.timeout_s,
    }, bench)
    pot: Potentiostat = make(DriverKind.POTENTIOSTAT, entry.driver, request)
    return pot


def frame_area_mm2(entry: FrameEntry, cell: CellSpec | None) -> float | None:
    """The load-bearing area P = F / A is computed with: the station's, else the cell's."""
    if entry.area_mm2 is not None:
        return entry.area_mm2
    if entry.electrode_diameter_mm is not None:
        return math.pi * entry.electrode_diameter_mm ** 2 / 4.0
    return None if cell is None else cell.area * 100.0


def _gauge(entry: FrameEntry, bench: SimulatedBench | None) -> ForceGauge:
    gauge: ForceGauge = make(DriverKind.GAUGE, entry.gauge.driver, DriverRequest(entry.name, {
        "port": entry.gauge.port, "baudrate": entry.gauge.baudrate,
        "timeout_s": entry.gauge.timeout_s,
    }, bench))
    return gauge


def _frame(entry: FrameEntry, cell: CellSpec | None, bench: SimulatedBench | None
           ) -> PressureFrame:
    gauge = _gauge(entry, bench)
    area_mm2 = frame_area_mm2(entry, cell)
    if area_mm2 is None:
        raise StationError(f"frame {entry.name!r}: no electrode_diameter_mm or area_mm2 "
                           "and no cell on its channel to take the area from")
    motor: Callable[[float], None] | None = None
    if entry.actuator_kind is Actuator.SIMULATED_OPERATOR:
        if bench is None:
            raise StationError(f"frame {entry.name!r}: a simulated operator needs the "
                               "simulated bench")
        motor = bench.operator(entry.name)
    elif entry.actuator_kind is Actuator.REMOTE_OPERATOR:
        motor = RemoteOperator(entry.actuator, entry.name)
    return SpringPressureFrame(gauge, area_mm2=area_mm2, name=entry.name, motor=motor,
                               force_band_N=entry.force_band_N)


def open_station(
    spec: StationSpec, cells: list[CellSpec], *, seed: int | None = None,
    faults: FaultPlan | None = None, every_instrument: bool = False,
    models: Sequence[CellModel] | None = None,
    safe_first: Sequence[tuple[str, int]] = (),
) -> Station:
    """Connect what `cells` need (every instrument with `every_instrument`) and bind the cells to
    channels in order. Nothing is switched on here; only the (potentiostat, channel) pairs in
    `safe_first` are switched off, first (see also `Station.make_safe`).

    On a simulated station each cell gets its digital twin on its channel; `models` replaces
    those twins (e.g. closed-form test cells whose response is known exactly)."""
    pairs = _bind(spec, cells)
    clock = make_clock(spec)
    bench: SimulatedBench | None = None
    sim_seed = seed if seed is not None else (spec.simulation.seed if spec.simulation else 0)
    if any(p.backend_kind is Backend.SIMULATED for p in spec.potentiostats):
        bench = SimulatedBench(seed=sim_seed, faults=faults, clock=clock)
    pot_entries = {p.name: p for p in spec.potentiostats}
    frame_entries = {f.name: f for f in spec.frames}
    used_pots = list(pot_entries) if every_instrument else list(
        dict.fromkeys([*(ch.potentiostat for _, ch in pairs), *(p for p, _ in safe_first)]))
    frame_cell = {ch.frame: cell for cell, ch in pairs if ch.frame is not None}
    used_frames = list(frame_entries) if every_instrument else list(frame_cell)
    station = Station(spec.name, spec.simulated, clock, spec.poll_interval_s, [], bench=bench)
    try:
        if bench is not None:
            for name in used_pots:
                if pot_entries[name].backend_kind is Backend.SIMULATED:
                    bench.add_sp300(name)
            for name in used_frames:
                bench.add_frame(name)
            for k, (cell, ch) in enumerate(pairs):
                pressure = (cell.stack_pressure_MPa if cell.stack_pressure_MPa is not None
                            else DEFAULT_SIM_PRESSURE_MPA)
                model = (models[k] if models is not None
                         else make_cell_model(cell, pressure, sim_seed * 1000 + k))
                bench.place_cell(cell.id, model, ch.potentiostat, ch.channel, ch.frame,
                                 pressure)
        for name in used_pots:
            pot = _potentiostat(pot_entries[name], bench)
            station.potentiostats[name] = pot
            pot.connect()
            for pot_name, channel in safe_first:
                if pot_name == name:
                    pot.channel(channel).stop()
        for name in used_frames:
            entry = frame_entries[name]
            if frame_area_mm2(entry, frame_cell.get(name)) is None:  # a check without cells
                gauge = _gauge(entry, bench)
                station.gauges[name] = gauge
                gauge.open()
                continue
            frame = _frame(entry, frame_cell.get(name), bench)
            station.frames[name] = frame
            frame.connect()  # identified and read inside its band before any current flows
        for cell, ch in pairs:
            pot = station.potentiostats[ch.potentiostat]
            ident = pot.identity()
            station.bindings.append(ChannelBinding(
                cell=cell, channel=pot.channel(ch.channel), channel_index=ch.channel,
                frame=station.frames.get(ch.frame) if ch.frame else None,
                potentiostat=InstrumentRecord(ch.potentiostat, ident.model, ident.address,
                                              ident.simulated),
            ))
    except InstrumentError as exc:
        station.close()
        raise StationError(f"station {spec.name!r}: {exc}") from None
    return station


# ---- LANDT channels (followed through their exports, never driven) -----------------------------
@dataclass
class LandtBinding:
    """One cell on one LANDT channel: where its rows come from, and how to name it to people.

    `simulated` is the simulated LAND tester writing the exports when the tester's backend is
    `simulated`; its operator enters the program sheet (`start_program`) before following.
    """

    cell: CellSpec
    tester: LandtTesterEntry
    channel: LandtChannelEntry
    follower: ExportFollower
    simulated: SimulatedLandProgram | None = None

    @property
    def stop_instruction(self) -> str:
        return (f"stop LANDT tester {self.tester.name} ({self.tester.model}) channel "
                f"{self.channel.channel} in LAND's software")

    def as_row(self) -> dict[str, object]:
        """How the run's record names the instrument."""
        return {"name": self.tester.name, "kind": "tester", "model": self.tester.model,
                "address": f"{self.tester.exports} :: {self.channel.export}",
                "simulated": self.simulated is not None}


def open_landt_channels(spec: StationSpec, cells: list[CellSpec], clock: Clock
                        ) -> list[LandtBinding]:
    """Bind `cells` in order to the station's LANDT channels, each with a follower of its
    exports. Nothing is sent to a tester (nothing can be); a missing export folder is an error
    here, before any run row is written."""
    from labctl_drivers.sim.landt import SimulatedLandProgram

    if spec.landt is None:
        raise StationError(f"station {spec.name!r} has no LANDT channels")
    channels = spec.landt.channels
    if len(cells) > len(channels):
        raise StationError(f"{len(cells)} cells but station {spec.name!r} has only "
                           f"{len(channels)} LANDT channels")
    testers = {t.name: t for t in spec.landt.testers}
    sims: dict[str, SimulatedLandProgram] = {}
    out = []
    for cell, ch in zip(cells, channels):
        tester = testers[ch.tester]
        folder = Path(tester.exports)
        sim = None
        if tester.backend is LandtBackend.SIMULATED:
            folder.mkdir(parents=True, exist_ok=True)
            sim = sims.setdefault(tester.name, SimulatedLandProgram(folder, clock))
        elif not folder.is_dir():
            raise StationError(f"station {spec.name!r}: LANDT tester {tester.name!r}: export "
                               f"folder {folder} does not exist")
        follower = ExportFollower(folder, ch.export, clock, settle_s=tester.settle_s,
                                  stale_after_s=tester.stale_after_s,
                                  before_read=None if sim is None else sim.update)
        out.append(LandtBinding(cell, tester, ch, follower, sim))
    return out
