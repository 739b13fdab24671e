"""A simulated LANDT tester that writes LANDdt-style record exports into a folder.

Real LANDT integration is file-based (see `labctl_drivers.landt`): the operator starts a schedule in
LAND's own software, which auto-exports the record table, and labctl follows those files. So the
honest simulator is not a fake wire protocol but a fake *exporter*: it runs a galvanostatic
cycling schedule on any `CellModel` and keeps a LAND-style CSV per channel up to date, so
`LandtTester` can be tested end to end on a real folder.

Time: the simulator owns no thread. Each `update()` (also called by `LandtTester` before it
reads, when wired with `LandtTester.for_simulator`) integrates every channel from where it left
off up to `clock.now()` in whole record intervals, so a `VirtualClock` can jump hours at once.

File layout (the LANDdt export header set of the LANDT fixture in the public
Bonian423/Monocell-Platform-DEMO repository, tests/test_instruments.py):
a couple of ``key,value`` preamble lines, then
``Record,TestTime/<u>,StepTime/<u>,Current/mA,Capacity/mAh,Voltage/V,Energy/mWh,AuxVolt/V,
SysTime,Cycle-Index,Step-Index,Step-State``; capacity and energy are magnitudes that reset at
each step, ``AuxVolt`` is ``-`` (unconnected), states are R / RateC / RateD. Numbers are written
with full float precision so tests can compare round trips exactly.
``write_mode="append"`` appends rows as they are made; ``"rewrite"`` rewrites the whole file
atomically each update, as a periodic "export all" would.

`SimulatedLandProgram` runs LAND step programs (`labctl_drivers.landt.program.LandProgram`, as
an operator would enter them from labctl's program sheet, mistakes included) and writes the
export in either LANDdt layout, as CSV, TXT or .xlsx, in UTF-8 or GBK.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from labctl_drivers.clock import Clock
from labctl_drivers.landt.program import LandProgram, LandStep
from labctl_drivers.sim.cell_model import CellModel

_TIME_SCALE = {"s": 1.0, "h": 3600.0}


@dataclass(frozen=True)
class CCCycleSchedule:
    """Rest, then n × (CC charge to E_max, rest, CC discharge to E_min, rest).

    `current_A` is the magnitude; charge is positive current (the labctl and LAND convention).
    `max_step_s` is a safety time limit on each CC step, like a LAND step's time cut-off.
    """

    current_A: float
    E_max_V: float
    E_min_V: float
    n_cycles: int
    rest_s: float = 60.0
    charge_first: bool = True
    max_step_s: float = 24 * 3600.0

    def program(self) -> list[tuple[int, str, float]]:
        """Program steps as (step number, LAND state, signed current)."""
        chg, dchg = (1.0, -1.0) if self.charge_first else (-1.0, 1.0)
        steps = [(1, "R", 0.0)]
        for n, sign in ((2, chg), (4, dchg)):
            steps.append((n, "RateC" if sign > 0 else "RateD", sign * self.current_A))
            steps.append((n + 1, "R", 0.0))
        return steps


@dataclass
class _Channel:
    name: str
    cell: CellModel
    schedule: CCCycleSchedule
    path: Path
    t_start: float
    t: float = 0.0  # time since the channel was started
    cycle: int = 1
    pos: int = 0  # position in the expanded program (0 = initial rest)
    step_t: float = 0.0
    cap_mAh: float = 0.0
    energy_mWh: float = 0.0
    record: int = 0
    finished: bool = False
    lines: list[str] = field(default_factory=list)


class SimulatedLandt:
    """Runs CC cycling on simulated cells and writes LANDdt-style exports into `folder`."""

    simulated = True

    def __init__(
        self,
        folder: str | Path,
        clock: Clock,
        record_interval_s: float = 10.0,
        time_unit: str = "s",
        write_mode: str = "append",
        start_datetime: _dt.datetime | None = None,
    ) -> None:
        if time_unit not in _TIME_SCALE:
            raise ValueError(f"time_unit must be one of {list(_TIME_SCALE)}")
        if write_mode not in ("append", "rewrite"):
            raise ValueError("write_mode must be 'append' or 'rewrite'")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.record_interval_s = float(record_interval_s)
        self.time_unit = time_unit
        self.write_mode = write_mode
        self.start_datetime = start_datetime or _dt.datetime(2026, 1, 1, 9, 0, 0)
        self._channels: dict[str, _Channel] = {}

    # ---- operator actions in "LANDdt" -------------------------------------------------------
    def start_channel(self, name: str, cell: CellModel, schedule: CCCycleSchedule) -> Path:
        """What the operator does in LAND's GUI: load a schedule on a channel and press start."""
        if name in self._channels and not self._channels[name].finished:
            raise RuntimeError(f"channel {name} is already running")
        path = self.folder / f"{name}.csv"
        ch = _Channel(name, cell, schedule, path, t_start=self.clock.now())
        u = self.time_unit
        ch.lines = [
            f"Test name,{name}\n",
            f"Start time,{self._systime(ch, 0.0)}\n",
            (
                f"Record,TestTime/{u},StepTime/{u},Current/mA,Capacity/mAh,Voltage/V,Energy/mWh,"
                "AuxVolt/V,SysTime,Cycle-Index,Step-Index,Step-State\n"
            ),
        ]
        self._channels[name] = ch
        self._write(ch, ch.lines, fresh=True)
        return path

    def is_running(self, name: str) -> bool:
        return name in self._channels and not self._channels[name].finished

    def export_path(self, name: str) -> Path:
        return self._channels[name].path

    # ---- time --------------------------------------------------------------------------------
    def update(self) -> None:
        """Integrate every running channel up to `clock.now()` and write the new records."""
        now = self.clock.now()
        for ch in self._channels.values():
            new = self._advance(ch, now - ch.t_start)
            if new:
                ch.lines.extend(new)
                self._write(ch, new, fresh=False)

    def _expanded(self, ch: _Channel) -> list[tuple[int, str, float]]:
        prog = ch.schedule.program()
        return [prog[0]] + prog[1:] * ch.schedule.n_cycles

    def _advance(self, ch: _Channel, target_t: float) -> list[str]:
        rows: list[str] = []
        dt = self.record_interval_s
        expanded = self._expanded(ch)
        sch = ch.schedule
        while not ch.finished and ch.t + dt <= target_t + 1e-9:
            step_no, state, current_A = expanded[ch.pos]
            v = float(ch.cell.step(current_A, dt))
            ch.t += dt
            ch.step_t += dt
            ch.cap_mAh += abs(current_A) * dt / 3.6
            ch.energy_mWh += abs(current_A * v) * dt / 3.6
            ch.record += 1
            rows.append(self._row(ch, current_A, v, step_no, state))
            if state == "R":
                done = ch.step_t >= sch.rest_s - 1e-9
            elif current_A > 0:
                done = v >= sch.E_max_V or ch.step_t >= sch.max_step_s
            else:
                done = v <= sch.E_min_V or ch.step_t >= sch.max_step_s
            if done:
                ch.pos += 1
                ch.step_t = ch.cap_mAh = ch.energy_mWh = 0.0
                if ch.pos >= len(expanded):
                    ch.finished = True
                elif ch.pos > 1 and (ch.pos - 1) % 4 == 0:
                    ch.cycle += 1  # a new charge/discharge pair begins
        return rows

    def _systime(self, ch: _Channel, t: float) -> str:
        stamp = self.start_datetime + _dt.timedelta(seconds=ch.t_start + t)
        return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    def _row(self, ch: _Channel, current_A: float, v: float, step_no: int, state: str) -> str:
        k = _TIME_SCALE[self.time_unit]
        fields = [
            str(ch.record),
            repr(ch.t / k),
            repr(ch.step_t / k),
            repr(current_A * 1e3),
            repr(ch.cap_mAh),
            repr(v),
            repr(ch.energy_mWh),
            "-",
            self._systime(ch, ch.t),
            str(ch.cycle),
            str(step_no),
            state,
        ]
        return ",".join(fields) + "\n"

    def _write(self, ch: _Channel, new_lines: list[str], fresh: bool) -> None:
        if self.write_mode == "append" and not fresh:
            with ch.path.open("a", encoding="utf-8", newline="") as f:
                f.writelines(new_lines)
            return
        tmp = ch.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as f:
            f.writelines(ch.lines)
        os.replace(tmp, ch.path)  # readers never see a half-written export


