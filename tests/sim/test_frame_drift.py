"""The simulated spring frame's force drifts as the cell under it changes thickness."""

from __future__ import annotations

from labctl_drivers.sim.bench import SimulatedBench
from labctl_drivers.sim.cells import NA_UM_PER_MAH_CM2, make_cell

AREA = 0.2827


def test_na_creep_relaxes_the_springs() -> None:
    bench = SimulatedBench(seed=1)
    cell = make_cell("Na", None, None, "Na", None, AREA, 25.0, 10.0, seed=1)
    slot = bench.add_cell("na", cell, pressure_MPa=10.0)
    f0 = slot.frame._force_N()
    cell.run_constant_current(0.0, 60.0, 600)  # 10 h at rest under 10 MPa
    drop_N = f0 - slot.frame._force_N()
    # two Na electrodes creep towards 0.5 µm/MPa each: ~8.6 µm × 200 N/mm after 10 h
    expected = 2 * 0.5 * 10.0 * (1 - 2.718281828 ** (-10 / 6)) * 1e-3 * 200.0
    assert abs(drop_N - expected) < 0.02 * expected
    assert slot.frame.true_pressure_MPa() < 10.0


def test_stripping_nak_onto_na_thickens_the_stack() -> None:
    bench = SimulatedBench(seed=2)
    cell = make_cell("NaK", 65.0, 4.35, "Na", None, AREA, 25.0, 10.0, seed=2)
    cell.params.creep_um_per_MPa = 0.0  # isolate the Na transfer
    slot = bench.add_cell("nak", cell, pressure_MPa=10.0)
    f0 = slot.frame._force_N()
    j_A = 0.25e-3 * AREA
    cell.run_constant_current(j_A, 1.0, 3600)  # 0.25 mAh/cm² moved onto the Na counter
    rise_N = slot.frame._force_N() - f0
    assert abs(rise_N - 0.25 * NA_UM_PER_MAH_CM2 * 1e-3 * 200.0) < 1e-6
