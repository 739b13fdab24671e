"""Software safety limits, failure detectors and instrument faults on the simulated bench.

Each way a step can be stopped by software must leave the same trace: the channel off, the
step 'failed' with the reason, an event of the right kind, and no run left 'running'.
"""

from __future__ import annotations

import pytest

from labctl.engine.events import RunStatus
from labctl.protocol import resolved as rs
from labctl.recording.queries import get_run, run_events, run_steps
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell
from labctl_drivers.sim.faults import Fault

from .rig import Rig, make_rig

LONG = 36_000.0  # s: longer than any of these steps may run


def _assert_stopped(rig: Rig, event_kind: str, reason_part: str) -> None:
    assert rig.channel_off()
    steps = run_steps(rig.engine, rig.run_id)
    failed = [s for s in steps if s.status == "failed"]
    assert failed and reason_part in failed[-1].end_reason, steps
    events = run_events(rig.engine, rig.run_id)
    assert any(e.kind == event_kind for e in events), [(e.kind, e.message) for e in events]
    assert any(e.kind == "safe_state" for e in events)
    run = get_run(rig.engine, rig.run_id)
    assert run.status == "failed" and reason_part in run.end_reason


@pytest.mark.parametrize("current_mA, reason", [(4.0, "E 0."), (-4.0, "E -0.")])
def test_voltage_window_stops_the_channel(db_url: str, current_mA: float, reason: str) -> None:
    rig = make_rig(db_url)  # 150 ohm at DC: ±0.6 V at ±4 mA, outside ±0.5 V
    out = rig.run([rs.Galvanostatic("push", current_mA=current_mA, duration_s=LONG)],
                  rs.Limits(E_min_V=-0.5, E_max_V=0.5))
    assert out.status is RunStatus.FAILED
    _assert_stopped(rig, "limit", "safety limit: " + reason)
    assert run_steps(rig.engine, rig.run_id)[0].t_end_s < 600


def test_current_limit_stops_a_potentiostatic_step(db_url: str) -> None:
    rig = make_rig(db_url)  # 0.5 V across 100-150 ohm: 3.3-5 mA
    rig.run([rs.Potentiostatic("hold", voltage_V=0.5, duration_s=LONG)],
            rs.Limits(I_max_mA=2.0))
    _assert_stopped(rig, "limit", "safety limit: |I|")


def test_pressure_loss_stops_the_channel(db_url: str) -> None:
    rig = make_rig(db_url, faults=[Fault("pressure_loss", at_s=1200.0)], pressure_MPa=10.0)
    rig.run([rs.Galvanostatic("strip", current_mA=0.5, duration_s=LONG)],
            rs.Limits(P_min_MPa=8.0, P_max_MPa=12.0))
    _assert_stopped(rig, "limit", "safety limit: pressure")
    (step,) = run_steps(rig.engine, rig.run_id)
    assert 1200 <= step.t_end_s <= 1210  # the first poll after the loss


def test_injected_short_trips_hard_short(db_url: str) -> None:
    rig = make_rig(db_url, EquivalentCircuitCell(area_cm2=0.5, noise_V=0.0005, seed=2),
                   faults=[Fault("short", at_s=1800.0)])
    rig.run([rs.Galvanostatic("strip", current_mA=1.0, duration_s=LONG,
                              detectors=rs.DetectorSettings())])
    _assert_stopped(rig, "detector", "detector: hard_short")
    (step,) = run_steps(rig.engine, rig.run_id)
    assert 1800 <= step.t_end_s <= 1830
    (det,) = [e for e in run_events(rig.engine, rig.run_id) if e.kind == "detector"]
    assert det.data == {"mode": "hard_short"}


def test_transient_dll_error_is_retried_by_the_adapter(db_url: str) -> None:
    """ERR_GEN_FUNCTIONINPROGRESS (-12) means "busy, ask again": the SP-300 adapter retries it
    and the run goes on."""
    rig = make_rig(db_url, faults=[Fault("dll_error", at_s=900.0, operation="poll", count=2,
                                         code=-12)])
    out = rig.run([rs.Rest("rest", duration_s=60.0),
                   rs.Galvanostatic("strip", current_mA=1.0, duration_s=LONG)])
    assert out.status is RunStatus.COMPLETED


@pytest.mark.parametrize("kind", ["disconnect", "dll_error"])
def test_instrument_fault_on_poll_fails_the_run_safely(db_url: str, kind: str) -> None:
    count = -1 if kind == "disconnect" else 1
    # -6 ERR_GEN_FUNCTIONFAILED: a real fault, not retried
    rig = make_rig(db_url, faults=[Fault(kind, at_s=900.0, operation="poll", count=count,
                                         code=-6)])
    out = rig.run([rs.Rest("rest", duration_s=60.0),
                   rs.Galvanostatic("strip", current_mA=1.0, duration_s=LONG)])
    assert out.status is RunStatus.FAILED and out.end_reason.startswith("instrument fault")
    events = run_events(rig.engine, rig.run_id)
    if kind == "disconnect":
        # the link is gone for good: no stop can reach the instrument, whose technique goes on
        # under its own (firmware) limits; labctl must say so, loudly, not claim it is off
        assert not rig.channel_off()
        assert any(e.kind == "safe_state" and e.severity == "critical"
                   and "could not confirm" in e.message for e in events)
    else:
        assert rig.channel_off()
    steps = run_steps(rig.engine, rig.run_id)
    assert [s.status for s in steps] == ["completed", "failed"]
    assert "instrument fault" in steps[1].end_reason and steps[1].t_end_s < 910
    assert any(e.kind == "fault" and "instrument fault" in e.message for e in events)
    assert any(e.kind == "safe_state" for e in events)
    run = get_run(rig.engine, rig.run_id)
    assert run.status == "failed" and run.end_reason.startswith("instrument fault")
