"""Composition root: which instruments a run uses and how they are wired to the cells.

`--sim` builds a simulated bench (labctl_drivers.sim): one virtual clock, a digital-twin cell per cell
description, simulated SP-300 channels and pressure frames. Real stations are described by a
station file (`labctl.station_file`); labctl never guesses instrument addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from labctl.protocol.cell import CellSpec
from labctl_drivers.clock import Clock
from labctl_drivers.interfaces import PotentiostatChannel, PressureFrame
from labctl_drivers.sim.bench import SimulatedBench
from labctl_drivers.sim.cell_model import CellModel
from labctl_drivers.sim.faults import FaultPlan

#: Simulated seconds between polls of a simulated channel. The simulated SP-300 buffers points
#: between polls like the real one, so this only sets how late (in simulated time) the engine
#: sees a software limit or detector trip; detectors still see every 1 s sample. At 5 s every
#: poll integrated fewer samples than the twin's closed-form chunk minimum and the whole run
#: went through the per-step Euler path (a 16 h 4-cell campaign took 16 s wall); at 60 s it
#: takes ~2.5 s, and the paper CCDs/critical capacities are unchanged (tests/paper).
SIM_POLL_INTERVAL_S = 60.0
HW_POLL_INTERVAL_S = 1.0


@dataclass
class ChannelBinding:
    cell: CellSpec
    channel: PotentiostatChannel
    channel_index: int
    frame: PressureFrame | None
    potentiostat: dict[str, object]  # instrument row: name, kind, model, address, simulated


@dataclass
class Station:
    name: str
    simulated: bool
    clock: Clock
    bindings: list[ChannelBinding]
    poll_interval_s: float
    bench: SimulatedBench | None = None


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


def build_sim_station(
    cells: list[CellSpec], seed: int = 0, faults: FaultPlan | None = None,
    default_pressure_MPa: float = 10.0,
) -> Station:
    bench = SimulatedBench(seed=seed, faults=faults)
    bindings = []
    for k, cell in enumerate(cells):
        pressure = cell.stack_pressure_MPa if cell.stack_pressure_MPa is not None \
            else default_pressure_MPa
        model = make_cell_model(cell, pressure, seed * 1000 + k)
        slot = bench.add_cell(cell.id, model, pressure)
        bindings.append(ChannelBinding(
            cell=cell, channel=slot.channel, channel_index=slot.channel.index, frame=slot.frame,
            potentiostat={"name": slot.potentiostat.name, "kind": "potentiostat",
                          "model": "SP-300 (simulated)", "address": "sim", "simulated": True},
        ))
    return Station("sim-bench", True, bench.clock, bindings, SIM_POLL_INTERVAL_S, bench)
