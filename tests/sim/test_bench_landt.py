"""A LANDT tester on the simulated bench: same clock as the SP-300, read back as a real one is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl_drivers.interfaces import ChannelState
from labctl_drivers.landt import LandtTester
from labctl_drivers.sim.bench import SimulatedBench
from labctl_drivers.sim.cells import make_cell
from labctl_drivers.sim.landt import CCCycleSchedule


def test_bench_landt_exports_follow_the_bench_clock(tmp_path: Path) -> None:
    bench = SimulatedBench(seed=4)
    landt = bench.add_landt(tmp_path, record_interval_s=10.0)
    cell = make_cell("NaK", 65.0, 4.35, "Na", None, 0.283, 25.0, 10.0, seed=4)
    j_A = 0.1e-3 * 0.283  # 0.1 mA/cm^2
    landt.start_channel("ch1", cell, CCCycleSchedule(current_A=j_A, E_max_V=0.5, E_min_V=-0.5,
                                                     n_cycles=2, rest_s=60, max_step_s=1800))
    tester = LandtTester.for_simulator(landt)
    bench.clock.sleep_until(3600.0)
    first = tester.poll("ch1")
    assert first.state is ChannelState.RUNNING
    assert len(first.points) == 360  # one record per 10 s for the hour the bench clock ran
    assert np.allclose(np.abs(first.points.I_A[first.points.I_A != 0]), j_A)
    bench.clock.sleep_until(20_000.0)
    rest = tester.poll("ch1")
    t = np.concatenate([first.points.t_s, rest.points.t_s])
    assert np.all(np.diff(t) > 0) and t[-1] <= 20_000.0
    assert bench.testers == [landt]
