"""The LAND program of every shipped protocol: generated and checked where LAND can run it,
refused with the protocol file and line of each step it cannot run otherwise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.landt.plan import SkippableKind, plan_for_land
from labctl.launch import PreparedRun, prepare_runs
from labctl.protocol import ProtocolError
from labctl.protocol import resolved as rs
from labctl_drivers.landt.program import LandMode, render_sheet

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ROOT / "protocols"
CELLS = ROOT / "examples" / "cells"
SKIP_ALL = frozenset(SkippableKind)
#: the shipped protocols, each on the cell it is written for
SHIPPED = {
    "ccd.yaml": "na_symmetric.yaml",
    "critical_stripping.yaml": "nak65_half.yaml",
    "cycling.yaml": "na_symmetric.yaml",
    "quickstart.yaml": "na_symmetric.yaml",
    "cv.yaml": "nak65_half.yaml",
    "insitu_eis.yaml": "nak65_half.yaml",
}
EXPRESSIBLE = ("ccd.yaml", "critical_stripping.yaml", "cycling.yaml", "quickstart.yaml")
#: protocols LAND cannot run even with EIS and pressure steps left out: (kind of the step)
REFUSED = {"cv.yaml": "cv", "insitu_eis.yaml": "interleave"}


def test_every_shipped_protocol_is_covered() -> None:
    assert sorted(p.name for p in PROTOCOLS.glob("*.yaml")) == sorted(SHIPPED)
    assert sorted((*EXPRESSIBLE, *REFUSED)) == sorted(SHIPPED)


def _prepared(name: str) -> PreparedRun:
    return prepare_runs([(PROTOCOLS / name, CELLS / SHIPPED[name])])[0]


def _line_of(path: Path, line: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[line - 1]


def _land_steps(protocol: rs.ResolvedProtocol) -> list[tuple[float, float | None, float | None]]:
    """What LAND must run for each protocol step, in order: (current mA, capacity, duration)."""
    out: list[tuple[float, float | None, float | None]] = []
    for s in protocol.steps:
        if isinstance(s, rs.Rest):
            out.append((0.0, None, s.duration_s))
        elif isinstance(s, rs.Galvanostatic):
            cap = min(x for x in (s.capacity_mAh, protocol.limits.Q_max_mAh) if x is not None) \
                if (s.capacity_mAh, protocol.limits.Q_max_mAh) != (None, None) else None
            out.append((s.current_mA, cap, s.duration_s))
        elif isinstance(s, rs.CCDRamp):
            k, j = 0, s.start_mA
            while j <= s.max_mA + 1e-9:
                for _ in range(s.cycles_per_step):
                    for sign in (1.0, -1.0):
                        out.append((sign * j, s.half_cycle_mAh, s.half_cycle_s))
                        if s.rest_s:
                            out.append((0.0, None, s.rest_s))
                k += 1
                j = s.start_mA + k * s.increment_mA
    return out


@pytest.mark.parametrize("name", EXPRESSIBLE)
def test_sheet_of_each_expressible_protocol(name: str, tmp_path: Path) -> None:
    run = _prepared(name)
    plan = plan_for_land(run.document.path, run.protocol, SKIP_ALL, "land-1", "1-3")
    program = plan.program
    executed = list(program.executed())
    # what LAND executes, loops unrolled, is exactly the protocol's rests and currents
    want = _land_steps(run.protocol)
    assert len(executed) == len(want) == len(plan.steps)
    for (step, _), (I_mA, cap, dur) in zip(executed, want, strict=True):
        assert step.current_mA == pytest.approx(I_mA, rel=1e-12, abs=0)
        assert step.mode is (LandMode.REST if I_mA == 0 else
                             LandMode.CC_CHARGE if I_mA > 0 else LandMode.CC_DISCHARGE)
        assert step.time_s == dur
        if I_mA:
            assert step.capacity_mAh == cap
            assert step.V_high is not None or step.V_low is not None or step.capacity_mAh
    # every working step numbered in order, every loop goes back to an earlier step
    assert [s.number for s in program.steps] == list(range(1, len(program.steps) + 1))
    for s in program.steps:
        if s.mode is LandMode.CYCLE:
            assert s.goto is not None and s.goto < s.number and s.repeats and s.repeats > 1
    sheet = render_sheet(program, "land-1 (CT2001A)", "1-3", "D:/LAND/export", "cell-42*.csv")
    lines = sheet.splitlines()
    for s in program.steps:  # one line per program step, with its current
        line = next(ln for ln in lines if re.match(rf"\s*{s.number}\s+{s.mode.value}\b", ln))
        if s.mode in (LandMode.CC_CHARGE, LandMode.CC_DISCHARGE):
            assert f"{abs(s.current_mA):.6g} mA" in line
        if s.capacity_mAh is not None:
            assert f"capacity >= {s.capacity_mAh:.6g} mAh" in line
    assert "labctl cannot load, start or stop a LAND channel" in sheet
    assert "stop the channel in LAND's software" in sheet
    assert "D:/LAND/export" in sheet and "cell-42*.csv" in sheet
    # each left-out step is named with the FILE:LINE of a step LAND cannot run
    for omitted in program.omitted:
        m = re.search(r"\((.+):(\d+)\)", omitted)
        assert m is not None and Path(m.group(1)) == PROTOCOLS / name
        assert re.search(r"kind: (eis|pressure|ccd_ramp)", _line_of(PROTOCOLS / name,
                                                                    int(m.group(2))))
    (tmp_path / f"{name}.txt").write_text(sheet)


def test_cycling_is_written_as_a_loop() -> None:
    run = _prepared("cycling.yaml")
    program = plan_for_land(run.document.path, run.protocol, SKIP_ALL).program
    loops = [s for s in program.steps if s.mode is LandMode.CYCLE]
    assert len(program.steps) == 4 and len(loops) == 1  # rest, strip, plate, cycle x100
    assert loops[0].goto == 2 and loops[0].repeats == 100


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_protocols_land_cannot_run_are_refused_with_a_location(name: str) -> None:
    run = _prepared(name)
    with pytest.raises(ProtocolError) as ei:
        plan_for_land(run.document.path, run.protocol, SKIP_ALL)
    errors = ei.value.errors
    assert errors and all(e.file == run.document.path for e in errors)
    assert any(f"kind: {REFUSED[name]}" in _line_of(PROTOCOLS / name, e.line) for e in errors)
    assert all("LAND cannot run this" in e.message for e in errors)


@pytest.mark.parametrize("name", EXPRESSIBLE)
def test_eis_and_pressure_are_refused_unless_the_station_leaves_them_out(name: str) -> None:
    run = _prepared(name)
    with pytest.raises(ProtocolError) as ei:
        plan_for_land(run.document.path, run.protocol)
    for e in ei.value.errors:
        assert re.search(r"kind: (eis|pressure|ccd_ramp)", _line_of(PROTOCOLS / name, e.line))
        assert "skip: [" in e.message


def test_cli_refuses_with_one_located_line(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    station = tmp_path / "land.yaml"
    station.write_text(
        "name: land-bench\n"
        "landt:\n"
        "  testers:\n"
        f"    - {{name: land-1, model: CT2001A, exports: '{exports}'}}\n"
        "  channels:\n"
        "    - {tester: land-1, channel: '1-3', export: 'cell*.csv', skip: [eis]}\n")
    db = tmp_path / "db.sqlite"
    res = subprocess.run(
        [str(Path(sys.executable).with_name("labctl")), "run", str(PROTOCOLS / "cv.yaml"), "--cell",
         str(CELLS / "nak65_half.yaml"), "--station", str(station), "--db", f"sqlite:///{db}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert f"{PROTOCOLS / 'cv.yaml'}:17:" in res.stderr and "Traceback" not in res.stderr
    assert not db.exists()  # refused before the database was touched
