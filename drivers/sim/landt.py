"""A simulated LANDT tester that writes LANDdt-style record exports into a folder.

Real LANDT integration is file-based (see `labctl_drivers.landt`): the operator starts a schedule in
LAND's own software, which auto-exports the record table, and labctl follows those files. So the
honest simulator is not a fake wire protocol but a fake *exporter*: it runs a galvanostatic
cycling schedule on any `CellModel` and keeps a LAND-style CSV per channel up to date, so
`LandtTester` can be tested end to end on a real folder.

Time: the simulator owns no thread. Each `update()` (also called by `LandtTester` before it
reads, when wired with `LandtTester.for_simulator`) integrates every channel from where it left
off up to `clock.now()` in whole record intervals, so a `VirtualClock` can jump hours at once.

File layout (one of the header sets observed for LANDdt exports, landt_pressure.md §1.4):
a couple of ``key,value`` preamble lines, then
``Record,TestTime/<u>,StepTime/<u>,Current/mA,Capacity/mAh,Voltage/V,Energy/mWh,AuxVolt/V,
SysTime,Cycle-Index,Step-Index,Step-State``; capacity and energy are magnitudes that reset at
each step, ``AuxVolt`` is ``-`` (unconnected), states are R / RateC / RateD. Numbers are written
with full float precision so tests can compare round trips exactly.
``write_mode="append"`` appends rows as they are made; ``"rewrite"`` rewrites the whole file
atomically each update, as a periodic "export all" would.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from labctl_drivers.clock import Clock
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
