"""LANDT file-based integration end to end: simulator writes exports, LandtTester follows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.importers import read_landt
from labctl.importers.landt import run_from_export
from labctl_drivers.clock import VirtualClock
from labctl_drivers.interfaces import ChannelState
from labctl_drivers.landt import CyclerCapability, LandtTester, NotSupported
from labctl_drivers.sim.landt import CCCycleSchedule, SimulatedLandt


class _RCell:
    """Stand-in cell (the real physics lives in drivers/sim/cells.py): OCV(q) + series R."""

    area_cm2 = 1.0

    def __init__(self, r_ohm: float = 100.0) -> None:
        self.q_As = 0.0
        self.r_ohm = r_ohm

    def step(self, current_A: float, dt_s: float) -> float:
        self.q_As += current_A * dt_s
        return 3.0 + 0.5 * self.q_As / 3.6 + self.r_ohm * current_A


SCHED = CCCycleSchedule(current_A=1e-3, E_max_V=3.5, E_min_V=2.8, n_cycles=3, rest_s=60.0)


@pytest.mark.parametrize("write_mode", ["append", "rewrite"])
def test_incremental_follow_matches_final_file(tmp_path: Path, write_mode: str) -> None:
    clock = VirtualClock()
    sim = SimulatedLandt(tmp_path, clock, record_interval_s=10.0, write_mode=write_mode)
    tester = LandtTester.for_simulator(sim, stale_after_s=60.0)
    assert tester.scan() == []
    sim.start_channel("ch1", _RCell(), SCHED)
    sim.start_channel("ch2", _RCell(r_ohm=50.0), SCHED)
    assert tester.scan() == ["ch1", "ch2"]

    got_t, got_e, got_i = [], [], []
    states = []
    for t in np.arange(0, 30 * 3600, 1234.5):  # polls at uneven times, many rows per poll
        clock.sleep_until(float(t))
        r = tester.poll("ch1")
        states.append(r.state)
        got_t.append(r.points.t_s)
        got_e.append(r.points.E_V)
        got_i.append(r.points.I_A)
        assert not r.reset
    assert not sim.is_running("ch1")
    assert states[1] == ChannelState.RUNNING and states[-1] == ChannelState.IDLE

    full = read_landt(sim.export_path("ch1"))
    assert sum(len(x) for x in got_t) == full.n_points
    np.testing.assert_array_equal(np.concatenate(got_t), full.column("t_s"))
    np.testing.assert_array_equal(np.concatenate(got_e), full.column("E_V"))
    np.testing.assert_allclose(np.concatenate(got_i), full.column("I_mA") * 1e-3)
    export = tester.export("ch1")  # the driver's own typed rows, no labctl types involved
    assert len(export.records) == full.n_points
    np.testing.assert_array_equal(export.records.E_V, full.column("E_V"))
    run = run_from_export(export)
    assert run.n_points == full.n_points
    # schedule executed: 3 cycles, voltage limits respected within one record's overshoot
    assert [s.label for s in run.steps] == ["R"] + ["RateC", "R", "RateD", "R"] * 3
    e = run.column("E_V")
    assert e.max() < 3.5 + 0.01 and e.min() > 2.8 - 0.01
    # ch2 was not polled yet: first poll delivers everything at once
    assert len(tester.poll("ch2").points) == read_landt(sim.export_path("ch2")).n_points


def test_rewritten_export_is_reread(tmp_path: Path) -> None:
    clock = VirtualClock()
    sim = SimulatedLandt(tmp_path, clock, record_interval_s=10.0)
    tester = LandtTester.for_simulator(sim)
    sim.start_channel("c", _RCell(), SCHED)
    clock.sleep_until(600)
    first = tester.poll("c")
    assert len(first.points) == 60
    # operator restarts the channel in LANDdt: a new, shorter export replaces the file
    sim2 = SimulatedLandt(tmp_path, VirtualClock(), record_interval_s=5.0, time_unit="h")
    sim2.start_channel("c", _RCell(), SCHED)
    sim2.clock.sleep_until(100)
    sim2.update()
    r = tester.poll("c")
    assert r.reset and len(r.points) == 20 and r.total_rows == 20
    np.testing.assert_allclose(r.points.t_s, np.arange(1, 21) * 5.0)


def test_no_control_is_honest(tmp_path: Path) -> None:
    tester = LandtTester(tmp_path, clock=VirtualClock())
    assert not tester.capabilities & CyclerCapability.START_STOP
    for call in (
        lambda: tester.start("ch1"),
        lambda: tester.stop("ch1"),
        lambda: tester.load("ch1"),
    ):
        with pytest.raises(NotSupported, match="no public control protocol"):
            call()
    with pytest.raises(KeyError):
        tester.poll("nope")
