"""Operator controls mid-step: abort (from another connection), Ctrl-C, pause and resume.

Whatever ends a run early, the contract is the same: the channel is switched off first, the
interrupted step is closed as 'aborted', the run row says 'aborted', and a safe_state event
records that the channel was turned off.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from labctl.engine.events import Event, Points, RunStarted, RunStatus
from labctl.launch import launch
from labctl.protocol import resolved as rs
from labctl.recording.database import open_database
from labctl.recording.queries import get_run, run_events, run_steps, step_points
from labctl.recording.recorder import Recorder
from labctl_drivers.sim.equivalent_circuit import EquivalentCircuitCell

from .rig import CELLS, REPO, Rig, make_rig, write_protocol

# A galvanostatic step far longer than any test: whatever ends it, it is not its own end.
LONG_STEP = """\
schema_version: 1
name: long strip
limits:
  E_min: -5 V
  E_max: 5 V
steps:
  - kind: rest
    duration: 1 min
  - kind: galvanostatic
    name: long strip
    current: 0.05 mA/cm^2
    duration: 700 h
    record:
      every: 60 s
"""


def _assert_aborted_mid_step(engine: Engine, run_id: int) -> None:
    run = get_run(engine, run_id)
    assert run is not None and run.status == "aborted", run
    steps = {s.name: s for s in run_steps(engine, run_id)}
    assert steps["rest 1 min"].status == "completed" if "rest 1 min" in steps else True
    strip = steps["long strip"]
    assert strip.status == "aborted"
    assert strip.n_points > 0, "the abort should land while the step is recording"
    assert strip.t_end_s is not None and strip.t_end_s < 700 * 3600
    events = run_events(engine, run_id)
    assert any(e.kind == "safe_state" and e.message.startswith("channel off") for e in events)


def test_abort_from_another_connection_mid_step(tmp_path: Path, db_url: str) -> None:
    """`labctl abort` path: the control column, read by housekeeping, ends the step safely."""
    protocol = write_protocol(tmp_path, LONG_STEP)
    requested = threading.Event()

    def operator_elsewhere(event: Event) -> None:
        if not isinstance(event, RunStarted):
            return
        run_ids = [event.run_id]

        def act() -> None:
            other = open_database(db_url)  # its own engine, as a second process would have
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(s.name == "long strip" and s.n_points
                       for s in run_steps(other, run_ids[0])):
                    requested.set()
                    Recorder(other).request_control(run_ids[0], "abort")
                    return
                time.sleep(0.05)

        threading.Thread(target=act, daemon=True).start()

    result = launch(protocol, [CELLS / "na_symmetric.yaml"], sim=True, db_url=db_url,
                    subscribers=[operator_elsewhere])
    assert requested.is_set()
    (out,) = result.outcomes
    assert out.status is RunStatus.ABORTED and out.end_reason == "aborted by operator"
    engine = open_database(db_url)
    _assert_aborted_mid_step(engine, out.run_id)
    kinds = [(e.kind, e.message) for e in run_events(engine, out.run_id)]
    assert ("operator", "abort requested") in kinds


def test_abort_mid_step_switches_the_channel_off(db_url: str) -> None:
    """Precise version on a hand-built run: the simulated channel itself ends IDLE."""
    rig = make_rig(db_url)
    seen_running: list[bool] = []

    def operator(r: Rig) -> None:
        if r.ctx.run_time() >= 600 and not seen_running:
            seen_running.append(not r.channel_off())
            r.recorder.request_control(r.run_id, "abort")

    out = rig.run([rs.Galvanostatic("long strip", current_mA=1.0, duration_s=36_000)],
                  on_tick=operator)
    assert seen_running == [True]
    assert out.status is RunStatus.ABORTED
    assert rig.channel_off()
    (step,) = run_steps(rig.engine, rig.run_id)
    assert step.status == "aborted" and 590 <= step.t_end_s <= 620
    assert get_run(rig.engine, rig.run_id).status == "aborted"
    assert any(e.kind == "safe_state" for e in run_events(rig.engine, rig.run_id))


def test_ctrl_c_inside_the_engine_mid_step(tmp_path: Path, db_url: str) -> None:
    """KeyboardInterrupt raised while the runner is recording (not while sleeping)."""
    protocol = write_protocol(tmp_path, LONG_STEP)
    with_current: list[Points] = []

    def display(event: Event) -> None:  # a subscriber: KeyboardInterrupt passes any sink
        if isinstance(event, Points) and event.I_mA[-1] != 0.0:
            with_current.append(event)
            if len(with_current) >= 20:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch(protocol, [CELLS / "na_symmetric.yaml"], sim=True, db_url=db_url,
               subscribers=[display])
    engine = open_database(db_url)
    (run,) = [r for r in [get_run(engine, 1)] if r is not None]
    _assert_aborted_mid_step(engine, run.id)
    assert run.end_reason == "interrupted (Ctrl-C)"
    strip = next(s for s in run_steps(engine, run.id) if s.name == "long strip")
    assert strip.end_reason == "interrupted (Ctrl-C)"


@dataclass
class Interrupted:
    returncode: int
    stderr: str
    db_url: str


@pytest.fixture(scope="module")
def sigint_run(tmp_path_factory: pytest.TempPathFactory) -> Interrupted:
    """`labctl run` in a subprocess, sent a real SIGINT once its long step is recording."""
    tmp = tmp_path_factory.mktemp("sigint")
    db_url = f"sqlite:///{tmp / 'labctl.db'}"
    protocol = write_protocol(tmp, LONG_STEP)
    engine = open_database(db_url)  # create the schema first so the poller below can read it
    cmd = [sys.executable, "-c", "from labctl.cli import main; main()", "run", str(protocol),
           "--cell", str(CELLS / "na_symmetric.yaml"), "--sim", "--json", "--db", db_url]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(s.name == "long strip" and s.n_points for s in run_steps(engine, 1)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never reached its long step")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Interrupted(proc.returncode, stderr.decode(), db_url)


def test_sigint_to_labctl_run_mid_step_records_an_aborted_run(sigint_run: Interrupted) -> None:
    """Real Ctrl-C to the console command: channel off, step and run recorded aborted."""
    assert "Traceback" not in sigint_run.stderr
    engine = open_database(sigint_run.db_url)
    _assert_aborted_mid_step(engine, 1)
    assert get_run(engine, 1).end_reason == "interrupted (Ctrl-C)"


def test_sigint_to_labctl_run_exits_130_with_one_line(sigint_run: Interrupted) -> None:
    assert sigint_run.returncode == 130, sigint_run.stderr
    assert "interrupted" in sigint_run.stderr


def test_pause_then_resume_mid_galvanostatic_step(db_url: str) -> None:
    """Paused: channel off, no points; resumed: the step still passes exactly its capacity.

    On the simulated bench's virtual clock a pause lasts as long in run time as it does for
    the operator (here about half a wall second), not as far as the clock could jump."""
    rig = make_rig(db_url, EquivalentCircuitCell(area_cm2=0.5, noise_V=0.001, seed=3))
    capacity_mAh, current_mA = 0.5, 1.0  # 30 min of current
    off_while_paused: list[bool] = []
    pause_at, pause_wall_s = 700.0, 0.5
    paused_since: list[float] = []  # wall time the engine was first seen paused

    def operator(r: Rig) -> None:
        t = r.ctx.run_time()
        if pause_at <= t and not r.ctx.paused and not off_while_paused:
            r.recorder.request_control(r.run_id, "pause")
        elif r.ctx.paused:
            off_while_paused.append(r.channel_off())
            if not paused_since:
                paused_since.append(time.monotonic())
            elif time.monotonic() - paused_since[0] >= pause_wall_s:
                r.recorder.request_control(r.run_id, "resume")

    out = rig.run([rs.Galvanostatic("capacity step", current_mA=current_mA,
                                    capacity_mAh=capacity_mAh,
                                    record=rs.RecordEvery(dt_s=1.0, dE_V=None))],
                  on_tick=operator)
    assert out.status is RunStatus.COMPLETED, out
    assert off_while_paused and all(off_while_paused)
    (step,) = run_steps(rig.engine, rig.run_id)
    assert step.status == "completed" and step.end_reason == "charge"
    pts = step_points(rig.engine, [step.id])
    # total charge: the requested capacity, within one sample's worth
    one_sample_mAh = current_mA * 1.0 / 3600
    assert abs(pts["Q_mAh"][-1] - capacity_mAh) <= one_sample_mAh
    # points are stamped in run time: strictly increasing, with the pause as a gap in them
    # of its own length (plus at most a poll and a record interval), not of days
    t = pts["t_s"]
    assert np.all(np.diff(t) > 0)
    k = int(np.argmax(np.diff(t)))
    assert pause_at - 1 <= t[k] <= pause_at + rig.ctx.poll_interval_s + 1
    assert pause_wall_s <= t[k + 1] - t[k] <= pause_wall_s + rig.ctx.poll_interval_s + 2.0
    assert step.t_end_s == pytest.approx(t[-1], abs=1.0)
    assert step.t_end_s < 1800 + pause_at  # 30 min of current and a short pause
    kinds = [(e.kind, e.message) for e in run_events(rig.engine, rig.run_id)]
    assert ("operator", "paused") in kinds and ("operator", "resumed") in kinds
    assert get_run(rig.engine, rig.run_id).status == "completed"


def test_pause_and_resume_of_a_simulated_run_keep_its_time_axis(tmp_path: Path,
                                                                 db_url: str) -> None:
    """`labctl pause` / `labctl resume` from another connection to a `--sim` run (the launch
    path, the built-in simulated station): the recorded time has no gap beyond the pause
    itself. Before, the paused run's virtual clock ran free and the time axis jumped by
    hundreds of thousands of hours."""
    protocol = write_protocol(tmp_path, LONG_STEP.replace("700 h", "100 h")
                              .replace("every: 60 s", "every: 1 s"))
    pause_wall_s = 1.5
    timeline: dict[str, float] = {}

    def operator_elsewhere(event: Event) -> None:
        if not isinstance(event, RunStarted):
            return
        run_id = event.run_id

        def act() -> None:
            other = open_database(db_url)  # its own engine, as a second process would have
            rec = Recorder(other)

            def wait_for(ok: Callable[[], bool]) -> None:
                deadline = time.monotonic() + 60
                while not ok():
                    assert time.monotonic() < deadline
                    time.sleep(0.02)

            def strip_points() -> int:
                return sum(s.n_points for s in run_steps(other, run_id) if s.name == "long strip")

            wait_for(lambda: strip_points() > 0)
            rec.request_control(run_id, "pause")
            wait_for(lambda: get_run(other, run_id).status == "paused")
            timeline["paused"] = time.monotonic()
            time.sleep(pause_wall_s)
            rec.request_control(run_id, "resume")
            wait_for(lambda: get_run(other, run_id).status == "running")
            timeline["resumed"] = time.monotonic()
            n = strip_points()
            wait_for(lambda: strip_points() > n + 100)  # well under way again
            rec.request_control(run_id, "abort")

        threading.Thread(target=act, daemon=True).start()

    result = launch(protocol, [CELLS / "na_symmetric.yaml"], sim=True, db_url=db_url,
                    subscribers=[operator_elsewhere])
    (out,) = result.outcomes
    assert out.status is RunStatus.ABORTED and out.end_reason == "aborted by operator"
    engine = open_database(db_url)
    strip = next(s for s in run_steps(engine, out.run_id) if s.name == "long strip")
    t = step_points(engine, [strip.id])["t_s"]
    gaps = np.diff(t)
    assert np.all(gaps > 0)
    # one gap: the pause, as long as it lasted for the operator (its ends are seen within a
    # housekeeping second each, and records are 1 s apart); every other gap one record
    paused_wall = timeline["resumed"] - timeline["paused"]
    k = int(np.argmax(gaps))
    assert pause_wall_s - 1.0 <= gaps[k] <= paused_wall + 2 * 1.0 + 1.0 + 0.5, gaps[k]
    assert np.all(np.delete(gaps, k) <= 1.001)  # the timebase rounds 1 s records
    kinds = [(e.kind, e.message) for e in run_events(engine, out.run_id)]
    assert ("operator", "paused") in kinds and ("operator", "resumed") in kinds
