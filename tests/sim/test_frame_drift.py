"""The simulated spring frame's force drifts as the cell under it changes thickness.

The frame is the real one (`SpringPressureFrame` over the real Mark-10 driver), pressing the
simulated spring stack through the simulated gauge; the springs' true force is checked against
the physics, and the gauge's reading of it within the gauge's noise and resolution.
"""

from __future__ import annotations

import numpy as np

from labctl_drivers.clock import VirtualClock
from labctl_drivers.sim.cells import NA_UM_PER_MAH_CM2, make_cell
from labctl_drivers.sim.spring_frame import SPRING_N_PER_MM, simulated_frame

AREA = 0.2827
GAUGE_TOL_N = 4 * 0.2 + 0.05  # 4σ of the gauge noise + half its 0.1 N resolution


def test_na_creep_relaxes_the_springs() -> None:
    cell = make_cell("Na", None, None, "Na", None, AREA, 25.0, 10.0, seed=1)
    sim = simulated_frame("na", cell, VirtualClock(), rng=np.random.default_rng(1),
                          pressure_MPa=10.0)
    try:
        f0 = sim.stack.force_N()
        assert abs(sim.frame.read_force_N() - f0) < GAUGE_TOL_N
        cell.run_constant_current(0.0, 60.0, 600)  # 10 h at rest under 10 MPa
        drop_N = f0 - sim.stack.force_N()
        # two Na electrodes creep towards 0.5 µm/MPa each: ~8.6 µm × 200 N/mm after 10 h
        expected = 2 * 0.5 * 10.0 * (1 - 2.718281828 ** (-10 / 6)) * 1e-3 * SPRING_N_PER_MM
        assert abs(drop_N - expected) < 0.02 * expected
        assert sim.stack.true_pressure_MPa() < 10.0
        assert abs(sim.frame.read_force_N() - sim.stack.force_N()) < GAUGE_TOL_N
        assert sim.frame.deviation_fraction() < 0  # the drift alarm sees it
    finally:
        sim.close()


def test_stripping_nak_onto_na_thickens_the_stack() -> None:
    cell = make_cell("NaK", 65.0, 4.35, "Na", None, AREA, 25.0, 10.0, seed=2)
    cell.params.creep_um_per_MPa = 0.0  # isolate the Na transfer
    sim = simulated_frame("nak", cell, VirtualClock(), rng=np.random.default_rng(2),
                          pressure_MPa=10.0)
    try:
        f0 = sim.stack.force_N()
        j_A = 0.25e-3 * AREA
        cell.run_constant_current(j_A, 1.0, 3600)  # 0.25 mAh/cm² moved onto the Na counter
        rise_N = sim.stack.force_N() - f0
        assert abs(rise_N - 0.25 * NA_UM_PER_MAH_CM2 * 1e-3 * SPRING_N_PER_MM) < 1e-6
        assert abs(sim.frame.read_force_N() - sim.stack.force_N()) < GAUGE_TOL_N
    finally:
        sim.close()


def test_retightening_resets_the_drift_reference() -> None:
    """The operator turns the screw back to the set-point: the springs make it again."""
    cell = make_cell("Na", None, None, "Na", None, AREA, 25.0, 10.0, seed=3)
    sim = simulated_frame("retighten", cell, VirtualClock(), pressure_MPa=10.0)
    try:
        cell.run_constant_current(0.0, 60.0, 600)
        assert sim.stack.true_pressure_MPa() < 9.95
        sim.frame.request_pressure(10.0)
        assert abs(sim.stack.true_pressure_MPa() - 10.0) < 1e-9
        assert abs(cell.pressure_MPa - 10.0) < 1e-9
    finally:
        sim.close()