# ---- running a LAND step program -----------------------------------------------------------------
@dataclass(frozen=True)
class ExportLayout:
    """How one LANDdt version lays out a record export (the header sets in the module docstring
    of `labctl_drivers.landt.formats`): "landdt" is the older Record table with R/RateC/RateD
    states and the blank spacer column, "lanhe" the newer DefaultGroup table with µA/µAh units
    and ``D HH:MM:SS.mmm`` durations."""

    name: str
    header: tuple[str, ...]

    def row(self, rec: int, t: float, step_t: float, I_mA: float, cap_mAh: float, V: float,
            systime: str, cycle: int, step: int, state: str) -> list[object]:
        if self.name == "landdt":
            return [rec, t / 3600.0, step_t / 3600.0, I_mA, cap_mAh, "-", "-", V, "-", "-", "-",
                    "-", systime, "", cycle, step, state]
        return [rec, systime, cycle, step, _lanhe_duration(t), _lanhe_duration(step_t), V,
                I_mA * 1e3, cap_mAh * 1e3, "-"]


def _lanhe_duration(s: float) -> str:
    ms = round(s * 1000)
    d, ms = divmod(ms, 86_400_000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    return f"{d} {h:02d}:{m:02d}:{ms / 1000:06.3f}"


LAYOUTS = {
    "landdt": ExportLayout("landdt", (
        "Record", "TestTime/h", "StepTime/h", "Current/mA", "Capacity/mAh", "SpeCap/mAh/g",
        "SOC|DOD/%", "Voltage/V", "Energy/mWh", "SpeEnergy/Wh/kg", "AuxTemp/dC.", "AuxVolt/V",
        "SysTime", "", "Cycle-Index", "Step-Index", "Step-State")),
    "lanhe": ExportLayout("lanhe", (
        "Record", "SysTime", "Cycle", "Step", "TestTime", "StepTime", "Voltage/V", "Current/uA",
        "Capacity/uAh", "SpeCap/mAh/g")),
}
#: Step-State labels the older layout writes (LANDdt's English labels)
_STATE = {"Rest": "R", "CC_Chg": "RateC", "CC_DChg": "RateD"}


def format_text(cells: list[object], delimiter: str) -> str:
    """One export line: numbers at full precision (tests compare round trips exactly)."""
    return delimiter.join(repr(c) if isinstance(c, float) else str(c) for c in cells) + "\r\n"


@dataclass
class _ProgramRun:
    name: str
    cell: CellModel
    program: LandProgram
    path: Path
    t_start: float
    steps: list[tuple[LandStep, int]]
    layout: ExportLayout
    preamble: list[list[object]]
    t: float = 0.0
    pos: int = 0
    step_t: float = 0.0
    cap_mAh: float = 0.0
    since_record: float = 0.0
    V_record: float | None = None
    V: float = 0.0
    record: int = 0
    finished: bool = False
    rows: list[list[object]] = field(default_factory=list)
    written: int = 0  # rows already in the file(s)
    rotations: int = 0


class SimulatedLandProgram:
    """A simulated LAND tester running step programs (`LandProgram`) entered by an operator.

    The export is written the way LANDdt writes one: a preamble (test name, channel -- in
    Chinese under a Chinese locale), the header of the chosen layout, then one row per record.
    Forms: ``fmt`` "csv" (comma), "txt" (tab) or "xlsx" (openpyxl, rewritten whole);
    ``encoding`` "utf-8" or "gbk"; ``write_mode`` "append" (rows added as made), "rewrite" (the
    whole export replaced atomically each update, as a periodic "export all" does) or
    "rotate" (after `rotate_rows` rows the file is renamed ``NAME_<k>`` and a new one started,
    continuing the record numbers).

    Time is integrated in ticks of at most 1 s (a shorter record interval sets the tick); a row
    is recorded every `record_dt_s` of the step, on every `record_dV_V` change, and at the
    step's end. A step ends at the tick where a cut-off is met; a capacity or time cut-off is
    met exactly (the last tick is shortened), a voltage cut-off at the first tick past it.
    """

    simulated = True

    def __init__(self, folder: str | Path, clock: Clock, fmt: str = "csv",
                 encoding: str = "utf-8", layout: str = "landdt", write_mode: str = "append",
                 rotate_rows: int = 500,
                 start_datetime: _dt.datetime | None = None) -> None:
        if fmt not in ("csv", "txt", "xlsx") or layout not in LAYOUTS:
            raise ValueError(f"unknown export form {fmt!r}/{layout!r}")
        if write_mode not in ("append", "rewrite", "rotate"):
            raise ValueError("write_mode must be append, rewrite or rotate")
        if fmt == "xlsx" and write_mode != "rewrite":
            raise ValueError("an .xlsx export can only be rewritten whole")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.fmt, self.encoding, self.layout, self.write_mode = fmt, encoding, layout, write_mode
        self.rotate_rows = rotate_rows
        self.start_datetime = start_datetime or _dt.datetime(2026, 1, 1, 9, 0, 0)
        self._runs: dict[str, _ProgramRun] = {}

    def start_program(self, name: str, cell: CellModel, program: LandProgram) -> Path:
        """The operator enters `program` on channel `name` in LAND's software and presses start."""
        if name in self._runs and not self._runs[name].finished:
            raise RuntimeError(f"channel {name} is already running")
        path = self.folder / f"{name}.{self.fmt}"
        steps = list(program.executed())
        chinese = self.encoding.lower() in ("gbk", "gb18030", "gb2312")
        preamble = ([["测试名称", name], ["通道", name], ["工步", program.name]]
                    if chinese else [["Test name", name], ["Channel", name]])
        run = _ProgramRun(name, cell, program, path, self.clock.now(), steps,
                          LAYOUTS[self.layout], preamble)
        self._runs[name] = run
        self._write(run)
        return path

    def stop_channel(self, name: str) -> None:
        """The operator stops the channel in LAND's software."""
        self.update()
        self._runs[name].finished = True

    def is_running(self, name: str) -> bool:
        return name in self._runs and not self._runs[name].finished

    def update(self) -> None:
        now = self.clock.now()
        for run in self._runs.values():
            before = len(run.rows)
            self._advance(run, now - run.t_start)
            if len(run.rows) != before:
                self._write(run)

    # ---- physics and records ------------------------------------------------------------------
    def _advance(self, run: _ProgramRun, target: float) -> None:
        while not run.finished and run.pos < len(run.steps):
            step, cycle = run.steps[run.pos]
            tick = min(1.0, step.record_dt_s)
            dt = tick
            I_mA = step.current_mA
            ends_now = False
            if step.capacity_mAh is not None and I_mA:
                left_s = (step.capacity_mAh - run.cap_mAh) * 3600.0 / abs(I_mA)
                if left_s <= dt + 1e-9:
                    dt, ends_now = max(left_s, 0.0), True
            if step.time_s is not None and step.time_s - run.step_t <= dt + 1e-9:
                dt, ends_now = max(step.time_s - run.step_t, 0.0), True
            if run.t + dt > target + 1e-9:
                return
            run.V = float(run.cell.step(I_mA * 1e-3, dt)) if dt > 0 else run.V
            run.t += dt
            run.step_t += dt
            run.since_record += dt
            run.cap_mAh += abs(I_mA) * dt / 3600.0
            if step.V_high is not None and run.V >= step.V_high:
                ends_now = True
            if step.V_low is not None and run.V <= step.V_low:
                ends_now = True
            dV = step.record_dV_V
            if (ends_now or run.since_record >= step.record_dt_s - 1e-9
                    or (dV is not None and run.V_record is not None
                        and abs(run.V - run.V_record) >= dV)):
                self._record(run, step, cycle, I_mA)
            if ends_now:
                run.pos += 1
                run.step_t = run.cap_mAh = 0.0
        if run.pos >= len(run.steps):
            run.finished = True

    def _record(self, run: _ProgramRun, step: LandStep, cycle: int, I_mA: float) -> None:
        run.record += 1
        run.since_record = 0.0
        run.V_record = run.V
        stamp = self.start_datetime + _dt.timedelta(seconds=run.t_start + run.t)
        systime = stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        mode = step.mode.value
        run.rows.append(run.layout.row(run.record, run.t, run.step_t, I_mA, run.cap_mAh, run.V,
                                       systime, cycle, step.number, _STATE[mode]))

    # ---- files ----------------------------------------------------------------------------------
    def _lines(self, run: _ProgramRun, rows: list[list[object]]) -> bytes:
        d = "," if self.fmt == "csv" else "\t"
        return "".join(format_text(r, d) for r in rows).encode(self.encoding)

    def _head(self, run: _ProgramRun) -> bytes:
        return self._lines(run, [*run.preamble, list(run.layout.header)])

    def _write(self, run: _ProgramRun) -> None:
        if self.fmt == "xlsx":
            self._write_xlsx(run)
        elif self.write_mode == "rewrite" or (run.written == 0 and not run.rows):
            tmp = run.path.with_name(run.path.name + ".tmp")
            tmp.write_bytes(self._head(run) + self._lines(run, run.rows))
            os.replace(tmp, run.path)
        else:
            while run.written < len(run.rows):
                in_file = run.written - run.rotations * self.rotate_rows
                if self.write_mode == "rotate" and in_file >= self.rotate_rows:
                    run.rotations += 1
                    os.replace(run.path, run.path.with_name(
                        f"{run.path.stem}_{run.rotations}{run.path.suffix}"))
                    run.path.write_bytes(self._head(run))
                    continue
                room = (self.rotate_rows - in_file if self.write_mode == "rotate"
                        else len(run.rows))
                new = run.rows[run.written:run.written + room]
                with run.path.open("ab") as f:
                    f.write(self._lines(run, new))
                run.written += len(new)
        run.written = len(run.rows)

    def _write_xlsx(self, run: _ProgramRun) -> None:
        import openpyxl

        wb = openpyxl.Workbook()
        info = wb.active
        info.title = "Test information"
        for r in run.preamble:
            info.append(r)
        sheet = wb.create_sheet("Record")
        sheet.append(list(run.layout.header))
        for r in run.rows:
            sheet.append(r)
        tmp = run.path.with_name(run.path.stem + ".tmp.xlsx")
        wb.save(tmp)
        os.replace(tmp, run.path)
